//! The visible text's comparison: which lines a person reads that the snapshot lacks, and the
//! reverse.

use crate::multiset::{Item, collapse_whitespace, unmatched};
use kiln_core::parity::{PageFacts, TextDiff};

/// Compares the two texts line by line, as multisets: each line trimmed, inner whitespace made
/// one space, empty lines dropped. Order does not matter; how often a line occurs does.
pub fn text_diff(live: &PageFacts, snapshot: &PageFacts) -> TextDiff {
    let live_lines = lines(&live.text);
    let snapshot_lines = lines(&snapshot.text);
    let missing = unmatched(&live_lines, &snapshot_lines);
    let extra = unmatched(&snapshot_lines, &live_lines);
    TextDiff {
        missing: missing.listed,
        extra: extra.listed,
        missing_total: missing.total,
        extra_total: extra.total,
        live_chars: visible_chars(&live.text),
        snapshot_chars: visible_chars(&snapshot.text),
    }
}

fn lines(text: &str) -> Vec<Item> {
    text.lines()
        .map(collapse_whitespace)
        .filter(|line| !line.is_empty())
        .map(Item::plain)
        .collect()
}

fn visible_chars(text: &str) -> u32 {
    let count = text.chars().filter(|c| !c.is_whitespace()).count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::parity::MAX_LISTED_LINES;

    fn diff(live: &str, snapshot: &str) -> TextDiff {
        let facts = |text: &str| PageFacts {
            text: text.to_owned(),
            ..PageFacts::default()
        };
        text_diff(&facts(live), &facts(snapshot))
    }

    #[test]
    fn reordered_and_reformatted_lines_are_no_difference() {
        let text = diff(
            "Welcome\nOur prices\n\nContact us",
            "  Contact   us \r\nWelcome\n\n\n\tOur prices",
        );
        assert_eq!((text.missing_total, text.extra_total), (0, 0));
        assert!(text.missing.is_empty() && text.extra.is_empty());
    }

    #[test]
    fn a_missing_paragraph_is_listed() {
        let text = diff(
            "Welcome\nShipping is free over €50.\nReviews\nContact us",
            "Welcome\nContact us\nLoading…",
        );
        assert_eq!(text.missing, ["Shipping is free over €50.", "Reviews"]);
        assert_eq!(text.missing_total, 2);
        assert_eq!(text.extra, ["Loading…"]);
        assert_eq!(text.extra_total, 1);
    }

    #[test]
    fn a_repeated_line_counts_each_time() {
        let text = diff("Add to cart\nAdd to cart\nAdd to cart", "Add to cart");
        assert_eq!(text.missing, ["Add to cart", "Add to cart"]);
        assert_eq!(text.missing_total, 2);
    }

    #[test]
    fn lists_are_capped_but_totals_count_everything() {
        let live: Vec<String> = (0..MAX_LISTED_LINES + 25)
            .map(|n| format!("Product {n}"))
            .collect();
        let text = diff(&live.join("\n"), "");
        assert_eq!(text.missing.len(), MAX_LISTED_LINES);
        assert_eq!(text.missing_total, 75);
        assert_eq!(text.missing.first().map(String::as_str), Some("Product 0"));
        assert_eq!(text.missing.last().map(String::as_str), Some("Product 49"));
    }

    #[test]
    fn chars_count_what_is_not_whitespace() {
        let text = diff("Ab c\n\n d€", "");
        assert_eq!((text.live_chars, text.snapshot_chars), (5, 0));
    }
}
