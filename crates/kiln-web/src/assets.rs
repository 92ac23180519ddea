//! The dashboard's CSS and JavaScript, compiled into the binary and served from `/static/` under
//! names that carry a hash of their content, so browsers may cache them for a year and still never
//! run a stale script after an upgrade.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const CSS: &str = include_str!("../../../dashboard/static/kiln.css");
const JS: &str = include_str!("../../../dashboard/static/kiln.js");

/// The URLs pages link their assets with.
pub struct Assets {
    pub css: String,
    pub js: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    css: format!("/static/kiln.{}.css", fingerprint(CSS)),
    js: format!("/static/kiln.{}.js", fingerprint(JS)),
});

impl Assets {
    pub fn get() -> &'static Assets {
        &ASSETS
    }
}

fn fingerprint(content: &str) -> String {
    hex::encode(&Sha256::digest(content.as_bytes())[..6])
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let assets = Assets::get();
    let requested = format!("/static/{file}");
    let (body, content_type) = if requested == assets.css {
        (CSS, "text/css; charset=utf-8")
    } else if requested == assets.js {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return super::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such file (an old page may name an asset from a previous version; reload it).",
        );
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
