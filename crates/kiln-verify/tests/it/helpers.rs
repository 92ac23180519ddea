//! A real dnsmasq with Kiln's edge records, and a verifier pointed at it.

use std::net::SocketAddr;
use std::time::Duration;

use kiln_core::Hostname;
use kiln_testkit::dns::{DnsRecord, TestDns};
use kiln_verify::{Verification, Verifier, VerifierSettings};

/// The operator's `KILN_CNAME_TARGET`.
pub const TARGET: &str = "edge.kiln.example";
pub const EDGE_V4: &str = "192.0.2.10";
pub const EDGE_V6: &str = "2001:db8::10";
pub const TOKEN: &str = "kiln-verify-3f9a1c";

/// A verifier asking a DNS server that knows Kiln's edge and the records a test adds.
pub struct TestVerifier {
    pub server: TestDns,
    pub verifier: Verifier,
}

impl TestVerifier {
    /// Starts dnsmasq with the edge's addresses plus `records`, and a verifier asking it.
    pub fn start(records: &[DnsRecord]) -> TestVerifier {
        let server = TestDns::start(&with_edge(records));
        let verifier = verifier_for(server.addr(), Duration::from_secs(3));
        TestVerifier { server, verifier }
    }

    /// Checks `host` against [`TARGET`] and [`TOKEN`].
    pub async fn check(&self, host: &str) -> Verification {
        check(&self.verifier, host).await
    }

    /// Replaces the test's records (the edge's stay).
    pub fn set_records(&mut self, records: &[DnsRecord]) {
        self.server.set_records(&with_edge(records));
    }
}

pub fn verifier_for(nameserver: SocketAddr, timeout: Duration) -> Verifier {
    Verifier::new(&VerifierSettings {
        nameserver: Some(nameserver),
        timeout,
    })
    .expect("a verifier")
}

pub async fn check(verifier: &Verifier, host: &str) -> Verification {
    verifier
        .check(&hostname(host), &hostname(TARGET), TOKEN)
        .await
}

pub fn hostname(name: &str) -> Hostname {
    Hostname::parse(name).expect("a valid hostname")
}

pub fn edge_records() -> Vec<DnsRecord> {
    vec![DnsRecord::a(TARGET, EDGE_V4), DnsRecord::a(TARGET, EDGE_V6)]
}

fn with_edge(records: &[DnsRecord]) -> Vec<DnsRecord> {
    let mut all = edge_records();
    all.extend_from_slice(records);
    all
}
