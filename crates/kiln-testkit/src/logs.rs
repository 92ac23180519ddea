//! Everything a test process logs, captured: for tests that check what a service logs (and what it
//! must never log, such as secrets). The capture is the process's global subscriber, so a test
//! binary run by nextest (one process per test) gets its own.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use tracing_subscriber::fmt::MakeWriter;

/// The log lines written since [`capture`] was called.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far, as text (one JSON object per line).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures the process's logs from here on, as the services write them with `KILN_LOG_FORMAT=json`
/// (every span's fields, and a task's log context, see `kiln_runtime::context`), at `filter`
/// (`tracing_subscriber::EnvFilter` syntax, e.g. `trace` for everything). Panics if the process
/// already has a global subscriber.
pub fn capture(filter: &str) -> CapturedLogs {
    let logs = CapturedLogs::default();
    tracing_subscriber::fmt()
        .json()
        .fmt_fields(kiln_runtime::AppendingJsonFields)
        .event_format(kiln_runtime::json_format())
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(logs.clone())
        .init();
    logs
}
