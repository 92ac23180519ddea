//! A task's log context: fields that every line logged inside a task carries (a request's id, its
//! host, what it turned out to be), kept as plain values and written out only when a line is.
//!
//! A tracing span does the same job at a price paid whether or not anything is logged: with the fmt
//! subscriber, opening a span formats its fields, every `record` formats again and appends, and
//! closing it returns its slot to the registry. For the gateway's request span that was about a
//! tenth of a cache hit's CPU time (`perf` on the release gateway, 2-core development machine),
//! and a cache hit logs nothing. Here a request sets a value of its own type for its task
//! ([`scope`]), changes it as it learns more ([`update`], a borrow and a field write), and the log
//! formatter ([`WithContext`]) writes it only into the lines logged inside that task: in the JSON
//! format as the outermost entry of `spans` (and as `span` when no tracing span is open), in the
//! pretty format as a `name{field=value …}:` prefix. What the task spawns does not inherit it, as
//! it would not inherit a span.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// A field's value as the context gives it.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    Display(&'a dyn fmt::Display),
}

/// What a task's log lines carry.
pub trait Fields: Any + Send {
    /// The context's name, as a span's (`request`).
    fn name(&self) -> &'static str;
    /// Calls `field` with each field that has a value, in the order they are to be written.
    fn each(&self, field: &mut dyn FnMut(&'static str, Value<'_>));
}

tokio::task_local! {
    static CONTEXT: RefCell<Box<dyn Fields>>;
}

/// Runs `future` with `fields` as its task's log context.
pub async fn scope<F: Future>(fields: Box<dyn Fields>, future: F) -> F::Output {
    CONTEXT.scope(RefCell::new(fields), future).await
}

/// Changes the current task's context, if it is a `T`; does nothing otherwise (no context, one of
/// another type, or the context being written out at this very moment).
pub fn update<T: Fields>(change: impl FnOnce(&mut T)) {
    let _ = CONTEXT.try_with(|context| {
        if let Ok(mut context) = context.try_borrow_mut() {
            let context: &mut dyn Any = &mut **context;
            if let Some(fields) = context.downcast_mut::<T>() {
                change(fields);
            }
        }
    });
}

/// Calls `with` with the current task's context, if there is one.
fn current<R>(with: impl FnOnce(&dyn Fields) -> R) -> Option<R> {
    CONTEXT
        .try_with(|context| context.try_borrow().ok().map(|fields| with(&**fields)))
        .ok()
        .flatten()
}

/// The context as a JSON object: its fields, then `"name"`, as tracing-subscriber writes a span.
fn json_object(fields: &dyn Fields, out: &mut String) {
    use std::fmt::Write;
    out.push('{');
    fields.each(&mut |name, value| {
        super::push_json_string(out, name);
        out.push_str(":\"");
        match value {
            Value::Str(text) => super::push_json_escaped(out, text),
            Value::Display(value) => {
                let _ = write!(super::JsonEscaped(out), "{value}");
            }
        }
        out.push_str("\",");
    });
    out.push_str("\"name\":");
    super::push_json_string(out, fields.name());
    out.push('}');
}

/// The context in the pretty format: `name{field=value …}: `.
fn pretty_prefix(fields: &dyn Fields, out: &mut String) {
    use std::fmt::Write;
    out.push_str(fields.name());
    out.push('{');
    let mut first = true;
    fields.each(&mut |name, value| {
        if !first {
            out.push(' ');
        }
        first = false;
        let _ = match value {
            Value::Str(text) => write!(out, "{name}={text}"),
            Value::Display(value) => write!(out, "{name}={value}"),
        };
    });
    out.push_str("}: ");
}

/// An event format that adds the task's context (see the module's text) to what `inner` writes.
/// Lines logged outside any context are `inner`'s, untouched.
#[derive(Clone, Debug)]
pub struct WithContext<E> {
    inner: E,
    json: bool,
}

impl<E> WithContext<E> {
    /// Around a JSON format that writes the current span and the span list (`"span"`, `"spans"`).
    pub fn json(inner: E) -> Self {
        WithContext { inner, json: true }
    }

    /// Around a text format.
    pub fn pretty(inner: E) -> Self {
        WithContext { inner, json: false }
    }
}

impl<S, N, E> FormatEvent<S, N> for WithContext<E>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut context = String::new();
        let written = current(|fields| {
            if self.json {
                json_object(fields, &mut context);
            } else {
                pretty_prefix(fields, &mut context);
            }
        });
        if written.is_none() {
            return self.inner.format_event(ctx, writer, event);
        }
        if !self.json {
            writer.write_str(&context)?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&splice_json(&line, &context))
    }
}

/// Where `key` (`"name":` and what opens its value) is a member of `line`'s object: inside a string
/// every `"` is escaped, so a member's key is the one preceded by `{` or `,`.
fn find_member(line: &str, key: &str) -> Option<usize> {
    line.match_indices(key)
        .map(|(at, _)| at)
        .filter(|&at| at > 0 && matches!(line.as_bytes()[at - 1], b'{' | b','))
        .last()
}

/// `line` (one JSON object, and a newline) with `context` as the outermost span: first in `spans`,
/// and `span` too if the line has none.
fn splice_json(line: &str, context: &str) -> String {
    let mut out = String::with_capacity(line.len() + 2 * context.len() + 24);
    if let Some(at) = find_member(line, "\"spans\":[") {
        let at = at + "\"spans\":[".len();
        out.push_str(&line[..at]);
        out.push_str(context);
        if !line[at..].starts_with(']') {
            out.push(',');
        }
        out.push_str(&line[at..]);
        return out;
    }
    let body = line.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        // Not an object: leave the line as it is.
        return line.to_owned();
    };
    out.push_str(open);
    if !open.ends_with('{') {
        out.push(',');
    }
    if find_member(open, "\"span\":{").is_none() {
        out.push_str("\"span\":");
        out.push_str(context);
        out.push(',');
    }
    out.push_str("\"spans\":[");
    out.push_str(context);
    out.push_str("]}");
    out.push_str(&line[body.len()..]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    struct Request {
        id: String,
        host: Option<&'static str>,
    }

    impl Fields for Request {
        fn name(&self) -> &'static str {
            "request"
        }

        fn each(&self, field: &mut dyn FnMut(&'static str, Value<'_>)) {
            field("request.id", Value::Str(&self.id));
            if let Some(host) = self.host {
                field("http.host", Value::Display(&host));
            }
        }
    }

    /// Log lines written in a test.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        pub(crate) fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// The JSON log format as `Logs::init` sets it up, writing to `buffer`.
    pub(crate) fn json_subscriber(buffer: &Buffer) -> impl tracing::Subscriber + Send + Sync {
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .fmt_fields(crate::AppendingJsonFields)
            .event_format(crate::json_format())
            .finish()
    }

    /// Lines logged in a context carry it as the outermost span, with what was changed before
    /// they were logged and escaped as JSON; lines logged outside it are as they were.
    #[tokio::test]
    async fn json_lines_carry_the_context_as_the_outermost_span() {
        let buffer = Buffer::default();
        let _default = tracing::subscriber::set_default(json_subscriber(&buffer));
        tracing::info!("before");
        let fields = Request {
            id: "a\"b".to_owned(),
            host: None,
        };
        scope(Box::new(fields), async {
            tracing::info!("no host yet");
            update(|request: &mut Request| request.host = Some("shop.example"));
            tracing::warn!(answer = 42, "with a host");
            let inner = tracing::info_span!("render", job = "j1");
            inner.in_scope(|| tracing::info!("in a span"));
        })
        .await;
        tracing::info!("after");

        let lines: Vec<serde_json::Value> = buffer
            .lines()
            .iter()
            .map(|line| serde_json::from_str(line).expect(line))
            .collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[0].get("spans").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["spans"][0]["request.id"], "a\"b");
        assert_eq!(lines[1]["span"]["name"], "request");
        assert!(lines[1]["span"].get("http.host").is_none());
        assert_eq!(lines[2]["span"]["http.host"], "shop.example");
        assert_eq!(lines[2]["answer"], 42);
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(lines[3]["span"]["name"], "render", "the innermost span");
        assert_eq!(lines[3]["spans"][0]["name"], "request");
        assert_eq!(lines[3]["spans"][1]["job"], "j1");
        assert!(lines[4].get("spans").is_none(), "{}", lines[4]);
    }

    /// `update` with another type, or outside any context, changes nothing and does not panic.
    #[tokio::test]
    async fn updates_of_another_type_or_outside_a_context_are_ignored() {
        struct Other;
        impl Fields for Other {
            fn name(&self) -> &'static str {
                "other"
            }
            fn each(&self, _: &mut dyn FnMut(&'static str, Value<'_>)) {}
        }
        update(|_: &mut Request| panic!("no context here"));
        scope(Box::new(Other), async {
            update(|_: &mut Request| panic!("not a Request"));
        })
        .await;
    }

    #[test]
    fn pretty_lines_start_with_the_context() {
        let fields = Request {
            id: "r1".to_owned(),
            host: Some("shop.example"),
        };
        let mut out = String::new();
        pretty_prefix(&fields, &mut out);
        assert_eq!(out, "request{request.id=r1 http.host=shop.example}: ");
    }

    #[test]
    fn splicing_keeps_the_line_whole() {
        let context = r#"{"request.id":"r","name":"request"}"#;
        assert_eq!(
            splice_json("{\"level\":\"INFO\"}\n", context),
            format!("{{\"level\":\"INFO\",\"span\":{context},\"spans\":[{context}]}}\n")
        );
        assert_eq!(
            splice_json("{\"a\":\"\\\"spans\\\":[\",\"spans\":[]}\n", context),
            format!("{{\"a\":\"\\\"spans\\\":[\",\"spans\":[{context}]}}\n")
        );
        assert_eq!(
            splice_json("{\"a\":\"\\\"spans\\\":[\"}\n", context),
            format!("{{\"a\":\"\\\"spans\\\":[\",\"span\":{context},\"spans\":[{context}]}}\n"),
            "a value that looks like the key is left alone"
        );
        assert_eq!(splice_json("not json\n", context), "not json\n");
    }
}
