//! The request's log context: `routes::handle` sets it with what is known at once, and the
//! request's path fills in the rest as it learns it (host, client kind, bot family, crawler verdict,
//! cache status), so that whatever is logged during the request carries it, in the JSON format as
//! the span `request` (`kiln_runtime::context` says how, and why not a tracing span: a cache hit
//! logs nothing, and a span's fields cost about a tenth of its CPU time).

use kiln_core::Hostname;
use kiln_runtime::context::{Fields, Value};

/// What a request's log lines say about it. Values are kept as they are and written only when a
/// line is.
pub(crate) struct RequestFields {
    id: String,
    method: http::Method,
    uri: http::Uri,
    /// The path with a render-service token masked, when it has one (`service::loggable_path`).
    masked_path: Option<String>,
    pub host: Option<Hostname>,
    pub client_kind: Option<&'static str>,
    pub bot_source: Option<&'static str>,
    pub bot_family: Option<&'static str>,
    pub passthrough: Option<&'static str>,
    pub crawler: Option<&'static str>,
    pub verified: Option<&'static str>,
    pub cache_status: Option<&'static str>,
    pub service_token: Option<String>,
}

impl RequestFields {
    /// For the request `id`, `method` `uri`; `loggable_path` is the path as it may be logged.
    pub(crate) fn new(
        id: &str,
        method: &http::Method,
        uri: &http::Uri,
        loggable_path: std::borrow::Cow<'_, str>,
    ) -> Self {
        RequestFields {
            id: id.to_owned(),
            method: method.clone(),
            uri: uri.clone(),
            masked_path: match loggable_path {
                std::borrow::Cow::Owned(path) => Some(path),
                std::borrow::Cow::Borrowed(_) => None,
            },
            host: None,
            client_kind: None,
            bot_source: None,
            bot_family: None,
            passthrough: None,
            crawler: None,
            verified: None,
            cache_status: None,
            service_token: None,
        }
    }
}

impl Fields for RequestFields {
    fn name(&self) -> &'static str {
        "request"
    }

    fn each(&self, field: &mut dyn FnMut(&'static str, Value<'_>)) {
        field("request.id", Value::Str(&self.id));
        field("http.method", Value::Str(self.method.as_str()));
        field(
            "http.path",
            Value::Str(self.masked_path.as_deref().unwrap_or(self.uri.path())),
        );
        let named: [(&'static str, Option<&str>); 9] = [
            ("http.host", self.host.as_ref().map(Hostname::as_str)),
            ("client.kind", self.client_kind),
            ("bot.source", self.bot_source),
            ("bot.family", self.bot_family),
            ("bot.passthrough", self.passthrough),
            ("bot.crawler", self.crawler),
            ("bot.verified", self.verified),
            ("cache.status", self.cache_status),
            ("service.token", self.service_token.as_deref()),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                field(name, Value::Str(value));
            }
        }
    }
}

/// Changes the current request's log context (nothing outside a request).
pub(crate) fn update(change: impl FnOnce(&mut RequestFields)) {
    kiln_runtime::context::update(change);
}
