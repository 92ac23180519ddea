//! Crawlers whose requests can be checked: anyone can send `Googlebot` in a User-Agent, but only
//! Google's machines have reverse DNS names under `googlebot.com` that resolve back to them.
//!
//! Each [`Crawler`] here publishes a way to verify it, and this module holds what that takes: the
//! User-Agent tokens by which a request claims to be the crawler, and the domains its reverse DNS
//! names belong to (forward-confirmed reverse DNS: the address's PTR name must be in one of those
//! domains, and that name's A/AAAA records must include the address). Crawlers that publish only
//! IP ranges (OpenAI's, Perplexity's, DuckDuckGo's, Meta's) are listed without domains; their
//! ranges are files the operator downloads (see [`CrawlerRanges`]), since they change more often
//! than Kiln is released. The sources, as the crawlers' operators document them:
//!
//! - Google: <https://developers.google.com/search/docs/crawling-indexing/verifying-googlebot>
//!   (`googlebot.com`, `google.com`; user-triggered fetchers `gae.googleusercontent.com`, which is
//!   not the `bc.googleusercontent.com` of any Google Cloud customer's machine).
//! - Microsoft: <https://www.bing.com/webmasters/help/how-to-verify-bingbot-3905dc26>
//!   (`search.msn.com`).
//! - Apple: <https://support.apple.com/en-us/119829> (`applebot.apple.com`).
//! - Yandex: <https://yandex.com/support/webmaster/robot-workings/check-yandex-robots.html>.
//! - Baidu: <https://help.baidu.com/question?prod_id=99&class=476&id=2996> (`baidu.com`, `baidu.jp`).
//! - Amazon: <https://developer.amazon.com/amazonbot> (`crawl.amazonbot.amazon`).
//! - Huawei (PetalBot, `petalsearch.com`), Seznam (`seznam.cz`), Naver (Yeti, `naver.com`).
//!
//! Architecture invariant (as for the rest of the crate): no IO here. The DNS lookups are
//! `kiln-verify`'s.

use ipnet::IpNet;
use regex::RegexSet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

/// A crawler that publishes how to verify its requests.
#[derive(Debug, PartialEq, Eq)]
pub struct Crawler {
    /// Kiln's name for it, used in logs and as the name of its ranges file.
    pub name: &'static str,
    /// A case-insensitive regular expression matching the User-Agents that claim to be it.
    user_agent: &'static str,
    /// The domains its reverse DNS names are in; empty if it publishes only IP ranges.
    pub dns_domains: &'static [&'static str],
}

/// Every crawler Kiln can verify. A User-Agent is matched against them in order: the first that
/// matches is the crawler it claims to be.
pub static CRAWLERS: &[Crawler] = &[
    Crawler {
        name: "google",
        user_agent: r"googlebot|google-inspectiontool|googleother|storebot-google|adsbot-google|mediapartners-google|apis-google|feedfetcher-google|google-site-verification|google-read-aloud|duplexweb-google|googleproducer|google-safety|google-cloudvertexbot",
        dns_domains: &["googlebot.com", "google.com", "gae.googleusercontent.com"],
    },
    Crawler {
        name: "bing",
        user_agent: r"bingbot|msnbot|bingpreview|adidxbot",
        dns_domains: &["search.msn.com"],
    },
    Crawler {
        name: "apple",
        user_agent: r"applebot",
        dns_domains: &["applebot.apple.com"],
    },
    Crawler {
        name: "yandex",
        user_agent: r"yandex(bot|images|video|mobilebot|accessibilitybot|renderresourcesbot|news|metrika|blogs|favicons|webmaster|pagechecker|imageresizer|adnet|direct|calendar|screenshotbot|additionalbot|fordomain)",
        dns_domains: &["yandex.ru", "yandex.net", "yandex.com"],
    },
    Crawler {
        name: "baidu",
        user_agent: r"baiduspider",
        dns_domains: &["baidu.com", "baidu.jp"],
    },
    Crawler {
        name: "amazon",
        user_agent: r"amazonbot",
        dns_domains: &["crawl.amazonbot.amazon"],
    },
    Crawler {
        name: "petal",
        user_agent: r"petalbot",
        dns_domains: &["petalsearch.com"],
    },
    Crawler {
        name: "seznam",
        user_agent: r"seznambot",
        dns_domains: &["seznam.cz"],
    },
    Crawler {
        name: "naver",
        user_agent: r"\byeti/",
        dns_domains: &["naver.com"],
    },
    Crawler {
        name: "duckduckgo",
        user_agent: r"duckduckbot|duckassistbot",
        dns_domains: &[],
    },
    Crawler {
        name: "openai",
        user_agent: r"gptbot|oai-searchbot|chatgpt-user",
        dns_domains: &[],
    },
    Crawler {
        name: "perplexity",
        user_agent: r"perplexitybot|perplexity-user",
        dns_domains: &[],
    },
    Crawler {
        name: "meta",
        user_agent: r"facebookexternalhit|facebookcatalog|meta-externalagent|meta-externalfetcher",
        dns_domains: &[],
    },
];

static CLAIMS: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(CRAWLERS.iter().map(|c| format!("(?i){}", c.user_agent)))
        .expect("the crawler patterns compile (tested)")
});

impl Crawler {
    /// The crawler `user_agent` claims to be, if any.
    ///
    /// Each thread remembers the answers for the last few User-Agents it was asked about: a crawl
    /// sends the same one again and again, and matching the whole set of patterns costs a tenth of a
    /// cache hit. (A handful of entries, compared byte for byte, needs no cache crate.)
    pub fn claimed_by(user_agent: &str) -> Option<&'static Crawler> {
        const REMEMBERED: usize = 8;
        type Answers = Vec<(Box<str>, Option<usize>)>;
        thread_local! {
            static RECENT: std::cell::RefCell<(Answers, usize)> =
                const { std::cell::RefCell::new((Vec::new(), 0)) };
        }
        let index = RECENT.with_borrow_mut(|(answers, next)| {
            if let Some((_, index)) = answers.iter().find(|(ua, _)| **ua == *user_agent) {
                return *index;
            }
            let index = CLAIMS.matches(user_agent).iter().next();
            if user_agent.len() <= 512 {
                let answer = (Box::from(user_agent), index);
                if answers.len() < REMEMBERED {
                    answers.push(answer);
                } else {
                    answers[*next] = answer;
                    *next = (*next + 1) % REMEMBERED;
                }
            }
            index
        });
        index.map(|index| &CRAWLERS[index])
    }

    /// The crawler named `name`.
    pub fn named(name: &str) -> Option<&'static Crawler> {
        CRAWLERS.iter().find(|c| c.name == name)
    }

    /// Whether a reverse DNS name is in one of the crawler's domains: the domain itself or a name
    /// under it, label by label (`evilgooglebot.com` is not under `googlebot.com`). Case and a
    /// trailing dot do not matter.
    pub fn owns_hostname(&self, hostname: &str) -> bool {
        let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
        self.dns_domains.iter().any(|domain| {
            hostname == *domain
                || hostname
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// The IP ranges crawlers publish, by crawler name. A crawler's address in its ranges is verified
/// without a DNS lookup; for crawlers without DNS domains, the ranges are the only way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrawlerRanges(BTreeMap<&'static str, Vec<IpNet>>);

/// Why a ranges file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangesError {
    #[error("no crawler is named `{0}` (known: {1})")]
    UnknownCrawler(String, String),
    #[error("the {crawler} ranges are not valid JSON: {message}")]
    Json { crawler: String, message: String },
    #[error("the {crawler} ranges hold `{entry}`, which is not a CIDR network")]
    Entry { crawler: String, entry: String },
    #[error("the {0} ranges hold no network")]
    Empty(String),
}

impl CrawlerRanges {
    /// Adds the ranges of the crawler `name` from `text`: either the JSON its operator publishes
    /// (`{"prefixes": [{"ipv4Prefix": "66.249.64.0/27"}, {"ipv6Prefix": "…"}]}`, the format of
    /// Google's, Microsoft's, OpenAI's, Perplexity's and DuckDuckGo's files), or one CIDR (or bare
    /// address) per line, with `#` comments.
    pub fn add(&mut self, name: &str, text: &str) -> Result<(), RangesError> {
        let crawler = Crawler::named(name).ok_or_else(|| {
            let known: Vec<_> = CRAWLERS.iter().map(|c| c.name).collect();
            RangesError::UnknownCrawler(name.to_owned(), known.join(", "))
        })?;
        let entries: Vec<String> = if text.trim_start().starts_with('{') {
            #[derive(serde::Deserialize)]
            struct Published {
                prefixes: Vec<BTreeMap<String, String>>,
            }
            let published: Published =
                serde_json::from_str(text).map_err(|error| RangesError::Json {
                    crawler: name.to_owned(),
                    message: error.to_string(),
                })?;
            published
                .prefixes
                .into_iter()
                .flat_map(|prefix| {
                    prefix
                        .into_iter()
                        .filter(|(field, _)| field == "ipv4Prefix" || field == "ipv6Prefix")
                        .map(|(_, value)| value)
                })
                .collect()
        } else {
            text.lines()
                .map(|line| line.split('#').next().unwrap_or("").trim().to_owned())
                .filter(|line| !line.is_empty())
                .collect()
        };
        let nets = entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| RangesError::Entry {
                        crawler: name.to_owned(),
                        entry: entry.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nets.is_empty() {
            return Err(RangesError::Empty(name.to_owned()));
        }
        self.0.entry(crawler.name).or_default().extend(nets);
        Ok(())
    }

    /// Whether `ip` is in the published ranges of `crawler`.
    pub fn contains(&self, crawler: &Crawler, ip: IpAddr) -> bool {
        let ip = crate::net::unmap(ip);
        self.0
            .get(crawler.name)
            .is_some_and(|nets| nets.iter().any(|net| net.contains(&ip)))
    }

    /// Whether any ranges of `crawler` were loaded.
    pub fn has(&self, crawler: &Crawler) -> bool {
        self.0.contains_key(crawler.name)
    }

    /// How many networks are loaded, by crawler.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.0.iter().map(|(name, nets)| (*name, nets.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_and_names_are_unique() {
        assert_eq!(CLAIMS.len(), CRAWLERS.len());
        let mut names: Vec<_> = CRAWLERS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CRAWLERS.len());
    }

    #[test]
    fn user_agents_claim_the_crawler_they_name() {
        let table = [
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Some("google"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Some("google"),
            ),
            (
                "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
                Some("google"),
            ),
            (
                "AdsBot-Google (+http://www.google.com/adsbot.html)",
                Some("google"),
            ),
            (
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
                Some("bing"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
                Some("apple"),
            ),
            (
                "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
                Some("yandex"),
            ),
            (
                "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
                Some("baidu"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/600.2.5 (KHTML, like Gecko) Version/8.0.2 Safari/600.2.5 (Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot)",
                Some("amazon"),
            ),
            (
                "Mozilla/5.0 (compatible; Yeti/1.1; +http://naver.me/spd)",
                Some("naver"),
            ),
            (
                "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
                Some("duckduckgo"),
            ),
            (
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
                Some("openai"),
            ),
            (
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                Some("meta"),
            ),
            // Bots that publish no way to verify them, and people.
            (
                "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
                None,
            ),
            ("Twitterbot/1.0", None),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                None,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                None,
            ),
            // The Yandex browser is not a Yandex robot.
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 YaBrowser/24.6.0.0 Safari/537.36",
                None,
            ),
        ];
        // Twice over, and each twice in a row: answers remembered (the second of a pair) and
        // answers whose memory was overwritten (the table is longer than what a thread keeps) are
        // the answers found afresh.
        for _ in 0..2 {
            for (user_agent, expected) in table {
                for _ in 0..2 {
                    assert_eq!(
                        Crawler::claimed_by(user_agent).map(|c| c.name),
                        expected,
                        "{user_agent}"
                    );
                }
            }
        }
    }

    #[test]
    fn hostnames_must_be_in_the_crawlers_domains_label_by_label() {
        let google = Crawler::named("google").unwrap();
        for owned in [
            "crawl-66-249-66-1.googlebot.com",
            "crawl-66-249-66-1.googlebot.com.",
            "CRAWL-66-249-66-1.GoogleBot.com",
            "geo-crawl-35-247-243-240.geo.googlebot.com",
            "rate-limited-proxy-66-249-90-77.google.com",
            "google-proxy-66-249-83-1.google.com",
            "34-1-2-3.gae.googleusercontent.com",
            "googlebot.com",
        ] {
            assert!(google.owns_hostname(owned), "{owned}");
        }
        for foreign in [
            "crawl-66-249-66-1.evilgooglebot.com",
            "googlebot.com.evil.example",
            "34.1.2.3.bc.googleusercontent.com",
            "googleusercontent.com",
            "crawl.googlebot.co",
            "",
        ] {
            assert!(!google.owns_hostname(foreign), "{foreign}");
        }
        assert!(
            !Crawler::named("openai")
                .unwrap()
                .owns_hostname("openai.com")
        );
    }

    #[test]
    fn ranges_are_read_from_published_json_and_from_plain_lists() {
        let mut ranges = CrawlerRanges::default();
        ranges
            .add(
                "google",
                r#"{"creationTime": "2026-11-20T14:46:13.000000",
                    "prefixes": [{"ipv6Prefix": "2001:4860:4801:10::/64"},
                                 {"ipv4Prefix": "66.249.64.0/27"}]}"#,
            )
            .unwrap();
        ranges
            .add(
                "openai",
                "# GPTBot\n20.171.206.0/24\n\n52.230.152.7  # one address\n",
            )
            .unwrap();
        let google = Crawler::named("google").unwrap();
        let openai = Crawler::named("openai").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ranges.contains(google, ip("66.249.64.5")));
        assert!(ranges.contains(google, ip("::ffff:66.249.64.5")));
        assert!(ranges.contains(google, ip("2001:4860:4801:10::1")));
        assert!(!ranges.contains(google, ip("66.249.64.32")));
        assert!(!ranges.contains(google, ip("20.171.206.1")));
        assert!(ranges.contains(openai, ip("20.171.206.1")));
        assert!(ranges.contains(openai, ip("52.230.152.7")));
        assert!(!ranges.contains(openai, ip("52.230.152.8")));
        assert!(ranges.has(openai));
        assert!(!ranges.has(Crawler::named("meta").unwrap()));
        assert_eq!(
            ranges.counts().collect::<Vec<_>>(),
            vec![("google", 2), ("openai", 2)]
        );

        assert!(matches!(
            ranges.add("gogle", "1.2.3.4"),
            Err(RangesError::UnknownCrawler(..))
        ));
        assert!(matches!(
            ranges.add("bing", "{\"prefixes\": 3}"),
            Err(RangesError::Json { .. })
        ));
        assert_eq!(
            ranges.add("bing", "157.55.39.0/24\n157.55.39/24"),
            Err(RangesError::Entry {
                crawler: "bing".into(),
                entry: "157.55.39/24".into()
            })
        );
        assert_eq!(
            ranges.add("bing", "# nothing yet\n"),
            Err(RangesError::Empty("bing".into()))
        );
    }
}
