//! The comparison of what a crawler reads besides the text: title, description, canonical link,
//! headings, links and JSON-LD.

use crate::multiset::{Item, collapse_whitespace, unmatched};
use kiln_core::parity::{FieldDiff, PageFacts};
use serde_json::Value;
use url::Url;

/// The fields that differ, in the order title, description, canonical, headings, links, json_ld;
/// empty when all agree.
///
/// Single values compare after trimming (and, for the title and description, collapsing
/// whitespace); an empty value is no value. Lists compare as multisets: headings as normalised
/// `h2: Text` strings, links without their fragment and with the host in lower case, JSON-LD blocks
/// by their parsed value (key order and formatting aside) or, if a block does not parse, its
/// trimmed text.
pub fn field_diffs(live: &PageFacts, snapshot: &PageFacts) -> Vec<FieldDiff> {
    let text = |value: &str| non_empty(collapse_whitespace(value));
    let optional_text = |value: &Option<String>| value.as_deref().and_then(text);
    let trimmed = |value: &Option<String>| {
        value
            .as_deref()
            .and_then(|v| non_empty(v.trim().to_owned()))
    };
    let headings = |facts: &PageFacts| {
        facts
            .headings
            .iter()
            .map(|h| Item::plain(collapse_whitespace(h)))
            .collect()
    };
    let links = |facts: &PageFacts| facts.links.iter().map(|href| link(href)).collect();
    let json_ld = |facts: &PageFacts| {
        facts
            .json_ld
            .iter()
            .map(|block| json_ld_block(block))
            .collect()
    };

    [
        single("title", text(&live.title), text(&snapshot.title)),
        single(
            "description",
            optional_text(&live.description),
            optional_text(&snapshot.description),
        ),
        single(
            "canonical",
            trimmed(&live.canonical),
            trimmed(&snapshot.canonical),
        ),
        multiset("headings", headings(live), headings(snapshot)),
        multiset("links", links(live), links(snapshot)),
        multiset("json_ld", json_ld(live), json_ld(snapshot)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn single(field: &str, live: Option<String>, snapshot: Option<String>) -> Option<FieldDiff> {
    (live != snapshot).then(|| FieldDiff {
        field: field.to_owned(),
        only_live: live.into_iter().collect(),
        only_snapshot: snapshot.into_iter().collect(),
    })
}

fn multiset(field: &str, live: Vec<Item>, snapshot: Vec<Item>) -> Option<FieldDiff> {
    let only_live = unmatched(&live, &snapshot);
    let only_snapshot = unmatched(&snapshot, &live);
    (only_live.total > 0 || only_snapshot.total > 0).then(|| FieldDiff {
        field: field.to_owned(),
        only_live: only_live.listed,
        only_snapshot: only_snapshot.listed,
    })
}

/// A link, compared without its fragment (the same page either way) and with its host in lower
/// case; listed as it is written. An href that is not a URL compares as it is.
fn link(href: &str) -> Item {
    let href = href.trim();
    let key = match Url::parse(href) {
        Ok(mut url) => {
            url.set_fragment(None);
            // The URL parser lowers the hosts of http(s) and the other special schemes; this
            // covers the rest.
            if let Some(host) = url
                .host_str()
                .filter(|h| h.bytes().any(|b| b.is_ascii_uppercase()))
            {
                let host = host.to_ascii_lowercase();
                // Lowering an ASCII host the parser accepted gives one it accepts too; if it ever
                // did not, the link would just compare with its host as written.
                url.set_host(Some(&host)).ok();
            }
            String::from(url)
        }
        Err(_) => href.to_owned(),
    };
    Item {
        key,
        shown: href.to_owned(),
    }
}

/// A JSON-LD block, compared by its canonical form; listed trimmed.
fn json_ld_block(block: &str) -> Item {
    let block = block.trim();
    let key = match serde_json::from_str::<Value>(block) {
        Ok(value) => {
            let mut canonical = String::new();
            write_canonical(&value, &mut canonical);
            canonical
        }
        Err(_) => block.to_owned(),
    };
    Item {
        key,
        shown: block.to_owned(),
    }
}

/// Writes `value` as compact JSON with every object's keys sorted. serde_json sorts keys itself
/// unless some crate in the build turns on its `preserve_order` feature; sorting here keeps the
/// comparison right whatever the feature set.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            out.push('{');
            for (n, (key, value)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                // A string's JSON form: quoted and escaped.
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::parity::MAX_LISTED_LINES;

    fn diff(field: &str, only_live: &[&str], only_snapshot: &[&str]) -> FieldDiff {
        FieldDiff {
            field: field.to_owned(),
            only_live: strings(only_live),
            only_snapshot: strings(only_snapshot),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(live: PageFacts, snapshot: PageFacts, expected: &[FieldDiff]) {
        assert_eq!(
            field_diffs(&live, &snapshot),
            expected,
            "{live:?}\nagainst\n{snapshot:?}"
        );
    }

    fn facts() -> PageFacts {
        PageFacts {
            title: "Boots | Shop".into(),
            description: Some("Warm boots.".into()),
            canonical: Some("https://shop.example/boots".into()),
            headings: strings(&["h1: Boots", "h2: Reviews"]),
            links: strings(&["https://shop.example/", "https://shop.example/cart"]),
            json_ld: strings(&[r#"{"@type": "Product", "name": "Boots"}"#]),
            ..PageFacts::default()
        }
    }

    #[test]
    fn equal_facts_give_no_fields() {
        check(facts(), facts(), &[]);
        check(PageFacts::default(), PageFacts::default(), &[]);
    }

    #[test]
    fn single_values() {
        let with = |change: fn(&mut PageFacts)| {
            let mut facts = facts();
            change(&mut facts);
            facts
        };
        check(
            facts(),
            with(|f| f.canonical = Some("https://shop.example/boots?page=1".into())),
            &[diff(
                "canonical",
                &["https://shop.example/boots"],
                &["https://shop.example/boots?page=1"],
            )],
        );
        check(
            facts(),
            with(|f| f.canonical = None),
            &[diff("canonical", &["https://shop.example/boots"], &[])],
        );
        check(
            facts(),
            with(|f| f.canonical = Some(" https://shop.example/boots\n".into())),
            &[],
        );
        check(facts(), with(|f| f.title = "  Boots |\n Shop ".into()), &[]);
        check(
            facts(),
            with(|f| f.title = "Shop".into()),
            &[diff("title", &["Boots | Shop"], &["Shop"])],
        );
        check(
            with(|f| f.title = String::new()),
            with(|f| f.title = "Boots".into()),
            &[diff("title", &[], &["Boots"])],
        );
        // An empty description is no description.
        check(
            with(|f| f.description = Some("  ".into())),
            with(|f| f.description = None),
            &[],
        );
        check(
            facts(),
            with(|f| f.description = None),
            &[diff("description", &["Warm boots."], &[])],
        );
    }

    #[test]
    fn headings_compare_as_multisets() {
        let with = |headings: &[&str]| PageFacts {
            headings: strings(headings),
            ..PageFacts::default()
        };
        check(with(&["h1: A", "h2: B"]), with(&["h2:  B", "h1: A "]), &[]);
        check(
            with(&["h1: A", "h2: B", "h2: B", "h3: C"]),
            with(&["h1: A", "h2: B", "h3: D"]),
            &[diff("headings", &["h2: B", "h3: C"], &["h3: D"])],
        );
    }

    #[test]
    fn links_ignore_the_fragment_and_the_case_of_the_host() {
        let with = |links: &[&str]| PageFacts {
            links: strings(links),
            ..PageFacts::default()
        };
        check(
            with(&["https://shop.example/boots#reviews"]),
            with(&["https://shop.example/boots#top"]),
            &[],
        );
        check(
            with(&["https://shop.example/boots#reviews"]),
            with(&["https://shop.example/boots"]),
            &[],
        );
        check(
            with(&["https://Shop.EXAMPLE/boots"]),
            with(&["https://shop.example/boots"]),
            &[],
        );
        check(
            with(&["custom://Host.Example/x"]),
            with(&["custom://host.example/x#y"]),
            &[],
        );
        // The path's case matters, and so do the query and each duplicate.
        check(
            with(&[
                "https://shop.example/Boots",
                "https://shop.example/?a=1",
                "https://shop.example/",
            ]),
            with(&["https://shop.example/boots", "https://shop.example/?a=2"]),
            &[diff(
                "links",
                &[
                    "https://shop.example/Boots",
                    "https://shop.example/?a=1",
                    "https://shop.example/",
                ],
                &["https://shop.example/boots", "https://shop.example/?a=2"],
            )],
        );
        // Not a URL: compared as written.
        check(with(&["not a url"]), with(&["not a url"]), &[]);
        check(
            with(&["not a url#a"]),
            with(&["not a url#b"]),
            &[diff("links", &["not a url#a"], &["not a url#b"])],
        );
    }

    #[test]
    fn json_ld_compares_values_not_formatting() {
        let with = |blocks: &[&str]| PageFacts {
            json_ld: strings(blocks),
            ..PageFacts::default()
        };
        check(
            with(&[
                r#"{"@type": "Product", "offers": {"price": "12", "currency": "EUR"}, "name": "Boots"}"#,
            ]),
            with(&[
                "{\n  \"name\": \"Boots\",\n  \"@type\": \"Product\",\n  \"offers\": {\"currency\": \"EUR\", \"price\": \"12\"}\n}",
            ]),
            &[],
        );
        // Arrays keep their order; values matter.
        check(
            with(&[r#"{"a": [1, 2]}"#]),
            with(&[r#"{"a": [2, 1]}"#]),
            &[diff(
                "json_ld",
                &[r#"{"a": [1, 2]}"#],
                &[r#"{"a": [2, 1]}"#],
            )],
        );
        // A block that does not parse compares by its trimmed text.
        check(with(&["  {broken  "]), with(&["{broken"]), &[]);
        check(
            with(&["{broken"]),
            with(&["{broken}"]),
            &[diff("json_ld", &["{broken"], &["{broken}"])],
        );
    }

    #[test]
    fn fields_come_in_their_order_and_lists_are_capped() {
        let many: Vec<String> = (0..MAX_LISTED_LINES + 10)
            .map(|n| format!("https://shop.example/{n}"))
            .collect();
        let live = PageFacts {
            title: "A".into(),
            links: many,
            json_ld: strings(&["[]"]),
            ..PageFacts::default()
        };
        let snapshot = PageFacts {
            title: "B".into(),
            canonical: Some("https://shop.example/".into()),
            ..PageFacts::default()
        };

        let fields = field_diffs(&live, &snapshot);

        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["title", "canonical", "links", "json_ld"]);
        assert_eq!(fields[2].only_live.len(), MAX_LISTED_LINES);
        assert_eq!(fields[2].only_live[0], "https://shop.example/0");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value: Value =
            serde_json::from_str(r#"{"b": {"d": 1, "c": [{"f": null, "e": "\""}]}, "a": true}"#)
                .unwrap();
        let mut out = String::new();
        write_canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":true,"b":{"c":[{"e":"\"","f":null}],"d":1}}"#);
    }
}
