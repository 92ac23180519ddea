//! The published directory: read a page at a time, its version and the changes since one, and
//! full publishes in batches that replace it whole.

use crate::helpers::{TestStore, scan_keys};
use fred::prelude::*;
use kiln_core::{DomainConfig, DomainSettings, Hostname};
use std::collections::BTreeSet;

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

/// The directory's version key, as the store lays it out: in the directory's hash slot.
fn version_key(prefix: &str) -> String {
    format!("{{{prefix}domains}}:version")
}

fn hosts_of(domains: &[DomainConfig]) -> BTreeSet<String> {
    domains.iter().map(|d| d.host.to_string()).collect()
}

fn hosts_read(read: &kiln_store::PublishedDirectory) -> BTreeSet<String> {
    read.domains.keys().map(|h| h.to_string()).collect()
}

#[tokio::test]
async fn a_reader_asks_what_changed_since_its_version_and_hears_nothing_when_nothing_did() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    let published: Vec<DomainConfig> = (0..10).map(domain).collect();
    directory.publish(&published).await.unwrap();
    let read = directory.read().await.unwrap();
    assert!(read.complete);
    let version = read
        .version
        .clone()
        .expect("a published directory has a version");
    assert_eq!(directory.version().await.unwrap().as_ref(), Some(&version));

    // Nothing changed: the same version back, and no domain.
    let nothing = directory.changes_since(Some(&version), None).await.unwrap();
    assert_eq!(nothing.version.as_ref(), Some(&version));
    assert!(nothing.domains.is_empty(), "{nothing:?}");

    // One domain changed twice, one removed, one added: each once, as the directory holds it now.
    let mut changed = published[1].clone();
    changed.verified = !changed.verified;
    directory.put(&changed).await.unwrap();
    changed.origin = "https://elsewhere.example.com".into();
    directory.put(&changed).await.unwrap();
    assert!(directory.remove(&published[2].host).await.unwrap());
    let added = domain(10);
    directory.put(&added).await.unwrap();
    let changes = directory.changes_since(Some(&version), None).await.unwrap();
    let now = changes.version.clone().expect("four changes are told");
    assert_ne!(now, version);
    assert_eq!(
        changes.domains,
        vec![
            (changed.host.clone(), Some(changed.clone())),
            (published[2].host.clone(), None),
            (added.host.clone(), Some(added.clone())),
        ]
    );
    assert_eq!(directory.version().await.unwrap(), Some(now.clone()));
    let nothing = directory.changes_since(Some(&now), None).await.unwrap();
    assert_eq!(nothing.version, Some(now.clone()));
    assert!(nothing.domains.is_empty());

    // A domain asked about is answered whatever changed, and without a version nothing is told.
    let asked = directory
        .changes_since(Some(&now), Some(&published[3].host))
        .await
        .unwrap();
    assert_eq!(asked.version, Some(now.clone()));
    assert_eq!(
        asked.domains,
        vec![(published[3].host.clone(), Some(published[3].clone()))]
    );
    let unknown = directory
        .changes_since(None, Some(&published[2].host))
        .await
        .unwrap();
    assert_eq!(unknown.version, None);
    assert_eq!(unknown.domains, vec![(published[2].host.clone(), None)]);

    // Further behind than the log keeps: the changes cannot be told.
    for _ in 0..=kiln_store::CHANGE_LOG {
        directory.put(&added).await.unwrap();
    }
    let behind = directory.changes_since(Some(&now), None).await.unwrap();
    assert_eq!(behind.version, None, "{behind:?}");
    // The log stays bounded.
    let fields: u64 = t.raw.hlen(version_key(&t.prefix)).await.unwrap();
    assert!(fields <= kiln_store::CHANGE_LOG + 2, "{fields} fields");

    // A full publish is another epoch: nothing before it can be caught up from.
    let latest = directory.version().await.unwrap().unwrap();
    directory.publish(&published).await.unwrap();
    let after = directory.changes_since(Some(&latest), None).await.unwrap();
    assert_eq!(after.version, None);
    assert!(after.domains.is_empty());
}

#[tokio::test]
async fn a_version_lost_with_redis_is_never_taken_for_the_one_a_reader_holds() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    let published: Vec<DomainConfig> = (0..5).map(domain).collect();
    directory.publish(&published).await.unwrap();
    let held = directory.read().await.unwrap().version.unwrap();

    // Redis loses everything: no version, no directory.
    let _: () = t.raw.flushall(false).await.unwrap();
    assert_eq!(directory.version().await.unwrap(), None);
    let lost = directory.changes_since(Some(&held), None).await.unwrap();
    assert_eq!(lost.version, None);
    let read = directory.read().await.unwrap();
    assert!(!read.complete);
    assert_eq!(read.version, None);
    assert!(read.domains.is_empty());

    // The first change after it starts a version of its own, unrelated to the one held (even
    // though it, too, is the first change since an epoch began).
    directory.put(&published[0]).await.unwrap();
    let again = directory.version().await.unwrap().unwrap();
    assert_ne!(again, held);
    assert_eq!(
        directory
            .changes_since(Some(&held), None)
            .await
            .unwrap()
            .version,
        None
    );
    let read = directory.read().await.unwrap();
    assert!(
        !read.complete,
        "one domain published since is not the whole directory"
    );
    assert_eq!(read.version, Some(again));
}

#[tokio::test]
async fn a_full_publish_of_many_batches_replaces_the_directory_whole_and_leaves_nothing_behind() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    // What Redis holds before: some domains that stay and some that are no longer registered.
    let before: Vec<DomainConfig> = (0..50).map(domain).collect();
    directory.publish(&before).await.unwrap();
    let stale = domain(100_000);
    directory.put(&stale).await.unwrap();

    // More than two batches.
    let count = 2 * kiln_store::PUBLISH_BATCH + 500;
    let published: Vec<DomainConfig> = (25..25 + count).map(domain).collect();
    let report = directory.publish(&published).await.unwrap();
    assert_eq!(report.batches, 3);
    assert!(report.largest_batch_bytes > 0);
    let mut dropped: Vec<String> = (0..25).map(|n| domain(n).host.to_string()).collect();
    dropped.push(stale.host.to_string());
    dropped.sort();
    assert_eq!(
        report
            .dropped
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>(),
        dropped
    );

    let read = directory.read().await.unwrap();
    assert!(read.complete);
    assert_eq!(hosts_read(&read), hosts_of(&published));
    for config in &published {
        assert_eq!(read.domains.get(&config.host), Some(config));
    }
    // The publish's own hash was put in place, not left beside it, and the directory lives on.
    let keys: Vec<String> = scan_keys(&t.raw, &format!("*{}*", t.prefix)).await;
    assert_eq!(
        keys,
        vec![format!("{}domains", t.prefix), version_key(&t.prefix)],
        "{keys:?}"
    );
    let ttl: i64 = t.raw.pttl(format!("{}domains", t.prefix)).await.unwrap();
    assert_eq!(ttl, -1);

    // An empty publish makes an empty directory, complete.
    let report = directory.publish(&[]).await.unwrap();
    assert_eq!(report.batches, 0);
    assert_eq!(report.dropped.len(), count);
    let read = directory.read().await.unwrap();
    assert!(read.complete);
    assert!(read.domains.is_empty());
}

#[tokio::test]
async fn a_publish_that_lost_part_of_its_batches_puts_nothing_in_place() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    let before: Vec<DomainConfig> = (0..10).map(domain).collect();
    directory.publish(&before).await.unwrap();
    let held = directory.version().await.unwrap();

    // A Redis that restarts during a publish loses what it wrote so far: here, every hash of a
    // publish is deleted as soon as it appears, and one of its batches is lost.
    let published: Vec<DomainConfig> = (0..2 * kiln_store::PUBLISH_BATCH).map(domain).collect();
    let raw = t.raw.clone();
    let pattern = format!("{{{}domains}}:publishing:*", t.prefix);
    let (publish, lost) = tokio::join!(directory.publish(&published), async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(key) = scan_keys(&raw, &pattern).await.pop() {
                let _: i64 = raw.del(key).await.unwrap();
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    });
    assert!(lost, "no publish hash was seen");
    assert!(
        matches!(publish, Err(kiln_store::StoreError::PublishInterrupted)),
        "{publish:?}"
    );
    // The directory is as it was.
    let read = directory.read().await.unwrap();
    assert!(read.complete);
    assert_eq!(hosts_read(&read), hosts_of(&before));
    assert_eq!(directory.version().await.unwrap(), held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_during_full_publishes_is_either_one_whole_directory_or_not_complete() {
    let t = TestStore::start().await;
    let directory = t.store.directory();
    // Two directories, each of several batches, sharing a third of their domains.
    let a: Vec<DomainConfig> = (0..3_000).map(domain).collect();
    let b: Vec<DomainConfig> = (2_000..5_000).map(domain).collect();
    let (hosts_a, hosts_b) = (hosts_of(&a), hosts_of(&b));
    directory.publish(&a).await.unwrap();

    let publishing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = {
        let directory = t.store.directory();
        let publishing = std::sync::Arc::clone(&publishing);
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for round in 0..12 {
                let next = if round % 2 == 0 { &b } else { &a };
                directory.publish(next).await.unwrap();
                // Time for reads that begin and end between two publishes.
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            }
            publishing.store(false, std::sync::atomic::Ordering::Release);
        })
    };
    let (mut whole, mut partial) = (0, 0);
    while publishing.load(std::sync::atomic::Ordering::Acquire) {
        let read = directory.read().await.unwrap();
        let hosts = hosts_read(&read);
        if read.complete {
            whole += 1;
            assert!(
                hosts == hosts_a || hosts == hosts_b,
                "a read taken for complete holds {} domains, neither directory",
                hosts.len()
            );
            assert!(read.version.is_some());
        } else {
            partial += 1;
            assert_eq!(read.version, None);
        }
    }
    publisher.await.unwrap();
    eprintln!("reads during the publishes: {whole} whole, {partial} across a publish");
    assert!(whole > 0);
    assert!(partial > 0, "no read overlapped a publish's switch");
}

#[tokio::test]
async fn versions_changes_and_batched_full_publishes_work_on_a_cluster() {
    // Every key of the directory is in its hash slot: a script naming keys of two slots, or a
    // RENAME across slots, fails on a cluster with CROSSSLOT.
    let t = crate::helpers::TestClusterStore::start().await;
    let directory = t.store.directory();
    let before: Vec<DomainConfig> = (0..10).map(domain).collect();
    directory.publish(&before).await.unwrap();
    let version = directory.version().await.unwrap().unwrap();
    directory.put(&domain(10)).await.unwrap();
    assert!(directory.remove(&before[0].host).await.unwrap());
    let changes = directory.changes_since(Some(&version), None).await.unwrap();
    assert!(changes.version.is_some());
    assert_eq!(changes.domains.len(), 2);

    let published: Vec<DomainConfig> = (5..5 + kiln_store::PUBLISH_BATCH + 5).map(domain).collect();
    let report = directory.publish(&published).await.unwrap();
    assert_eq!(report.batches, 2);
    // shop-0 was removed already; shop-1 … shop-4 go with the publish.
    assert_eq!(report.dropped.len(), 4, "{:?}", report.dropped);
    let read = directory.read().await.unwrap();
    assert!(read.complete);
    assert_eq!(hosts_read(&read), hosts_of(&published));
    assert!(read.version.is_some());
}
