//! Domain verification against a real dnsmasq: each method, the ways a domain fails, DNS outages,
//! and answers changing between checks.

mod crawlers;
mod helpers;

use std::time::Duration;

use helpers::{EDGE_V4, EDGE_V6, TARGET, TOKEN, TestVerifier, check, hostname, verifier_for};
use kiln_testkit::dns::{DnsRecord, TestDns, TestServfailDns};
use kiln_verify::{
    Answer, LookupFailure, Method, Verification, Verifier, VerifierSettings, VerifyError,
};

const HOST: &str = "shop.example.com";
const CHALLENGE: &str = "_kiln-challenge.shop.example.com";

fn names(names: &[&str]) -> Answer<String> {
    Answer::Found {
        records: names.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn assert_not_verified(verification: &Verification) {
    assert_eq!(
        verification.verified_by,
        None,
        "{}",
        verification.explanation()
    );
    assert!(!verification.verified());
}

#[tokio::test]
async fn verified_by_a_cname_to_the_target() {
    let dns = TestVerifier::start(&[DnsRecord::cname(HOST, TARGET)]);

    let verification = dns.check(HOST).await;

    assert_eq!(verification.verified_by, Some(Method::Cname));
    assert!(verification.verified());
    assert_eq!(verification.findings.cname, names(&[TARGET]));
    assert_eq!(
        verification.explanation(),
        "shop.example.com is verified: its CNAME points at edge.kiln.example."
    );
}

#[tokio::test]
async fn verified_by_a_cname_chain_that_reaches_the_target() {
    let dns = TestVerifier::start(&[
        DnsRecord::cname(HOST, "www.cdn.example"),
        DnsRecord::cname("www.cdn.example", "shop.cdn-edge.example"),
        DnsRecord::cname("shop.cdn-edge.example", TARGET),
    ]);

    let verification = dns.check(HOST).await;

    assert_eq!(verification.verified_by, Some(Method::Cname));
    assert_eq!(
        verification.findings.cname,
        names(&["www.cdn.example", "shop.cdn-edge.example", TARGET])
    );
}

#[tokio::test]
async fn a_cname_verifies_even_when_the_target_has_no_addresses() {
    // The operator's target may not resolve from where Kiln checks (split DNS, not yet set up):
    // the CNAME itself is the proof, so it is read hop by hop, not from an address answer.
    let server = TestDns::start(&[DnsRecord::cname(HOST, TARGET)]);
    let verifier = verifier_for(server.addr(), Duration::from_secs(3));

    let verification = check(&verifier, HOST).await;

    assert_eq!(verification.verified_by, Some(Method::Cname));
    assert_eq!(verification.findings.target_addresses, Answer::NoSuchName);
}

#[tokio::test]
async fn verified_by_the_token_among_other_txt_records() {
    let dns = TestVerifier::start(&[
        // Quotes, commas, `#` and backslashes reach the verifier as written.
        DnsRecord::txt(CHALLENGE, r#"note: "a, b" # c \ d"#),
        DnsRecord::txt(CHALLENGE, TOKEN),
        DnsRecord::txt(CHALLENGE, "kiln-verify-old"),
        // A TXT record on the host itself is not the challenge.
        DnsRecord::txt(HOST, "v=spf1 -all"),
        DnsRecord::a(HOST, "198.51.100.7"),
    ]);

    let verification = dns.check(HOST).await;

    assert_eq!(verification.verified_by, Some(Method::Txt));
    let mut values = verification.findings.challenge_txt.records().to_vec();
    values.sort();
    assert_eq!(
        values,
        [TOKEN, "kiln-verify-old", r#"note: "a, b" # c \ d"#]
    );
    assert_eq!(
        verification.explanation(),
        "shop.example.com is verified: _kiln-challenge.shop.example.com has a TXT record with \
         the domain's token."
    );
}

#[tokio::test]
async fn verified_by_a_token_split_into_several_strings() {
    let dns = TestVerifier::start(&[
        DnsRecord::split_txt(CHALLENGE, &["kiln-", "verify-", "3f9a1c"]),
        DnsRecord::split_txt(CHALLENGE, &["unrelated", "value"]),
    ]);

    let verification = dns.check(HOST).await;

    assert_eq!(verification.verified_by, Some(Method::Txt));
    let mut values = verification.findings.challenge_txt.records().to_vec();
    values.sort();
    assert_eq!(values, [TOKEN, "unrelatedvalue"]);
}

#[tokio::test]
async fn verified_by_the_addresses_of_an_apex_domain() {
    let dns = TestVerifier::start(&[
        DnsRecord::a("example.com", EDGE_V4),
        DnsRecord::a("example.com", EDGE_V6),
        // An apex with only some of the edge's addresses is pointed at Kiln all the same.
        DnsRecord::a("example.org", EDGE_V6),
    ]);

    let both = dns.check("example.com").await;
    let one = dns.check("example.org").await;

    assert_eq!(both.verified_by, Some(Method::Address));
    assert_eq!(both.findings.cname, Answer::NoRecords);
    let mut addresses = both.findings.host_addresses.records().to_vec();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            EDGE_V4.parse().unwrap(),
            EDGE_V6.parse::<std::net::IpAddr>().unwrap()
        ]
    );
    assert_eq!(
        both.explanation(),
        "example.com is verified: its addresses 192.0.2.10 and 2001:db8::10 are all addresses of \
         edge.kiln.example."
    );
    assert_eq!(one.verified_by, Some(Method::Address));
}

#[tokio::test]
async fn an_apex_with_one_foreign_address_is_not_verified() {
    let dns = TestVerifier::start(&[
        DnsRecord::a("example.com", EDGE_V4),
        DnsRecord::a("example.com", "198.51.100.7"),
    ]);

    let verification = dns.check("example.com").await;

    assert_not_verified(&verification);
    assert_eq!(
        verification.explanation(),
        "example.com has no CNAME record, _kiln-challenge.example.com has no TXT record and \
         example.com's address 198.51.100.7 is not an address of edge.kiln.example; add a CNAME \
         record pointing at edge.kiln.example (an ALIAS record at a zone apex) or a TXT record at \
         _kiln-challenge.example.com with the value kiln-verify-3f9a1c."
    );
}

#[tokio::test]
async fn a_cname_elsewhere_is_not_verified_and_is_named() {
    let dns = TestVerifier::start(&[
        DnsRecord::cname(HOST, "shops.example.net"),
        DnsRecord::a("shops.example.net", "198.51.100.7"),
    ]);

    let verification = dns.check(HOST).await;

    assert_not_verified(&verification);
    assert_eq!(verification.findings.cname, names(&["shops.example.net"]));
    assert_eq!(
        verification.explanation(),
        "shop.example.com has a CNAME to shops.example.net instead of edge.kiln.example and \
         _kiln-challenge.shop.example.com has no TXT record; add a CNAME record pointing at \
         edge.kiln.example (an ALIAS record at a zone apex) or a TXT record at \
         _kiln-challenge.shop.example.com with the value kiln-verify-3f9a1c."
    );
}

#[tokio::test]
async fn a_chain_that_never_reaches_the_target_is_not_verified() {
    let dns = TestVerifier::start(&[
        DnsRecord::cname(HOST, "www.cdn.example"),
        DnsRecord::cname("www.cdn.example", "edge.other-cdn.example"),
    ]);

    let verification = dns.check(HOST).await;

    assert_not_verified(&verification);
    assert_eq!(
        verification.findings.cname,
        names(&["www.cdn.example", "edge.other-cdn.example"])
    );
    assert!(
        verification
            .explanation()
            .starts_with("shop.example.com has a CNAME chain (www.cdn.example → edge.other-cdn.example) that does not reach edge.kiln.example"),
        "{}",
        verification.explanation()
    );
}

#[tokio::test]
async fn a_wrong_token_is_not_verified_and_is_named() {
    let dns = TestVerifier::start(&[DnsRecord::txt(CHALLENGE, "kiln-verify-0000")]);

    let verification = dns.check(HOST).await;

    assert_not_verified(&verification);
    assert_eq!(
        verification.findings.challenge_txt,
        names(&["kiln-verify-0000"])
    );
    let explanation = verification.explanation();
    assert!(
        explanation.contains(
            "_kiln-challenge.shop.example.com has the TXT record \"kiln-verify-0000\" instead of \
             kiln-verify-3f9a1c"
        ),
        "{explanation}"
    );
}

#[tokio::test]
async fn a_host_without_records_is_not_verified() {
    let dns = TestVerifier::start(&[]);

    let verification = dns.check(HOST).await;

    assert_not_verified(&verification);
    assert_eq!(verification.findings.cname, Answer::NoSuchName);
    assert_eq!(verification.findings.challenge_txt, Answer::NoSuchName);
    assert_eq!(verification.findings.host_addresses, Answer::NoSuchName);
    assert_eq!(
        verification.explanation(),
        "shop.example.com does not exist in DNS and _kiln-challenge.shop.example.com has no TXT \
         record; add a CNAME record pointing at edge.kiln.example (an ALIAS record at a zone apex) \
         or a TXT record at _kiln-challenge.shop.example.com with the value kiln-verify-3f9a1c."
    );
}

#[tokio::test]
async fn a_host_with_other_records_only_has_no_cname() {
    let dns = TestVerifier::start(&[DnsRecord::txt(HOST, "v=spf1 -all")]);

    let verification = dns.check(HOST).await;

    assert_not_verified(&verification);
    assert_eq!(verification.findings.cname, Answer::NoRecords);
    assert_eq!(verification.findings.host_addresses, Answer::NoRecords);
    assert!(
        verification
            .explanation()
            .starts_with("shop.example.com has no CNAME record and _kiln-challenge.shop.example.com has no TXT record; "),
        "{}",
        verification.explanation()
    );
}

#[tokio::test]
async fn a_dns_server_that_is_down_fails_the_lookup_not_the_record() {
    let mut dns = TestVerifier::start(&[DnsRecord::cname(HOST, TARGET)]);
    let addr = dns.server.addr();
    assert!(
        dns.check(HOST).await.verified(),
        "verified while the server is up"
    );
    dns.server.stop();
    let verifier = verifier_for(addr, Duration::from_millis(500));

    let verification = check(&verifier, HOST).await;

    assert_not_verified(&verification);
    let failed = |answer: &Answer<String>| matches!(answer, Answer::Failed { .. });
    assert!(
        failed(&verification.findings.cname),
        "{:?}",
        verification.findings
    );
    assert!(
        failed(&verification.findings.challenge_txt),
        "{:?}",
        verification.findings
    );
    assert!(matches!(
        verification.findings.host_addresses,
        Answer::Failed { .. }
    ));
    let explanation = verification.explanation();
    assert!(
        explanation.starts_with("Looking up the DNS records of shop.example.com failed ("),
        "{explanation}"
    );
    assert!(
        explanation.ends_with("try again in a few minutes."),
        "{explanation}"
    );
    assert!(!explanation.contains("no CNAME"), "{explanation}");
}

#[tokio::test]
async fn a_servfail_fails_the_lookup_not_the_record() {
    let server = TestServfailDns::start();
    let verifier = verifier_for(server.addr(), Duration::from_secs(3));

    let verification = check(&verifier, HOST).await;

    assert_not_verified(&verification);
    let servfail = LookupFailure::ServerError {
        code: "SERVFAIL".to_owned(),
    };
    assert_eq!(verification.findings.cname.failure(), Some(&servfail));
    assert_eq!(
        verification.findings.challenge_txt.failure(),
        Some(&servfail)
    );
    assert_eq!(
        verification.explanation(),
        "Looking up the DNS records of shop.example.com failed (the DNS server answered \
         SERVFAIL), so Kiln could not check the domain; try again in a few minutes."
    );
}

#[tokio::test]
async fn a_record_added_after_a_failed_check_counts_at_once() {
    let mut dns = TestVerifier::start(&[]);
    assert_not_verified(&dns.check(HOST).await);

    dns.set_records(&[DnsRecord::cname(HOST, TARGET)]);

    assert_eq!(dns.check(HOST).await.verified_by, Some(Method::Cname));
}

#[tokio::test]
async fn changed_records_count_at_once_despite_their_ttl() {
    // dnsmasq answers with a 300 s TTL here, so a caching resolver would keep the first answers.
    let mut dns = TestVerifier::start(&[
        DnsRecord::cname(HOST, "shops.example.net"),
        DnsRecord::txt("_kiln-challenge.other.example.com", "kiln-verify-0000"),
    ]);
    assert_not_verified(&dns.check(HOST).await);
    assert_not_verified(&dns.check("other.example.com").await);

    dns.set_records(&[
        DnsRecord::cname(HOST, TARGET),
        DnsRecord::txt("_kiln-challenge.other.example.com", TOKEN),
    ]);

    assert_eq!(dns.check(HOST).await.verified_by, Some(Method::Cname));
    assert_eq!(
        dns.check("other.example.com").await.verified_by,
        Some(Method::Txt)
    );

    // And back: a removed record stops counting at once too.
    dns.set_records(&[]);
    assert_not_verified(&dns.check(HOST).await);
}

#[tokio::test]
async fn names_compare_without_case_or_trailing_dot() {
    let server = TestDns::start(&[
        DnsRecord::cname("Shop.Example.COM.", "Edge.KILN.Example."),
        DnsRecord::txt("_KILN-challenge.Other.Example.com.", TOKEN),
        DnsRecord::a("EDGE.kiln.example.", EDGE_V4),
        DnsRecord::a("Example.COM.", EDGE_V4),
    ]);
    let verifier = verifier_for(server.addr(), Duration::from_secs(3));
    let target = hostname("Edge.Kiln.Example.");

    let by_cname = verifier
        .check(&hostname("SHOP.example.com."), &target, TOKEN)
        .await;
    let by_txt = verifier
        .check(&hostname("other.EXAMPLE.com"), &target, TOKEN)
        .await;
    let by_address = verifier
        .check(&hostname("example.com."), &target, TOKEN)
        .await;

    assert_eq!(by_cname.verified_by, Some(Method::Cname));
    assert_eq!(by_cname.findings.cname, names(&[TARGET]));
    assert_eq!(by_txt.verified_by, Some(Method::Txt));
    assert_eq!(by_address.verified_by, Some(Method::Address));
}

#[tokio::test]
async fn clones_share_the_settings() {
    let dns = TestVerifier::start(&[DnsRecord::cname(HOST, TARGET)]);
    let clone = dns.verifier.clone();

    let (first, second) = tokio::join!(check(&dns.verifier, HOST), check(&clone, HOST));

    assert_eq!(first, second);
    assert!(first.verified());
}

#[test]
fn a_zero_timeout_is_refused() {
    let settings = VerifierSettings {
        nameserver: Some("127.0.0.1:53".parse().unwrap()),
        timeout: Duration::ZERO,
    };
    assert!(matches!(
        Verifier::new(&settings),
        Err(VerifyError::ZeroTimeout)
    ));
    assert_eq!(VerifierSettings::default().timeout, Duration::from_secs(3));
}
