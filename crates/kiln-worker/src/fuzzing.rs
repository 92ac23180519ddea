//! The promises of the page post-processor ([`crate::output`]) that the `html_output` fuzz target
//! (`fuzz/`) checks on every input, shared with the test that replays its committed corpus on stable
//! Rust (`tests/it/fuzz_corpus.rs`). Compiled only with the `fuzzing` feature.

use crate::output::{Options, Processed, base_tag, process, visible_text};

/// What the `html_output` target passes as the base: a real URL with characters that need escaping
/// in an attribute.
pub const BASE_HREF: &str = "https://shop.example.com/products/3?a=1&b=\"2\"<";

/// The `html_output` target: the input is a serialised document, rewritten with and without a base.
/// Any document is rewritten (never refused, never a panic); the clean-up only takes parts of it
/// out; the base option adds one `<base>` tag at most and changes nothing else it reports.
pub fn html_output(data: &[u8]) {
    let html = String::from_utf8_lossy(data);
    let plain = process(&html, &Options::default())
        .unwrap_or_else(|e| panic!("a document was refused: {e}"));
    assert!(
        is_subsequence(&plain.html, &html),
        "the clean-up added something: {:?}",
        plain.html
    );
    let text_in_input = html.chars().filter(|c| !c.is_whitespace()).count();
    assert!(
        plain.visible_text <= text_in_input,
        "{}",
        plain.visible_text
    );
    assert!(plain.body_elements <= html.matches('<').count());
    assert_eq!(visible_text(&html), plain.visible_text);

    let based = process(
        &html,
        &Options {
            base_href: Some(BASE_HREF),
        },
    )
    .unwrap_or_else(|e| panic!("a document was refused with a base: {e}"));
    assert_eq!(
        Processed {
            html: String::new(),
            ..based.clone()
        },
        Processed {
            html: String::new(),
            ..plain.clone()
        },
        "the base changed what the page reports"
    );
    let tag = base_tag(BASE_HREF);
    assert!(
        based.html == plain.html || is_insertion(&based.html, &plain.html, &tag),
        "the base option did more than add one {tag}: {:?}",
        based.html
    );
}

/// Whether `part` is `whole` with some (or no) stretches taken out.
fn is_subsequence(part: &str, whole: &str) -> bool {
    let mut rest = whole.as_bytes().iter();
    part.as_bytes().iter().all(|b| rest.any(|w| w == b))
}

/// Whether `longer` is `shorter` with `piece` inserted at one place.
fn is_insertion(longer: &str, shorter: &str, piece: &str) -> bool {
    let (longer, shorter) = (longer.as_bytes(), shorter.as_bytes());
    if longer.len() != shorter.len() + piece.len() {
        return false;
    }
    let prefix = longer
        .iter()
        .zip(shorter)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = longer
        .iter()
        .rev()
        .zip(shorter.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    // `piece` goes in at some `at` with `shorter[..at]` a common prefix and `shorter[at..]` a common
    // suffix.
    let first = shorter.len().saturating_sub(suffix);
    (first..=prefix.min(shorter.len())).any(|at| &longer[at..at + piece.len()] == piece.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertions_and_subsequences() {
        assert!(is_insertion("ab<b>cd", "abcd", "<b>"));
        assert!(is_insertion("<b>abcd", "abcd", "<b>"));
        assert!(is_insertion("abcd<b>", "abcd", "<b>"));
        assert!(is_insertion("a<b><b>", "a<b>", "<b>"));
        assert!(!is_insertion("ab<b>cx", "abcd", "<b>"));
        assert!(!is_insertion("ab<c>cd", "abcd", "<b>"));
        assert!(is_subsequence("acd", "abcd"));
        assert!(is_subsequence("", "abcd"));
        assert!(!is_subsequence("adc", "abcd"));
    }
}
