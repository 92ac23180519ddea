//! The configuration of a registered domain, as the dashboard publishes it for gateways and workers.

use crate::{BotFamily, Hostname, NormalizedUrl};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// Everything a gateway or worker needs to know about one customer domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    pub id: String,
    pub tenant_id: String,
    pub host: Hostname,
    /// The customer's origin server: scheme, host and optional port, no path (e.g. `https://origin.shop.com`).
    pub origin: String,
    /// Whether the domain's ownership is established. Unverified domains are proxied for people but
    /// never rendered for bots.
    pub verified: bool,
    #[serde(default)]
    pub settings: DomainSettings,
    /// Whether the domain is used only through the render service: the customer's own server
    /// (prerender-node, rendertron-middleware, an nginx recipe…) asks Kiln for its bots' pages with
    /// a service token, and its traffic never comes through Kiln's edge. Its origin is the public
    /// site itself, so the gateway renders the very URL it was asked for and never proxies the
    /// host (that would send Kiln's requests back to the customer's middleware, and to Kiln).
    #[serde(default)]
    pub service_only: bool,
}

/// Per-domain knobs, each with a sane default so that older published records stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainSettings {
    /// How long a render is fresh: served from the cache as it is (`HIT`).
    pub cache_ttl_secs: u64,
    /// How long after that a render is still served, at once, while one background render replaces
    /// it (`STALE`; RFC 5861's stale-while-revalidate). A refresh that fails leaves the stale copy
    /// in place, so it also covers an origin that is down (stale-if-error). 0 turns this off.
    pub stale_ttl_secs: u64,
    /// The longest a single render may take in the browser.
    pub render_timeout_ms: u64,
    /// How long a bot waits for a render on a cache miss before it gets the origin's page.
    pub bot_wait_ms: u64,
    /// Query parameters that never change the page (`utm_*` is a prefix pattern).
    pub ignored_query_params: Vec<String>,
    /// What renders do not download.
    pub blocking: ResourceBlocking,
    /// Whether phones and desktops get separate renders. When off, every bot gets the desktop render,
    /// so each URL is rendered and cached once.
    pub device_variants: bool,
    /// Which families of known bots get renders (all by default). A bot of another family is
    /// proxied to the origin like a person.
    pub bot_families: BTreeSet<BotFamily>,
    /// Extra bot User-Agent patterns for this domain (case-insensitive substrings). A request the
    /// edge took for a person's whose User-Agent contains one takes the bot path, whatever
    /// `bot_families` says.
    pub bot_user_agents: Vec<String>,
    /// Path globs (`*` matches anything, `/` included; everything else is literal) of the pages
    /// rendered for bots. Empty means every page.
    pub include_paths: Vec<String>,
    /// Path globs of pages never rendered: bots asking for them are proxied to the origin.
    pub exclude_paths: Vec<String>,
    /// How many requests a second each client address may make on the bot path (0: no limit).
    /// Verified crawlers are not limited: their operators pace them.
    pub bot_rate_per_second: u64,
    /// How many requests a client address may make at once before the rate applies.
    pub bot_rate_burst: u64,
}

/// What a render does not download. Bots read the document, not its pixels: images, media and fonts
/// only cost time, and analytics, ads and tag managers would count every render as a visit.
/// Stylesheets can change what the page shows (`display: none`), so they load by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceBlocking {
    pub images: bool,
    pub media: bool,
    pub fonts: bool,
    pub stylesheets: bool,
    /// Known analytics, advertising and tag-manager hosts.
    pub trackers: bool,
}

impl Default for ResourceBlocking {
    fn default() -> Self {
        ResourceBlocking {
            images: true,
            media: true,
            fonts: true,
            stylesheets: false,
            trackers: true,
        }
    }
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings {
            cache_ttl_secs: 3600,
            stale_ttl_secs: 7 * 24 * 3600,
            render_timeout_ms: 10_000,
            bot_wait_ms: 20_000,
            ignored_query_params: ["utm_*", "gclid", "fbclid", "msclkid"]
                .map(String::from)
                .to_vec(),
            blocking: ResourceBlocking::default(),
            device_variants: true,
            bot_families: BotFamily::ALL.into(),
            bot_user_agents: Vec::new(),
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
            bot_rate_per_second: 2,
            bot_rate_burst: 10,
        }
    }
}

/// Why a domain's settings were refused. The message names the setting (with the entry's index for
/// lists) and the rule it breaks, so that it can be shown to the customer as it is:
/// `cache_ttl_secs must be between 1 and 31536000`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct SettingsError {
    /// The setting at fault: `bot_wait_ms`, or `bot_user_agents[2]` for one entry of a list.
    pub field: String,
    /// What the setting must be, phrased to follow its name.
    pub rule: String,
}

impl DomainSettings {
    pub const CACHE_TTL_SECS: RangeInclusive<u64> = 1..=31_536_000;
    /// Up to a year; 0 serves nothing stale.
    pub const STALE_TTL_SECS: RangeInclusive<u64> = 0..=31_536_000;
    /// The bounds the worker clamps a render's budget to anyway: under a second no page loads, and
    /// two minutes is as long as any bot waits.
    pub const RENDER_TIMEOUT_MS: RangeInclusive<u64> = 1_000..=120_000;
    /// Zero is allowed: such a domain never holds a bot back, it renders for the next one.
    pub const BOT_WAIT_MS: RangeInclusive<u64> = 0..=120_000;
    /// 0 turns the limit off.
    pub const BOT_RATE_PER_SECOND: RangeInclusive<u64> = 0..=10_000;
    pub const BOT_RATE_BURST: RangeInclusive<u64> = 1..=10_000;
    /// The most entries any list setting may have.
    pub const MAX_LIST_LEN: usize = 100;

    /// Checks every setting against its bounds, returning the first that breaks one. The dashboard
    /// refuses such settings; gateways and workers still cope with any published record.
    pub fn validate(&self) -> Result<(), SettingsError> {
        in_range("cache_ttl_secs", self.cache_ttl_secs, Self::CACHE_TTL_SECS)?;
        in_range("stale_ttl_secs", self.stale_ttl_secs, Self::STALE_TTL_SECS)?;
        in_range(
            "render_timeout_ms",
            self.render_timeout_ms,
            Self::RENDER_TIMEOUT_MS,
        )?;
        in_range("bot_wait_ms", self.bot_wait_ms, Self::BOT_WAIT_MS)?;
        in_range(
            "bot_rate_per_second",
            self.bot_rate_per_second,
            Self::BOT_RATE_PER_SECOND,
        )?;
        in_range("bot_rate_burst", self.bot_rate_burst, Self::BOT_RATE_BURST)?;
        each(
            "ignored_query_params",
            &self.ignored_query_params,
            is_query_param_pattern,
            "must be 1 to 100 of the characters A-Z a-z 0-9 - . _ ~ [ ], optionally followed by *",
        )?;
        each(
            "bot_user_agents",
            &self.bot_user_agents,
            is_user_agent_pattern,
            "must be 2 to 200 printable ASCII characters, neither starting nor ending with a space",
        )?;
        for (field, list) in [
            ("include_paths", &self.include_paths),
            ("exclude_paths", &self.exclude_paths),
        ] {
            each(
                field,
                list,
                is_path_pattern,
                "must start with / or *, be at most 512 characters long and contain no control characters",
            )?;
        }
        Ok(())
    }
}

fn in_range(field: &str, value: u64, range: RangeInclusive<u64>) -> Result<(), SettingsError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(SettingsError {
        field: field.to_owned(),
        rule: format!("must be between {} and {}", range.start(), range.end()),
    })
}

fn each(
    field: &str,
    list: &[String],
    valid: fn(&str) -> bool,
    rule: &str,
) -> Result<(), SettingsError> {
    if list.len() > DomainSettings::MAX_LIST_LEN {
        return Err(SettingsError {
            field: field.to_owned(),
            rule: format!("must have at most {} entries", DomainSettings::MAX_LIST_LEN),
        });
    }
    match list.iter().position(|entry| !valid(entry)) {
        None => Ok(()),
        Some(index) => Err(SettingsError {
            field: format!("{field}[{index}]"),
            rule: rule.to_owned(),
        }),
    }
}

/// A query parameter name, or a prefix of names when it ends in `*`. The characters are those a name
/// is made of in practice (RFC 3986's unreserved ones and the brackets of `filter[]`), so that a
/// pattern can never contain the `&` and `=` that separate parameters.
fn is_query_param_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]".contains(&b))
}

fn is_user_agent_pattern(pattern: &str) -> bool {
    (2..=200).contains(&pattern.len())
        && pattern.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !pattern.starts_with(' ')
        && !pattern.ends_with(' ')
}

fn is_path_pattern(pattern: &str) -> bool {
    (pattern.starts_with('/') || pattern.starts_with('*'))
        && pattern.len() <= 512
        && !pattern.chars().any(char::is_control)
}

impl DomainConfig {
    /// The origin URL that serves the page a client asked for at `url`: the same path and query on
    /// the origin, or `url` itself for a domain used only through the render service (whose origin
    /// is the public site).
    pub fn origin_url_for(&self, url: &NormalizedUrl) -> String {
        if self.service_only {
            return url.as_str().to_owned();
        }
        format!(
            "{}{}",
            self.origin.trim_end_matches('/'),
            url.path_and_query()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_url_keeps_path_and_query() {
        let domain = DomainConfig {
            id: "d".into(),
            tenant_id: "t".into(),
            host: Hostname::parse("shop.com").unwrap(),
            origin: "http://127.0.0.1:5173/".into(),
            verified: true,
            settings: DomainSettings::default(),
            service_only: false,
        };
        let url = NormalizedUrl::from_stored("https://shop.com/p/3?a=1".into());
        assert_eq!(domain.origin_url_for(&url), "http://127.0.0.1:5173/p/3?a=1");
    }

    #[test]
    fn settings_survive_a_json_round_trip() {
        let settings = DomainSettings {
            cache_ttl_secs: 60,
            stale_ttl_secs: 0,
            render_timeout_ms: 5_000,
            bot_wait_ms: 0,
            ignored_query_params: vec!["ref".into()],
            blocking: ResourceBlocking {
                stylesheets: true,
                ..ResourceBlocking::default()
            },
            device_variants: false,
            bot_families: [BotFamily::Search, BotFamily::Ai].into(),
            bot_user_agents: vec!["MyCrawler".into()],
            include_paths: vec!["/blog/*".into()],
            exclude_paths: vec!["*.pdf".into(), "/admin*".into()],
            bot_rate_per_second: 0,
            bot_rate_burst: 3,
        };
        let json = serde_json::to_string(&settings).unwrap();
        let back: DomainSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, settings);
        assert!(json.contains(r#""device_variants":false"#), "{json}");
        assert!(json.contains(r#""bot_families":["search","ai"]"#), "{json}");
        // Records published before the setting existed render for every family.
        let old: DomainSettings = serde_json::from_str(r#"{"cache_ttl_secs":60}"#).unwrap();
        assert_eq!(old.bot_families, BotFamily::ALL.into());
        assert_eq!((old.bot_rate_per_second, old.bot_rate_burst), (2, 10));
        assert!(
            json.contains(r#""exclude_paths":["*.pdf","/admin*"]"#),
            "{json}"
        );
    }

    #[test]
    fn settings_published_before_the_new_fields_take_their_defaults() {
        let json = r#"{"cache_ttl_secs":60,"render_timeout_ms":5000,"bot_wait_ms":100,
            "ignored_query_params":["utm_*"],
            "blocking":{"images":true,"media":true,"fonts":true,"stylesheets":false,"trackers":true}}"#;
        let parsed: DomainSettings = serde_json::from_str(json).unwrap();
        assert!(parsed.device_variants);
        assert!(parsed.bot_user_agents.is_empty());
        assert!(parsed.include_paths.is_empty());
        assert!(parsed.exclude_paths.is_empty());
        assert_eq!(parsed.cache_ttl_secs, 60);
        assert_eq!(parsed.bot_wait_ms, 100);
    }

    #[test]
    fn validation_bounds() {
        #[track_caller]
        fn check(change: impl FnOnce(&mut DomainSettings), expected: Option<&str>) {
            let mut settings = DomainSettings::default();
            change(&mut settings);
            let got = settings.validate().err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), expected, "{settings:?}");
        }
        fn strings(list: &[&str]) -> Vec<String> {
            list.iter().map(|s| s.to_string()).collect()
        }
        let many = |entry: &str, n: usize| vec![entry.to_owned(); n];

        check(|_| {}, None);
        check(|s| s.cache_ttl_secs = 1, None);
        check(|s| s.cache_ttl_secs = 31_536_000, None);
        check(
            |s| s.cache_ttl_secs = 0,
            Some("cache_ttl_secs must be between 1 and 31536000"),
        );
        check(
            |s| s.cache_ttl_secs = 31_536_001,
            Some("cache_ttl_secs must be between 1 and 31536000"),
        );
        check(|s| s.stale_ttl_secs = 0, None);
        check(|s| s.stale_ttl_secs = 31_536_000, None);
        check(
            |s| s.stale_ttl_secs = 31_536_001,
            Some("stale_ttl_secs must be between 0 and 31536000"),
        );
        check(|s| s.render_timeout_ms = 1_000, None);
        check(|s| s.render_timeout_ms = 120_000, None);
        check(
            |s| s.render_timeout_ms = 999,
            Some("render_timeout_ms must be between 1000 and 120000"),
        );
        check(
            |s| s.render_timeout_ms = 120_001,
            Some("render_timeout_ms must be between 1000 and 120000"),
        );
        check(|s| s.bot_wait_ms = 0, None);
        check(|s| s.bot_wait_ms = 120_000, None);
        check(
            |s| s.bot_wait_ms = 120_001,
            Some("bot_wait_ms must be between 0 and 120000"),
        );

        let query_rule =
            "must be 1 to 100 of the characters A-Z a-z 0-9 - . _ ~ [ ], optionally followed by *";
        check(
            |s| s.ignored_query_params = strings(&["utm_*", "a", "filter[]", "x-y.z~"]),
            None,
        );
        check(|s| s.ignored_query_params = many("p", 100), None);
        check(
            |s| s.ignored_query_params = vec!["n".repeat(100) + "*"],
            None,
        );
        check(
            |s| s.ignored_query_params = many("p", 101),
            Some("ignored_query_params must have at most 100 entries"),
        );
        for bad in ["", "*", "a*b", "**", "a=b", "a&b", "a b", "é", "a\n"] {
            check(
                |s| s.ignored_query_params = strings(&["ok", bad]),
                Some(&format!("ignored_query_params[1] {query_rule}")),
            );
        }
        check(
            |s| s.ignored_query_params = vec!["n".repeat(101)],
            Some(&format!("ignored_query_params[0] {query_rule}")),
        );

        let agent_rule =
            "must be 2 to 200 printable ASCII characters, neither starting nor ending with a space";
        check(
            |s| s.bot_user_agents = strings(&["ab", "Screaming Frog", "My-Bot/1.0 (+https://x)"]),
            None,
        );
        check(|s| s.bot_user_agents = vec!["b".repeat(200)], None);
        check(
            |s| s.bot_user_agents = many("bot", 101),
            Some("bot_user_agents must have at most 100 entries"),
        );
        for bad in ["", "a", " bot", "bot ", "bot\t", "bøt", "bot\u{7f}"] {
            check(
                |s| s.bot_user_agents = vec![bad.to_owned()],
                Some(&format!("bot_user_agents[0] {agent_rule}")),
            );
        }
        check(
            |s| s.bot_user_agents = vec!["b".repeat(201)],
            Some(&format!("bot_user_agents[0] {agent_rule}")),
        );

        let path_rule = "must start with / or *, be at most 512 characters long and contain no control characters";
        check(
            |s| {
                s.include_paths = strings(&["/", "/blog/*", "*"]);
                s.exclude_paths = strings(&["*.pdf", "/admin*", "/café/*"]);
            },
            None,
        );
        check(
            |s| s.exclude_paths = vec![format!("/{}", "a".repeat(511))],
            None,
        );
        check(
            |s| s.include_paths = many("/a", 101),
            Some("include_paths must have at most 100 entries"),
        );
        check(
            |s| s.exclude_paths = many("/a", 101),
            Some("exclude_paths must have at most 100 entries"),
        );
        for bad in ["", "blog/*", ".pdf", "/a\nb", "/a\u{0}", "/\u{85}"] {
            check(
                |s| s.include_paths = strings(&["/ok", bad]),
                Some(&format!("include_paths[1] {path_rule}")),
            );
            check(
                |s| s.exclude_paths = vec![bad.to_owned()],
                Some(&format!("exclude_paths[0] {path_rule}")),
            );
        }
        check(
            |s| s.exclude_paths = vec![format!("/{}", "a".repeat(512))],
            Some(&format!("exclude_paths[0] {path_rule}")),
        );
    }

    #[test]
    fn settings_errors_name_the_field() {
        let settings = DomainSettings {
            bot_user_agents: vec!["ok-bot".into(), "x".into()],
            ..DomainSettings::default()
        };
        let error = settings.validate().unwrap_err();
        assert_eq!(error.field, "bot_user_agents[1]");
        assert!(error.rule.starts_with("must be 2 to 200"), "{error}");
    }

    #[test]
    fn missing_settings_take_defaults() {
        let json = r#"{"id":"d","tenant_id":"t","host":"a.com","origin":"http://a","verified":true,"settings":{"cache_ttl_secs":60}}"#;
        let parsed: DomainConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.settings.cache_ttl_secs, 60);
        assert_eq!(parsed.settings.bot_wait_ms, 20_000);
        assert_eq!(parsed.settings.blocking, ResourceBlocking::default());
    }
}
