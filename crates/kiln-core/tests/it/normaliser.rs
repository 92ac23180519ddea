//! Property tests of the cache key: every spelling of one page gives one key, and different pages
//! never share one.
//!
//! A page is generated as its parts (path segments, query parameters); each test then writes it
//! the ways clients and crawlers do: unreserved characters escaped or not, escapes in either hex
//! case, spaces in the query as `+` or `%20`, parameters in any order, tracking parameters added,
//! a fragment, the host in any case with a trailing dot or a default port.

use kiln_core::{CacheKey, DeviceClass, Hostname, NormalizedUrl};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The default ignored parameters (`DomainSettings::default()`).
fn ignored() -> Vec<String> {
    ["utm_*", "gclid", "fbclid", "msclkid"]
        .map(String::from)
        .to_vec()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Page {
    segments: Vec<String>,
    params: BTreeMap<String, String>,
}

/// A path segment: unreserved characters, sub-delimiters that stay literal, and characters that
/// are always escaped (space, `%`, `?`, `#`, `/`, non-ASCII). Never only dots (a dot-segment).
fn segment() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9._~ %?#/é€-]{1,8}")
        .unwrap()
        .prop_filter("dot segments resolve away", |s| {
            !s.chars().all(|c| c == '.')
        })
}

fn param_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z][a-z0-9_]{0,6}")
        .unwrap()
        .prop_filter("not an ignored parameter", |name| {
            !name.starts_with("utm_") && !["gclid", "fbclid", "msclkid"].contains(&name.as_str())
        })
}

fn param_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 +&=/?é%._-]{0,8}").unwrap()
}

fn page() -> impl Strategy<Value = Page> {
    (
        proptest::collection::vec(segment(), 0..4),
        proptest::collection::btree_map(param_name(), param_value(), 0..4),
    )
        .prop_map(|(segments, params)| Page { segments, params })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn escape(b: u8, lower: bool) -> String {
    if lower {
        format!("%{b:02x}")
    } else {
        format!("%{b:02X}")
    }
}

/// How one client writes the page: `choices` decides, byte by byte, between the equivalent forms.
fn spell(page: &Page, choices: &[bool], order: &[usize], extras: bool) -> String {
    let mut pick = choices.iter().copied().cycle();
    let mut target = String::new();
    for segment in &page.segments {
        target.push('/');
        for &b in segment.as_bytes() {
            let (escape_it, lower) = (pick.next().unwrap(), pick.next().unwrap());
            if is_unreserved(b) && !escape_it {
                target.push(b as char);
            } else {
                target.push_str(&escape(b, lower));
            }
        }
    }
    if page.segments.is_empty() {
        target.push('/');
    }
    let mut pairs: Vec<(&String, &String)> = page.params.iter().collect();
    // Any order: rotate by the client's choice.
    if !pairs.is_empty() {
        let by = order.first().copied().unwrap_or(0) % pairs.len();
        pairs.rotate_left(by);
    }
    let mut query: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| {
            let mut written = format!("{name}=");
            for &b in value.as_bytes() {
                let (choice, lower) = (pick.next().unwrap(), pick.next().unwrap());
                match b {
                    b' ' if choice => written.push('+'),
                    b' ' => written.push_str(&escape(b, lower)),
                    b if is_unreserved(b) && !choice => written.push(b as char),
                    b => written.push_str(&escape(b, lower)),
                }
            }
            written
        })
        .collect();
    if extras {
        query.insert(0, "utm_source=newsletter".to_owned());
        query.push("gclid=abc123".to_owned());
        query.push("UTM_Campaign=x%20y".to_owned());
    }
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    if extras {
        target.push_str("#section-2");
    }
    target
}

fn normalise(target: &str) -> NormalizedUrl {
    let host = Hostname::parse("shop.example.com").unwrap();
    NormalizedUrl::from_request("https", &host, target, &ignored())
        .unwrap_or_else(|e| panic!("{target}: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_spelling_of_a_page_gives_one_key(
        page in page(),
        first in proptest::collection::vec(any::<bool>(), 1..64),
        second in proptest::collection::vec(any::<bool>(), 1..64),
        order in proptest::collection::vec(any::<usize>(), 1..2),
        extras in any::<bool>(),
    ) {
        let a = spell(&page, &first, &[0], false);
        let b = spell(&page, &second, &order, extras);
        let (na, nb) = (normalise(&a), normalise(&b));
        prop_assert_eq!(&na, &nb, "{} and {}", a, b);
        let key = |url: &NormalizedUrl| CacheKey::new("d1", DeviceClass::Desktop, url);
        prop_assert_eq!(key(&na), key(&nb));
        // Normalising a normalised URL changes nothing.
        prop_assert_eq!(normalise(na.path_and_query()), na.clone());
    }

    #[test]
    fn different_pages_never_share_a_key(
        a in page(),
        b in page(),
        choices in proptest::collection::vec(any::<bool>(), 1..64),
    ) {
        prop_assume!(a != b);
        let (ta, tb) = (spell(&a, &choices, &[0], false), spell(&b, &choices, &[0], false));
        let (na, nb) = (normalise(&ta), normalise(&tb));
        prop_assert_ne!(&na, &nb, "{} and {}", ta, tb);
        prop_assert_ne!(
            CacheKey::new("d1", DeviceClass::Desktop, &na),
            CacheKey::new("d1", DeviceClass::Desktop, &nb)
        );
    }

    #[test]
    fn any_request_target_is_normalised_or_refused_never_a_panic(target in "/[ -~é]{0,64}") {
        let host = Hostname::parse("shop.example.com").unwrap();
        if let Ok(url) = NormalizedUrl::from_request("http", &host, &target, &ignored()) {
            prop_assert!(url.as_str().starts_with("http://shop.example.com/"));
            prop_assert_eq!(
                NormalizedUrl::from_request("http", &host, url.path_and_query(), &ignored()).unwrap(),
                url.clone()
            );
        }
    }

    #[test]
    fn host_spellings_share_one_hostname(
        upper in proptest::collection::vec(any::<bool>(), 16),
        dot in any::<bool>(),
    ) {
        let name: String = "shop.example.com"
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let header = if dot { format!("{name}.") } else { name };
        prop_assert_eq!(
            Hostname::from_host_header(&header).unwrap(),
            Hostname::parse("shop.example.com").unwrap()
        );
    }
}

#[test]
fn devices_and_domains_keep_their_own_keys() {
    let url = normalise("/products/3");
    let desktop = CacheKey::new("d1", DeviceClass::Desktop, &url);
    assert_ne!(desktop, CacheKey::new("d1", DeviceClass::Mobile, &url));
    assert_ne!(desktop, CacheKey::new("d2", DeviceClass::Desktop, &url));
}
