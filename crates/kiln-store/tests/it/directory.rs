//! The published directory, read a page at a time.

use crate::helpers::TestStore;
use fred::prelude::*;
use kiln_core::{DomainConfig, DomainSettings, Hostname};

fn domain(n: usize) -> DomainConfig {
    DomainConfig {
        id: format!("d{n}"),
        tenant_id: format!("t{}", n % 7),
        host: Hostname::parse(&format!("shop-{n}.example.com")).unwrap(),
        origin: format!("https://origin-{n}.example.com"),
        verified: !n.is_multiple_of(3),
        settings: DomainSettings::default(),
        service_only: n.is_multiple_of(5),
    }
}

#[tokio::test]
async fn a_directory_of_many_pages_is_read_whole_with_its_mark_and_without_bad_records() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    let published: Vec<DomainConfig> = (0..3_000).map(domain).collect();
    directory.publish(&published).await.unwrap();
    // A record nobody can read, as a bug or a hand edit might leave: skipped, not fatal.
    let _: () = t
        .raw
        .hset(
            format!("{}domains", t.prefix),
            ("broken.example.com", "{not json"),
        )
        .await
        .unwrap();

    let read = directory.read().await.unwrap();
    assert!(read.complete, "the mark of a full publish is read too");
    assert_eq!(read.domains.len(), published.len());
    for config in &published {
        assert_eq!(read.domains.get(&config.host), Some(config));
    }

    // Without the mark (Redis lost it), the domains are still read, and said to be incomplete.
    let _: u32 = t
        .raw
        .hdel(format!("{}domains", t.prefix), "#complete")
        .await
        .unwrap();
    let read = directory.read().await.unwrap();
    assert!(!read.complete);
    assert_eq!(read.domains.len(), published.len());
}
