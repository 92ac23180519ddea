//! The promises the hostile-input fuzz targets (`fuzz/`) check on every input, shared with the tests
//! that replay the committed corpora on stable Rust (`tests/fuzz_corpus.rs`, through
//! `kiln_testkit::fuzzing::replay_corpus`).
//!
//! Each check takes the raw bytes a fuzzer produces and panics, naming the broken promise, when the
//! code breaks one; a refused input (an error result) is fine, a panic or a wrong answer is not.
//! Compiled only with the `fuzzing` feature, so production builds do not carry it.

use crate::bots::{BOTS_MAP, BotClassifier, MAX_USER_AGENT, compile};
use crate::url::{MAX_TARGET_LEN, is_ignored};
use crate::{Hostname, NormalizedUrl};
use std::sync::LazyLock;

/// The ignored query parameters of `DomainSettings::default()`, used when an input names none.
const DEFAULT_IGNORED: [&str; 4] = ["utm_*", "gclid", "fbclid", "msclkid"];

/// The `url` target. The input is lines: a `Host` header, a request target, then the domain's
/// ignored query parameters, one a line (the defaults when there are none). The gateway turns the
/// first two into a cache key exactly this way: [`Hostname::from_host_header`], then
/// [`NormalizedUrl::from_request`].
pub fn url(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let mut lines = input.split('\n');
    let host_header = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let mut ignored: Vec<String> = lines.map(str::to_owned).collect();
    if ignored.is_empty() {
        ignored = DEFAULT_IGNORED.map(String::from).to_vec();
    }
    if let Some(host) = host_header_hostname(host_header) {
        normalised_url(&host, target, &ignored);
    }
}

/// A `Host` header is refused or read into a canonical hostname that every other spelling of it
/// reads into too.
fn host_header_hostname(header: &str) -> Option<Hostname> {
    let host = Hostname::from_host_header(header).ok()?;
    let name = host.as_str();
    assert!(
        !name.is_empty() && name.len() <= 253,
        "{header:?} gave {name:?}"
    );
    assert!(
        name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        }),
        "{header:?} gave the non-canonical {name:?}"
    );
    // The canonical form is a fixed point, however a client or an operator writes it back.
    assert_eq!(Hostname::parse(name).as_ref(), Ok(&host), "parse({name:?})");
    for spelling in [
        name.to_owned(),
        name.to_ascii_uppercase(),
        format!("{name}."),
        format!("{name}:8080"),
        format!(" {}.:443 ", name.to_ascii_uppercase()),
    ] {
        assert_eq!(
            Hostname::from_host_header(&spelling).as_ref(),
            Ok(&host),
            "{spelling:?} (from {header:?})"
        );
    }
    Some(host)
}

/// A request target is refused or normalised into an absolute URL on the same host, in a form that
/// normalises to itself, and that every equivalent spelling of the target normalises to.
fn normalised_url(host: &Hostname, target: &str, ignored: &[String]) {
    let Ok(url) = NormalizedUrl::from_request("https", host, target, ignored) else {
        return;
    };
    let text = url.as_str();
    let base = format!("https://{host}");
    assert_eq!(url.base(), base, "{target:?} gave {text:?}");
    assert!(url.path_and_query().starts_with('/'), "{text:?}");
    assert_eq!(format!("{}{}", url.base(), url.path_and_query()), text);
    // Spaces, controls, non-ASCII and `#` are all escaped: the key is one printable token.
    assert!(
        text.bytes().all(|b| b.is_ascii_graphic() && b != b'#'),
        "{target:?} gave {text:?}"
    );

    let parsed = ::url::Url::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(parsed.scheme(), "https", "{text:?}");
    assert_eq!(parsed.host_str(), Some(host.as_str()), "{text:?}");
    assert_eq!(parsed.port(), None, "{text:?}");
    assert_eq!(parsed.as_str(), text, "not in the URL parser's own form");
    if let Some(query) = parsed.query() {
        let pairs: Vec<_> = ::url::form_urlencoded::parse(query.as_bytes()).collect();
        assert!(!pairs.is_empty(), "an empty query is dropped: {text:?}");
        assert!(pairs.is_sorted(), "the query is sorted: {text:?}");
        assert!(
            pairs.iter().all(|(name, _)| !is_ignored(name, ignored)),
            "an ignored parameter is left in {text:?} ({ignored:?})"
        );
    }

    // Normalising the normalised form changes nothing (the dashboard normalises URLs read back from
    // the cache that way), unless escaping made it longer than any request target Kiln accepts.
    let again = NormalizedUrl::from_request("https", host, url.path_and_query(), ignored);
    if url.path_and_query().len() <= MAX_TARGET_LEN {
        assert_eq!(again.as_ref(), Ok(&url), "normalising {text:?} again");
    } else {
        assert!(again.is_err());
    }

    // The scheme changes the scheme and nothing else, in any case.
    let http = NormalizedUrl::from_request("http", host, target, ignored).expect("http too");
    assert_eq!(
        http.as_str().strip_prefix("http"),
        text.strip_prefix("https")
    );
    let upper = NormalizedUrl::from_request("HTTPS", host, target, ignored);
    assert_eq!(upper.as_ref(), Ok(&url));

    // Escapes in either hex case are one spelling, and a fragment never reaches the key.
    let upper_escapes = upper_case_escapes(target);
    assert_eq!(
        NormalizedUrl::from_request("https", host, &upper_escapes, ignored).as_ref(),
        Ok(&url),
        "{upper_escapes:?} (from {target:?})"
    );
    let with_fragment = format!("{target}#frag%20ment");
    if with_fragment.len() <= MAX_TARGET_LEN {
        assert_eq!(
            NormalizedUrl::from_request("https", host, &with_fragment, ignored).as_ref(),
            Ok(&url),
            "{with_fragment:?}"
        );
    }
}

/// `%c3%a9` → `%C3%A9`: the same target with every escape's hex digits in upper case.
fn upper_case_escapes(target: &str) -> String {
    let bytes = target.as_bytes();
    let mut out = bytes.to_vec();
    for i in 0..bytes.len() {
        if bytes[i] == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            out[i + 1] = bytes[i + 1].to_ascii_uppercase();
            out[i + 2] = bytes[i + 2].to_ascii_uppercase();
        }
    }
    String::from_utf8(out).expect("only ASCII hex digits changed")
}

/// The `user_agent` target: the input is one User-Agent, classified as the gateway does.
pub fn user_agent(data: &[u8]) {
    let user_agent = String::from_utf8_lossy(data);
    let classifier = BotClassifier::shared();
    let family = classifier.classify(&user_agent);

    // As in nginx's `map`, the first pattern in the file's order that matches decides; the
    // classifier asks a set of all of them at once, which must agree with asking one by one.
    let mut end = user_agent.len().min(MAX_USER_AGENT);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    let looked_at = &user_agent[..end];
    let one_by_one = SINGLE_PATTERNS
        .iter()
        .position(|(regex, _)| regex.is_match(looked_at.as_bytes()))
        .map(|index| SINGLE_PATTERNS[index].1);
    assert_eq!(family, one_by_one, "{user_agent:?}");

    // Every pattern of the data file is case-insensitive (`~*`), so case never changes the answer.
    assert_eq!(
        classifier.classify(&user_agent.to_ascii_uppercase()),
        family,
        "upper case of {user_agent:?}"
    );
    assert_eq!(
        classifier.classify(&user_agent.to_ascii_lowercase()),
        family,
        "lower case of {user_agent:?}"
    );
}

/// Each entry of `nginx/bots.map` on its own, with its family, in the file's order.
static SINGLE_PATTERNS: LazyLock<Vec<(regex::bytes::Regex, crate::BotFamily)>> =
    LazyLock::new(|| {
        let mut entries = Vec::new();
        for index in 0..BotClassifier::shared().len() {
            let (pattern, family) = BotClassifier::shared().entry(index);
            assert!(
                pattern.starts_with("(?i)"),
                "{pattern:?} is not case-insensitive"
            );
            entries.push((compile(pattern).expect("compiles"), family));
        }
        assert!(!entries.is_empty() && BOTS_MAP.contains("version:"));
        entries
    });

/// The `bots_map` target: the input is a data file in the `bots.map` format, which is read or
/// refused with the number of a line it has, never a panic.
pub fn bots_map(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count();
    match BotClassifier::parse(&text) {
        Ok(classifier) => {
            assert_eq!(classifier.len(), entries, "one pattern per entry");
            // A classifier that reads is one that answers, for any User-Agent.
            classifier.classify(&text);
            classifier.classify("");
        }
        Err(error) => assert!(
            error.line <= text.lines().count().max(1),
            "{error} names a line the file does not have"
        ),
    }
}
