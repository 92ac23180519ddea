//! The one error both front ends answer with: a status, a stable code and a message for a person
//! (`{"error": {"code": "...", "message": "..."}}` from the REST API, an error page or a flash
//! message from the web dashboard), and the one place where the control plane's errors become
//! statuses, so that a page and the API always agree on what went wrong and how bad it is.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_control::accounts::AccountError;
use kiln_control::activity::ActivityError;
use kiln_control::api_keys::KeyError;
use kiln_control::cache::CacheError;
use kiln_control::domains::DomainError;
use kiln_control::hostnames::HostnameRefused;
use kiln_control::origin::OriginError;
use kiln_control::parity::ParityError;
use kiln_control::service_tokens::ServiceTokenError;
use serde::Serialize;
use utoipa::ToSchema;

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
        tracing::error!(error = %kiln_control::error_chain(error), "request failed");
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

impl From<kiln_control::db::DbError> for ApiError {
    fn from(error: kiln_control::db::DbError) -> Self {
        match error {
            kiln_control::db::DbError::Unavailable(_) => {
                tracing::warn!(error = %kiln_control::error_chain(&error), "postgres unavailable");
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            other => ApiError::internal(&other),
        }
    }
}

// ---- the control plane's errors ------------------------------------------------------------

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::InvalidEmail(_) | AccountError::WeakPassword(_) => {
                ApiError::invalid(error.to_string())
            }
            AccountError::EmailTaken => ApiError::conflict(error.to_string()),
            AccountError::InvalidCredentials
            | AccountError::WrongCurrentPassword
            | AccountError::SessionEnded => ApiError::unauthorized(error.to_string()),
            AccountError::Db(error) => error.into(),
            AccountError::Hashing(_) | AccountError::HashingTask(_) | AccountError::Signing(_) => {
                ApiError::internal(&error)
            }
        }
    }
}

impl From<ActivityError> for ApiError {
    fn from(error: ActivityError) -> Self {
        match error {
            ActivityError::Db(error) => error.into(),
            ActivityError::Store(_) => {
                let message = kiln_control::error_chain(&error);
                tracing::warn!(error = %message, "reading activity from Redis failed");
                ApiError::unavailable(message)
            }
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::InvalidUrls(_) | CacheError::Invalid(_) => {
                ApiError::invalid(error.to_string())
            }
            CacheError::DomainNotFound => ApiError::not_found("domain"),
            CacheError::WarmNotFound => ApiError::not_found("warm job"),
            CacheError::InvalidCursor => {
                ApiError::bad_request("`cursor` is not one this API returned")
            }
            CacheError::NotVerified(_) => ApiError::new(
                StatusCode::CONFLICT,
                "domain_not_verified",
                error.to_string(),
            ),
            CacheError::PreviewTimeout(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "render_timeout",
                error.to_string(),
            ),
            // Only a warm's background task meets these (it records them on the job), but were a
            // request to, they are what was wrong with the sitemap it named.
            CacheError::Sitemap(_) | CacheError::SitemapTimeout(_) => {
                ApiError::invalid(kiln_control::error_chain(&error))
            }
            CacheError::Db(error) => error.into(),
            CacheError::Store(_) | CacheError::Queue(_) => {
                let message = kiln_control::error_chain(&error);
                tracing::warn!(error = %message, "cache operation failed");
                ApiError::unavailable(message)
            }
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match &error {
            DomainError::Conflict(_) | DomainError::ConflictDiffers { .. } => {
                ApiError::conflict(error.to_string())
            }
            DomainError::NotRegistered(_) | DomainError::NotFound => ApiError::not_found("domain"),
            DomainError::Hostname(refused) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                match refused {
                    HostnameRefused::Reserved { .. } => "hostname_reserved",
                    HostnameRefused::SingleLabel(_) => "hostname_single_label",
                    HostnameRefused::PublicSuffix(_) => "hostname_public_suffix",
                },
                format!("hostname: {error}"),
            ),
            DomainError::Origin(OriginError::Unresolvable { .. }) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "origin_unresolvable",
                kiln_control::error_chain(&error),
            ),
            DomainError::Origin(_)
            | DomainError::OriginRequired
            | DomainError::ServiceOnlyOrigin { .. } => {
                ApiError::invalid(kiln_control::error_chain(&error))
            }
            DomainError::Db(_) => match error {
                DomainError::Db(error) => error.into(),
                _ => unreachable!("matched above"),
            },
            DomainError::Publish { .. } | DomainError::Store(_) | DomainError::ServiceTokens(_) => {
                tracing::error!(error = %kiln_control::error_chain(&error), "redis update failed");
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::InvalidName => ApiError::invalid(error.to_string()),
            KeyError::NotFound => ApiError::not_found("API key"),
            KeyError::Db(error) => error.into(),
            KeyError::Random(_) => ApiError::internal(&error),
        }
    }
}

impl From<ServiceTokenError> for ApiError {
    fn from(error: ServiceTokenError) -> Self {
        match error {
            ServiceTokenError::InvalidName | ServiceTokenError::InvalidLimit { .. } => {
                ApiError::invalid(error.to_string())
            }
            ServiceTokenError::NotFound => ApiError::not_found("service token"),
            ServiceTokenError::Db(error) => error.into(),
            ServiceTokenError::Random(_) => ApiError::internal(&error),
            // The message says what to do (try again, revoke again); the chain is in the log.
            ServiceTokenError::Publish(_)
            | ServiceTokenError::Withdraw { .. }
            | ServiceTokenError::Store(_) => {
                tracing::error!(
                    error = %kiln_control::error_chain(&error),
                    "publishing service tokens failed"
                );
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

impl From<ParityError> for ApiError {
    fn from(error: ParityError) -> Self {
        match error {
            ParityError::InvalidUrl(_) => ApiError::invalid(error.to_string()),
            ParityError::NotVerified(_) => ApiError::new(
                StatusCode::CONFLICT,
                "domain_not_verified",
                error.to_string(),
            ),
            ParityError::NotFound => ApiError::not_found("parity check"),
            ParityError::BudgetExhausted { .. } => ApiError {
                retry_after: error.retry_after_secs(),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "render_budget_exhausted",
                    error.to_string(),
                )
            },
            ParityError::Db(error) => error.into(),
            ParityError::Store(_) | ParityError::Queue(_) => {
                let message = kiln_control::error_chain(&error);
                tracing::warn!(error = %message, "parity check operation failed");
                ApiError::unavailable(message)
            }
        }
    }
}
