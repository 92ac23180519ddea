//! The REST API's one error shape, `{"error": {"code": "...", "message": "..."}}`, and the extractors
//! that turn rejected input (bad JSON, unknown fields, bad query strings, oversized bodies) into it.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoResponses, ToSchema};

/// The errors any endpoint that reads a JSON body may answer besides its own (a body that does not
/// match the expected shape is each endpoint's own 422): list `JsonBodyErrors` in its
/// `responses(...)`.
#[derive(IntoResponses)]
pub enum JsonBodyErrors {
    /// The request body is not valid JSON (`invalid_json`)
    #[response(status = 400)]
    InvalidJson(ErrorBody),
    /// The request body is larger than 9 MiB (`body_too_large`)
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The request body was not sent as `Content-Type: application/json` (`unsupported_media_type`)
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

/// Every error the API returns.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `not_found`, `invalid_body`, `conflict`.
    #[schema(example = "invalid_body")]
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn too_many(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many attempts; try again in {} s", retry_after.max(1)),
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An unexpected failure: logged in full, reported without internals.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %crate::http::error_chain(error), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(error: crate::db::DbError) -> Self {
        match error {
            crate::db::DbError::Unavailable(_) => {
                tracing::warn!(error = %crate::http::error_chain(&error), "postgres unavailable");
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            other => ApiError::internal(&other),
        }
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
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
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(error) => {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is larger than {} bytes",
                        super::MAX_BODY_BYTES
                    ),
                )
            } else {
                ApiError::bad_request(format!("the request body could not be read: {error}"))
            }
        }
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
/// `#[serde(default, deserialize_with = "super::error::given")]`.
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
