//! What every Kiln program does as it starts and stops: set up its logs, and wait for the signal to
//! shut down. One copy, so that the gateway, the worker, the dashboard and the certificate manager
//! read `KILN_LOG_FORMAT` and `RUST_LOG` alike and log in the same shape; and the metrics every one
//! of them serves (`metrics`), the one reader of their `KILN_*` variables (`env`), and the one way
//! an error's chain of causes becomes text where it is reported ([`error_chain`]).

pub mod context;
pub mod env;
mod errors;
pub mod metrics;
pub mod platform;

pub use errors::error_chain;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How log lines are written (`KILN_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, for development.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers: the event's fields at the top level, beside
    /// `timestamp`, `level`, `target` and the current span.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `pretty` or `json` (surrounding blanks ignored).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "KILN_LOG_FORMAT `{other}` is neither `pretty` nor `json`"
            )),
        }
    }
}

/// A program's logging.
#[derive(Clone, Debug)]
pub struct Logs<'a> {
    pub format: LogFormat,
    /// Which events are written, in `EnvFilter` syntax (`RUST_LOG`); `None` for `default_filter`.
    /// A filter that does not parse falls back to `default_filter`, with a warning once logging
    /// is up.
    pub filter: Option<&'a str>,
    pub default_filter: &'a str,
    /// Directives added unless `filter` names their target: dependencies that are noisy at the
    /// level the rest is logged at (`chromiumoxide::handler=error`, say).
    pub quiet: &'a [&'a str],
    /// Write to stderr rather than stdout (a command-line tool keeps stdout for its output).
    pub to_stderr: bool,
}

impl<'a> Logs<'a> {
    /// Logs at `RUST_LOG` (default `info`) to stdout, in `format`.
    pub fn new(format: LogFormat) -> Self {
        Logs {
            format,
            filter: None,
            default_filter: "info",
            quiet: &[],
            to_stderr: false,
        }
    }

    /// Installs the global subscriber. Panics if one is installed already (a program sets up its
    /// logs once, first thing).
    pub fn init(self) {
        let from_env = std::env::var("RUST_LOG").ok();
        let spec = self.filter.or(from_env.as_deref());
        let (mut filter, refused) = match spec.map(EnvFilter::try_new) {
            Some(Ok(filter)) => (filter, None),
            Some(Err(error)) => (EnvFilter::new(self.default_filter), Some(error)),
            None => (EnvFilter::new(self.default_filter), None),
        };
        for directive in self.quiet {
            let target = directive.split('=').next().unwrap_or(directive);
            if spec.is_some_and(|spec| spec.contains(target)) {
                continue;
            }
            match directive.parse() {
                Ok(directive) => filter = filter.add_directive(directive),
                Err(error) => eprintln!("ignoring the log directive `{directive}`: {error}"),
            }
        }
        let (writer, ansi) = if self.to_stderr {
            (
                BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            )
        } else {
            (
                BoxMakeWriter::new(std::io::stdout),
                std::io::stdout().is_terminal(),
            )
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi && self.format == LogFormat::Pretty);
        match self.format {
            LogFormat::Pretty => builder
                .event_format(context::WithContext::pretty(
                    tracing_subscriber::fmt::format().with_ansi(ansi),
                ))
                .init(),
            LogFormat::Json => builder
                .json()
                .fmt_fields(AppendingJsonFields)
                .event_format(json_format())
                .init(),
        }
        if let Some(error) = refused {
            tracing::warn!(
                %error,
                filter = self.default_filter,
                "RUST_LOG does not parse; logging with the default filter"
            );
        }
    }
}

/// The JSON log format's event format: one object per line, the event's fields at the top level
/// beside `timestamp`, `level` and `target`, then the current span and the list of spans, the
/// task's log context (`context`) the outermost of them. For `fmt().json().fmt_fields(
/// AppendingJsonFields).event_format(…)`; the test kit's log capture uses it too.
pub fn json_format() -> context::WithContext<
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
> {
    context::WithContext::json(
        tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true),
    )
}

/// A span's fields as JSON, for the JSON log format, written straight into the span's string and
/// grown by appending.
///
/// tracing-subscriber's own `JsonFields` keeps a span's fields as a JSON string and, on every
/// `Span::record`, parses it into a map, adds the new field and writes it out again (its source says
/// as much: "far from efficient"); even a first formatting goes through a map of `serde_json::Value`s.
/// The gateway's request span is filled in as the request goes (host, client kind, bot family,
/// crawler verdict, cache status): with those formatters a cache hit spent more time on its span
/// than on serving the page (40,000 hits a second against 76,000 with the span off, measured on the
/// 2-core development machine), and the map a tenth of a hit's CPU time after that. Here each field
/// is written as a member of the object as it comes, and a recorded field is appended. A field
/// recorded twice then appears twice in the stored string; the event formatter reads it with
/// serde_json, where the later value wins, as `record` means.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendingJsonFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for AppendingJsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        // Room for a request span's fields as they are filled in, so that it grows once or never.
        let mut object = String::with_capacity(256);
        object.push('{');
        fields.record(&mut JsonMembers::new(&mut object));
        object.push('}');
        writer.write_str(&object)
    }

    fn add_fields(
        &self,
        current: &'writer mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let object = &mut current.fields;
        // `{}` or nothing yet: start anew; else reopen the object and append its new members.
        if object.len() <= 2 {
            object.clear();
            object.push('{');
        } else if object.ends_with('}') {
            object.pop();
            object.push(',');
        } else {
            return Err(std::fmt::Error);
        }
        let before = object.len();
        fields.record(&mut JsonMembers::new(object));
        if object.len() == before {
            // Nothing recorded: take back the comma (or close the empty object).
            if object.ends_with(',') {
                object.pop();
            }
        }
        object.push('}');
        Ok(())
    }
}

/// Writes fields as JSON object members (`"name":value`, comma-separated) onto a string, with the
/// types tracing-subscriber's `JsonFields` gives them: numbers and booleans as such, everything else
/// as a string (`Debug` values in their `Debug` form). Written by hand because serde_json writes
/// into `io::Write`, not a `String`, and its `Value` is the map this exists to avoid.
struct JsonMembers<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> JsonMembers<'a> {
    fn new(out: &'a mut String) -> Self {
        let first = out.ends_with('{') || out.ends_with(',');
        JsonMembers { out, first }
    }

    fn key(&mut self, field: &tracing::field::Field) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        let name = field.name();
        push_json_string(self.out, name.strip_prefix("r#").unwrap_or(name));
        self.out.push(':');
    }
}

impl tracing::field::Visit for JsonMembers<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.key(field);
        push_json_string(self.out, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        self.key(field);
        self.out.push('"');
        let _ = write!(JsonEscaped(self.out), "{value:?}");
        self.out.push('"');
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        use std::fmt::Write;
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        use std::fmt::Write;
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        use std::fmt::Write;
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            // JSON has no NaN or infinity; serde_json writes them as null.
            self.out.push_str("null");
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        use std::fmt::Write;
        self.key(field);
        self.out.push('"');
        let _ = write!(JsonEscaped(self.out), "{value}");
        self.out.push('"');
    }
}

/// `text` as a JSON string literal (RFC 8259 §7: quotes, backslashes and control characters escaped).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    push_json_escaped(out, text);
    out.push('"');
}

/// `text` escaped for the inside of a JSON string literal. What needs no escaping (nearly all of a
/// log field) is copied a run at a time.
fn push_json_escaped(out: &mut String, text: &str) {
    use std::fmt::Write;
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
}

/// A `fmt::Write` that escapes what is written for the inside of a JSON string literal: `Debug`
/// and `Display` values go through it without a string of their own first.
struct JsonEscaped<'a>(&'a mut String);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        push_json_escaped(self.0, text);
        Ok(())
    }
}

/// Completes on SIGTERM (what orchestrators send) or SIGINT (Ctrl-C), saying which. If a handler
/// cannot be installed, says so and waits for the other signal alone.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this program");
                std::future::pending::<()>().await;
            }
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT; only SIGTERM stops this program");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span filled in field by field logs, with the JSON format, one object holding every field,
    /// the last value of a field recorded twice.
    #[test]
    fn span_fields_recorded_later_are_in_the_json_lines() {
        let buffer = context::tests::Buffer::default();
        let subscriber = context::tests::json_subscriber(&buffer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request.id = "abc",
                http.host = tracing::field::Empty,
                client.kind = tracing::field::Empty,
                cache.status = tracing::field::Empty,
                attempts = tracing::field::Empty,
                ok = tracing::field::Empty,
                note = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("attempts", 3_u64);
            span.record("ok", true);
            span.record("note", "back\\slash, new\nline, bell\u{7}, tab\t");
            // Recording nothing leaves the object as it was.
            span.record("attempts", tracing::field::Empty);
            span.record("http.host", "shop.test");
            span.record("client.kind", "person");
            span.record("client.kind", "bot");
            span.record("cache.status", "a \"quoted\", odd} value");
            tracing::info!(answered = 200, "done");
        });
        let text = buffer.lines().join("\n");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["message"], "done");
        assert_eq!(line["answered"], 200);
        assert_eq!(
            line["span"],
            serde_json::json!({
                "name": "request",
                "request.id": "abc",
                "http.host": "shop.test",
                "client.kind": "bot",
                "cache.status": "a \"quoted\", odd} value",
                "attempts": 3,
                "ok": true,
                "note": "back\\slash, new\nline, bell\u{7}, tab\t",
            }),
            "{text}"
        );
    }

    #[test]
    fn the_log_format_is_pretty_or_json() {
        assert_eq!("pretty".parse(), Ok(LogFormat::Pretty));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        let error = "xml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            error,
            "KILN_LOG_FORMAT `xml` is neither `pretty` nor `json`"
        );
    }
}
