//! The error answers many endpoints share, described once for the OpenAPI document: what the
//! caller's authentication and the extractors refuse. An endpoint lists the sets it can answer in
//! its `#[utoipa::path(responses(...))]` beside its own answers.

use kiln_frontdoor::ErrorBody;
use utoipa::IntoResponses;

/// What an endpoint any caller may use, with an API key or a session, answers when there is none
/// (`kiln_frontdoor::auth::Caller`).
#[derive(IntoResponses)]
pub enum CallerErrors {
    /// Not authenticated
    #[response(status = 401)]
    NotAuthenticated(ErrorBody),
}

/// What an endpoint only a logged-in user may use answers to anyone else
/// (`kiln_frontdoor::auth::SessionUser`).
#[derive(IntoResponses)]
pub enum SessionErrors {
    /// Not logged in
    #[response(status = 401)]
    NotLoggedIn(ErrorBody),
    /// Called with an API key
    #[response(status = 403)]
    ApiKey(ErrorBody),
}

/// The errors any endpoint that reads a query string may answer: one it cannot read
/// ([`crate::extract::ApiQuery`]), or a value its handler refuses.
#[derive(IntoResponses)]
pub enum QueryErrors {
    /// Invalid query
    #[response(status = 400)]
    InvalidQuery(ErrorBody),
}

/// The errors any endpoint that reads a JSON body ([`crate::extract::ApiJson`]) may answer besides
/// its own (a body that does not match the expected shape is each endpoint's own 422).
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
