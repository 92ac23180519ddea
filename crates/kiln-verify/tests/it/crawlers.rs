//! Crawler verification against a real dnsmasq holding PTR and A records: genuine crawlers, every
//! kind of impostor, published ranges, DNS outages, and the verdict cache.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use kiln_core::{Crawler, CrawlerRanges};
use kiln_testkit::dns::{DnsRecord, TestDns, TestServfailDns};
use kiln_verify::{CrawlerVerifier, Verdict, VerifierSettings};

const BUDGET: Duration = Duration::from_secs(5);

fn crawler(name: &str) -> &'static Crawler {
    Crawler::named(name).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn verifier(dns: std::net::SocketAddr, ranges: CrawlerRanges) -> CrawlerVerifier {
    CrawlerVerifier::new(
        &VerifierSettings {
            nameserver: Some(dns),
            timeout: Duration::from_millis(500),
        },
        ranges,
    )
    .unwrap()
}

/// Google's, Microsoft's and Apple's crawlers as DNS shows them, and the impostors' addresses.
fn records() -> Vec<DnsRecord> {
    vec![
        // Genuine: the PTR name is Google's and resolves back (dnsmasq's `host-record` serves both).
        DnsRecord::a("crawl-66-249-66-1.googlebot.com", "66.249.66.1"),
        DnsRecord::a("rate-limited-proxy-66-249-90-77.google.com", "66.249.90.77"),
        DnsRecord::a("msnbot-157-55-39-1.search.msn.com", "157.55.39.1"),
        DnsRecord::a(
            "17-58-101-1.applebot.apple.com",
            "2a01:b740:a42:1::1", // an IPv6 crawler
        ),
        // Impostor 1: its reverse zone says googlebot.com, but that name is not its address.
        DnsRecord::ptr("185.199.108.5", "crawl-66-249-66-9.googlebot.com"),
        DnsRecord::a("crawl-66-249-66-9.googlebot.com", "66.249.66.9"),
        // Impostor 2: a reverse name that only looks like Google's.
        DnsRecord::a("crawl-1.googlebot.com.evil.example", "185.199.108.6"),
        // Impostor 3: a Google Cloud customer's machine.
        DnsRecord::a("7.108.199.185.bc.googleusercontent.com", "185.199.108.7"),
        // Impostor 4 (185.199.108.8) has no reverse name at all.
        // Impostor 5: a PTR into Google's domain for a name with no address.
        DnsRecord::ptr("185.199.108.10", "crawl-ghost.googlebot.com"),
    ]
}

#[tokio::test]
async fn genuine_crawlers_are_verified_by_forward_confirmed_reverse_dns() {
    let dns = TestDns::start(&records());
    let verifier = verifier(dns.addr(), CrawlerRanges::default());
    let cases = [
        ("google", "66.249.66.1", "crawl-66-249-66-1.googlebot.com"),
        (
            "google",
            "::ffff:66.249.66.1",
            "crawl-66-249-66-1.googlebot.com",
        ),
        (
            "google",
            "66.249.90.77",
            "rate-limited-proxy-66-249-90-77.google.com",
        ),
        ("bing", "157.55.39.1", "msnbot-157-55-39-1.search.msn.com"),
        (
            "apple",
            "2a01:b740:a42:1::1",
            "17-58-101-1.applebot.apple.com",
        ),
    ];
    for (name, address, by) in cases {
        assert_eq!(
            verifier.verify(crawler(name), ip(address), BUDGET).await,
            Verdict::Verified { by: by.to_owned() },
            "{name} at {address}"
        );
    }
}

#[tokio::test]
async fn impostors_are_told_apart_and_say_why() {
    let dns = TestDns::start(&records());
    let verifier = verifier(dns.addr(), CrawlerRanges::default());
    let google = crawler("google");
    let cases = [
        ("185.199.108.5", "does not resolve to 185.199.108.5"),
        ("185.199.108.6", "is not in googlebot.com or google.com"),
        ("185.199.108.7", "bc.googleusercontent.com"),
        ("185.199.108.8", "has no reverse DNS name"),
        (
            "185.199.108.10",
            "crawl-ghost.googlebot.com does not resolve",
        ),
        // A genuine crawler of one operator claiming to be another's.
        ("157.55.39.1", "search.msn.com"),
    ];
    for (address, why) in cases {
        match verifier.verify(google, ip(address), BUDGET).await {
            Verdict::Impostor { reason } => assert!(reason.contains(why), "{address}: {reason}"),
            other => panic!("{address}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn published_ranges_verify_without_dns_and_are_the_only_way_for_some_crawlers() {
    // No DNS server answers here: anything that needs one would be Unknown.
    let dead = TestServfailDns::start();
    let mut ranges = CrawlerRanges::default();
    ranges
        .add(
            "google",
            r#"{"prefixes": [{"ipv4Prefix": "66.249.64.0/27"}]}"#,
        )
        .unwrap();
    ranges.add("openai", "20.171.206.0/24").unwrap();
    let verifier = verifier(dead.addr(), ranges);

    assert!(matches!(
        verifier.verify(crawler("google"), ip("66.249.64.7"), BUDGET).await,
        Verdict::Verified { by } if by == "google's published ranges"
    ));
    assert!(matches!(
        verifier
            .verify(crawler("openai"), ip("20.171.206.44"), BUDGET)
            .await,
        Verdict::Verified { .. }
    ));
    assert!(matches!(
        verifier.verify(crawler("openai"), ip("185.199.108.5"), BUDGET).await,
        Verdict::Impostor { reason } if reason.contains("not in openai's published ranges")
    ));
    // Ranges-only crawlers without ranges cannot be checked at all.
    assert!(matches!(
        verifier.verify(crawler("perplexity"), ip("185.199.108.5"), BUDGET).await,
        Verdict::Unverifiable { reason } if reason.contains("none were loaded")
    ));
    // Nor can an address of the operator's own network (nothing is asked).
    for private in ["127.0.0.1", "10.1.2.3", "::1", "fd00::7"] {
        assert!(matches!(
            verifier.verify(crawler("google"), ip(private), BUDGET).await,
            Verdict::Unverifiable { reason } if reason.contains("not a public address")
        ));
    }
    // Outside Google's ranges, DNS is asked, and it fails.
    assert!(matches!(
        verifier.verify(crawler("google"), ip("66.249.66.1"), BUDGET).await,
        Verdict::Unknown { reason } if reason.contains("SERVFAIL")
    ));
}

#[tokio::test]
async fn verdicts_are_kept_and_a_dns_outage_is_unknown_not_impostor() {
    let mut dns = TestDns::start(&records());
    let verifier = verifier(dns.addr(), CrawlerRanges::default());
    let google = crawler("google");
    assert!(matches!(
        verifier.verify(google, ip("66.249.66.1"), BUDGET).await,
        Verdict::Verified { .. }
    ));
    assert!(matches!(
        verifier.verify(google, ip("185.199.108.8"), BUDGET).await,
        Verdict::Impostor { .. }
    ));

    // With DNS gone, what was found stays found...
    dns.stop();
    assert!(matches!(
        verifier.verify(google, ip("66.249.66.1"), BUDGET).await,
        Verdict::Verified { .. }
    ));
    assert!(matches!(
        verifier.verify(google, ip("185.199.108.8"), BUDGET).await,
        Verdict::Impostor { .. }
    ));
    // ...and a new address cannot be told either way.
    let started = Instant::now();
    assert!(matches!(
        verifier.verify(google, ip("66.249.90.77"), BUDGET).await,
        Verdict::Unknown { .. }
    ));
    assert!(started.elapsed() < BUDGET, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_lookup_longer_than_the_budget_answers_unknown_at_once_and_its_verdict_is_kept() {
    let dns = TestDns::start(&records());
    let verifier = verifier(dns.addr(), CrawlerRanges::default());
    let google = crawler("google");
    // A budget nothing can meet: the lookup goes on without the request.
    assert!(matches!(
        verifier.verify(google, ip("66.249.66.1"), Duration::ZERO).await,
        Verdict::Unknown { reason } if reason.contains("longer than")
    ));
    let deadline = Instant::now() + BUDGET;
    loop {
        match verifier
            .verify(google, ip("66.249.66.1"), Duration::ZERO)
            .await
        {
            Verdict::Verified { .. } => break,
            Verdict::Unknown { .. } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("the background lookup did not end in a kept verdict: {other:?}"),
        }
    }
}
