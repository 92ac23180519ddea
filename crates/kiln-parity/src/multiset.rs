//! Comparing two lists as multisets: which items one side has more often than the other.

use kiln_core::parity::MAX_LISTED_LINES;
use std::collections::HashMap;

/// An item compared by `key` (a normalised form) and listed as `shown`.
pub(crate) struct Item {
    pub key: String,
    pub shown: String,
}

impl Item {
    /// An item listed as it is compared.
    pub fn plain(key: String) -> Self {
        Item {
            shown: key.clone(),
            key,
        }
    }
}

/// What one side has more often than the other.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Unmatched {
    /// The first [`MAX_LISTED_LINES`] such items, in the side's order.
    pub listed: Vec<String>,
    /// How many there are in all.
    pub total: u32,
}

/// The items of `side` left over once each is matched with an equal-keyed item of `other`: an
/// item `side` has three times and `other` once counts twice (its later occurrences).
pub(crate) fn unmatched(side: &[Item], other: &[Item]) -> Unmatched {
    let mut available: HashMap<&str, u32> = HashMap::new();
    for item in other {
        *available.entry(item.key.as_str()).or_default() += 1;
    }
    let mut unmatched = Unmatched::default();
    for item in side {
        match available.get_mut(item.key.as_str()) {
            Some(count) if *count > 0 => *count -= 1,
            _ => {
                unmatched.total = unmatched.total.saturating_add(1);
                if unmatched.listed.len() < MAX_LISTED_LINES {
                    unmatched.listed.push(item.shown.clone());
                }
            }
        }
    }
    unmatched
}

/// `text` trimmed, with every run of whitespace inside it made one space.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(side: &[&str], other: &[&str], listed: &[&str], total: u32) {
        let items = |list: &[&str]| {
            list.iter()
                .map(|s| Item::plain((*s).to_owned()))
                .collect::<Vec<_>>()
        };
        let expected = Unmatched {
            listed: listed.iter().map(|s| (*s).to_owned()).collect(),
            total,
        };
        assert_eq!(
            unmatched(&items(side), &items(other)),
            expected,
            "{side:?} against {other:?}"
        );
    }

    #[test]
    fn unmatched_counts_occurrences() {
        check(&[], &[], &[], 0);
        check(&["a", "b"], &["b", "a"], &[], 0);
        check(&["a", "b", "c"], &["b"], &["a", "c"], 2);
        check(&["a", "b", "a", "a"], &["b", "a"], &["a", "a"], 2);
        check(&["a"], &["a", "a", "a"], &[], 0);
        check(&["c", "b", "a"], &[], &["c", "b", "a"], 3);
    }

    #[test]
    fn collapse_whitespace_trims_and_joins() {
        for (text, expected) in [
            ("", ""),
            ("  \t ", ""),
            ("Plain", "Plain"),
            ("  Two   words \n", "Two words"),
            ("No\u{a0}break\u{2003}space", "No break space"),
        ] {
            assert_eq!(collapse_whitespace(text), expected, "{text:?}");
        }
    }
}
