//! The extractors that turn rejected input (bad JSON, unknown fields, bad query strings, oversized
//! bodies) into the API's one error shape, [`ApiError`] (`{"error": {"code": "...", "message":
//! "..."}}`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use kiln_frontdoor::ApiError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A JSON object request body, whose rejections are [`ApiError`]s. Beyond what `axum::Json`
/// checks, it refuses two things serde lets through that the API cannot use: a JSON array in place
/// of the object (serde reads `[a, b]` as a struct's fields in order) and a string with a NUL
/// character in it (Postgres cannot store one, so it would fail as a 500 deep inside).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body).map_err(json_rejection)?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid("the request body must be a JSON object"));
        }
        if has_nul_escape(&body) {
            return Err(ApiError::invalid(
                "the request body has a string with a NUL character (\\u0000) in it",
            ));
        }
        Ok(ApiJson(value))
    }
}

/// Whether the request says its body is JSON, as `axum::Json` decides it: `application/json` or
/// `application/<anything>+json`, with any parameters.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => {
            subtype == "json" || (subtype.len() > "+json".len() && subtype.ends_with("+json"))
        }
        _ => false,
    }
}

/// Whether a valid JSON text has a `\u0000` escape, i.e. a string with a NUL in it. (A raw control
/// character is not valid JSON, so the escape is the only way to write one.)
fn has_nul_escape(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        if rest[at + 1..].starts_with(b"u0000") {
            return true;
        }
        // Skip the escaped character too: in `\\u0000` the second backslash is the escaped one.
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    false
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the request body as JSON with `Content-Type: application/json`",
    )
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than {} bytes",
                crate::MAX_BODY_BYTES
            ),
        )
    } else {
        ApiError::bad_request(format!("the request body could not be read: {rejection}"))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::invalid(format!(
            "the request body does not match the expected shape: {}",
            source_text(&error)
        )),
        JsonRejection::JsonSyntaxError(error) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "the request body is not valid JSON: {}",
                source_text(&error)
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::BytesRejection(error) => bytes_rejection(error),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// The innermost cause's text: serde's own message (e.g. "unknown field `foo`, expected one of
/// ... at line 1 column 8"), without axum's generic prefix.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum_extra::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum_extra::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "the query string is invalid: {}",
                source_text(&rejection)
            ))),
        }
    }
}

/// For an optional query parameter: `name=` with an empty value is a value (an invalid one, for a
/// number, id, date or choice), not a parameter left out, so that `?limit=` is refused instead of
/// meaning the default. (serde_html_form reads an empty value as `None` for an `Option`.) Use with
/// `#[serde(default, deserialize_with = "crate::extract::given")]`.
pub fn given<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `axum::extract::Path` whose rejections are 404s: an id that cannot exist names nothing.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource: the id in the path is not a valid id",
            )),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// Unknown paths under `/api/v1`.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// Known paths called with a method they do not support.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised_as_axum_does() {
        let check = |content_type: Option<&str>, expected: bool| {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            assert_eq!(json_content_type(&headers), expected, "{content_type:?}");
        };
        check(Some("application/json"), true);
        check(Some("application/json; charset=utf-8"), true);
        check(Some("Application/JSON"), true);
        check(Some("application/merge-patch+json"), true);
        check(Some("application/+json"), false);
        check(Some("application/jsonx"), false);
        check(Some("text/json"), false);
        check(Some("text/plain"), false);
        check(Some("application/x-www-form-urlencoded"), false);
        check(Some(""), false);
        check(None, false);
    }

    #[test]
    fn nul_escapes_are_found_only_where_they_are() {
        let check = |json: &str, expected: bool| {
            assert_eq!(has_nul_escape(json.as_bytes()), expected, "{json}");
        };
        check(r#"{"name": "a\u0000b"}"#, true);
        check(r#"{"name": "\u0000"}"#, true);
        check(r#"{"a\u0000": 1}"#, true);
        check(r#"{"name": "a\\u0000b"}"#, false);
        check(r#"{"name": "a\\\u0000b"}"#, true);
        check(r#"{"name": "a\u0001b"}"#, false);
        check(r#"{"name": "\"\\"}"#, false);
        check(r#"{"name": "plain"}"#, false);
        check("", false);
    }
}
