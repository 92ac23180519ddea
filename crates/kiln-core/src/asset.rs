//! Static-asset detection by path extension.
//!
//! The edge (`nginx/assets.conf`) sends these straight through as human traffic; the gateway applies
//! the same rule so that it behaves identically when it is reached without the edge.

/// Extensions of files that are never rendered: scripts, styles, images, fonts, media, archives, data.
const ASSET_EXTENSIONS: &[&str] = &[
    "js",
    "mjs",
    "cjs",
    "css",
    "map",
    "json",
    "xml",
    "txt",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "webp",
    "avif",
    "svg",
    "ico",
    "bmp",
    "tif",
    "tiff",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "mp4",
    "webm",
    "ogg",
    "mp3",
    "wav",
    "flac",
    "m4a",
    "mov",
    "avi",
    "pdf",
    "zip",
    "gz",
    "tgz",
    "bz2",
    "xz",
    "7z",
    "rar",
    "wasm",
    "webmanifest",
];

/// Whether a request path names a static asset (by the extension of its last segment).
pub fn is_asset_path(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ASSET_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_asset_path;

    #[test]
    fn classifies_paths() {
        let cases = [
            ("/", false),
            ("/products/3", false),
            ("/static/app.js", true),
            ("/static/APP.CSS", true),
            ("/img/logo.svg", true),
            ("/fonts/a.woff2", true),
            ("/sitemap.xml", true),
            ("/blog/v1.2-release", false),
            ("/.well-known/", false),
            ("/.js", false),
            ("/download.tar.gz", true),
            ("/products/3.html", false),
        ];
        for (path, expected) in cases {
            assert_eq!(is_asset_path(path), expected, "{path}");
        }
    }
}
