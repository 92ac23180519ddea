//! Reporting an error where it ends: the one place its chain of causes is flattened into text.
//! Library errors keep their causes as `source()` and do not repeat them in their own message
//! (`docs/style.md`, "Errors"), so a log line or a message that shows only `error.to_string()`
//! would drop them.

use std::error::Error;

/// An error and its causes on one line: `what failed: why: why that`.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the page failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error() {
        let inner = std::io::Error::other("connection reset");
        assert_eq!(
            error_chain(&Outer(inner)),
            "reading the page failed: connection reset"
        );
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
