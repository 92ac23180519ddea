//! The store on a real three-node Redis Cluster: every operation it offers, with the keys that are
//! used together in one hash slot and the rest spread over the nodes.
//!
//! Without the hash tags the page, budget and usage scripts, the purges' multi-key `DEL`s and the
//! domain sweep would fail here with `CROSSSLOT` (or, for the sweep, scan the wrong node).

use crate::helpers::{
    TestClusterStore, domain_key, key, next_event, page_scoped_key, raw_client, scan_keys, url,
};
use bytes::Bytes;
use fred::prelude::*;
use fred::util::redis_keyslot;
use kiln_core::parity::ParityImage;
use kiln_core::{CacheKey, DeviceClass, DomainConfig, Hostname, RenderOutcome};
use kiln_store::{
    Admission, CertificateRecord, CertificateState, CertificateStatus, PARITY_RECENT_MAX,
    PageEntry, PageMeta, PreviewResult, RenderBudget, RenderLogEntry, RenderLogOutcome,
    RenderLogPurpose, StoreEvent, UsageBatch, UsageHour, UsageKind, WarmProgress,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use DeviceClass::{Desktop, Mobile};

const TTL: u64 = 300;

fn entry(path: &str, device: DeviceClass) -> PageEntry {
    PageEntry {
        // Large enough to be stored compressed, like most real pages.
        html: Bytes::from(format!("<html>{path} {device}{}</html>", " ".repeat(2048))),
        meta: PageMeta {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            url: url(path).to_string(),
            rendered_at: 1_000,
            render_ms: 42,
            expires_at: 0,
            fresh_until: 0,
            encoding: kiln_store::ContentEncoding::Identity,
            length: 0,
            etag: String::new(),
        },
    }
}

impl TestClusterStore {
    async fn put(&self, domain: &str, path: &str, device: DeviceClass) -> CacheKey {
        let key = key(domain, path, device);
        self.store
            .pages()
            .put(&key, &entry(path, device), TTL, 0)
            .await
            .unwrap();
        key
    }

    async fn exists(&self, key: &CacheKey) -> bool {
        self.store.pages().get(key).await.unwrap().is_some()
    }

    async fn listed(&self, domain: &str, prefix: &str, limit: usize) -> Vec<String> {
        let mut urls = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let listing = self
                .store
                .pages()
                .list(domain, prefix, cursor.as_deref(), limit)
                .await
                .unwrap();
            assert!(listing.pages.len() <= limit);
            urls.extend(
                listing
                    .pages
                    .into_iter()
                    .map(|page| format!("{} {}", page.url, page.device)),
            );
            match listing.next_cursor {
                Some(next) => cursor = Some(next),
                None => return urls,
            }
        }
    }

    /// Every key under the test's prefix, by the port of the node that holds it (each node asked
    /// on its own: `SCAN` only sees the node it runs on).
    async fn keys_by_node(&self) -> BTreeMap<u16, BTreeSet<String>> {
        let mut by_node = BTreeMap::new();
        for &port in self.cluster.ports() {
            let node = raw_client(&self.cluster.node_url(port)).await;
            let keys: BTreeSet<String> = scan_keys(&node, &format!("{}*", self.prefix))
                .await
                .into_iter()
                .collect();
            let _ = node.quit().await;
            by_node.insert(port, keys);
        }
        by_node
    }
}

/// The node that holds `key`, from a map of every node's keys.
fn node_of(by_node: &BTreeMap<u16, BTreeSet<String>>, key: &str) -> u16 {
    let nodes: Vec<u16> = by_node
        .iter()
        .filter(|(_, keys)| keys.contains(key))
        .map(|(port, _)| *port)
        .collect();
    assert_eq!(nodes.len(), 1, "{key} is on nodes {nodes:?}");
    nodes[0]
}

#[tokio::test]
async fn a_domains_keys_share_a_slot_while_domains_spread_over_the_nodes() {
    let t = TestClusterStore::start().await;
    let domains: Vec<String> = (0..12).map(|i| format!("dom{i}")).collect();
    let mut written = Vec::new();
    for domain in &domains {
        let desktop = t.put(domain, "/a", Desktop).await;
        let mobile = t.put(domain, "/b/c?x=1", Mobile).await;
        t.store
            .pages()
            .put_failure(&desktop, "the origin answered 500", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            t.store
                .pages()
                .try_lock_render(&mobile, "gw-1", Duration::from_secs(30))
                .await
                .unwrap()
        );
        written.push((domain, desktop, mobile));
    }

    let by_node = t.keys_by_node().await;
    let mut nodes_used = BTreeSet::new();
    for (domain, desktop, mobile) in &written {
        let keys = [
            page_scoped_key(&t.prefix, "page", desktop),
            page_scoped_key(&t.prefix, "page", mobile),
            page_scoped_key(&t.prefix, "failed", desktop),
            page_scoped_key(&t.prefix, "lock", mobile),
            domain_key(&t.prefix, domain, "pages:by-path"),
            domain_key(&t.prefix, domain, "pages:by-expiry"),
        ];
        let slots: BTreeSet<u16> = keys.iter().map(|k| redis_keyslot(k.as_bytes())).collect();
        assert_eq!(slots.len(), 1, "{domain}'s keys lie in slots {slots:?}");
        let nodes: BTreeSet<u16> = keys.iter().map(|k| node_of(&by_node, k)).collect();
        assert_eq!(nodes.len(), 1, "{domain}'s keys are on nodes {nodes:?}");
        nodes_used.extend(nodes);
    }
    assert!(
        nodes_used.len() >= 2,
        "twelve domains all landed on one node: {nodes_used:?}"
    );

    // The layout before hash tags, `{prefix}page:{domain}:…` beside `{prefix}pages:{domain}:…`,
    // puts a page and its index in different slots: a script over both is refused, by the node
    // (`CROSSSLOT`) or, when the slots are on different nodes, by fred before it sends it.
    let (domain, desktop, _) = written
        .iter()
        .find(|(domain, desktop, _)| {
            redis_keyslot(format!("{}{}", t.prefix, desktop.page_key()).as_bytes())
                != redis_keyslot(format!("{}pages:{domain}:by-path", t.prefix).as_bytes())
        })
        .expect("every domain's old page and index keys share a slot by chance");
    let old_keys = vec![
        format!("{}{}", t.prefix, desktop.page_key()),
        format!("{}pages:{domain}:by-path", t.prefix),
    ];
    let error = t
        .raw
        .eval::<i64, _, _, _>("return #KEYS", old_keys, None::<Value>)
        .await
        .unwrap_err();
    let error = error.to_string();
    assert!(
        error.contains("CROSSSLOT")
            || error.contains("All keys must belong to the same cluster node"),
        "{error}"
    );
    let new_keys = vec![
        page_scoped_key(&t.prefix, "page", desktop),
        domain_key(&t.prefix, domain, "pages:by-path"),
    ];
    let n: i64 = t
        .raw
        .eval("return #KEYS", new_keys, None::<Value>)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn pages_are_stored_listed_and_purged_on_a_cluster() {
    let t = TestClusterStore::start().await;
    let a = t.put("d1", "/a", Desktop).await;
    let a_mobile = t.put("d1", "/a", Mobile).await;
    let blog: Vec<CacheKey> = {
        let mut keys = Vec::new();
        for i in 0..5 {
            keys.push(t.put("d1", &format!("/blog/{i}"), Desktop).await);
        }
        keys
    };
    let other = t.put("d2", "/a", Desktop).await;

    // Read back whole and meta only; the HTML comes back as rendered.
    let stored = t.store.pages().get(&a).await.unwrap().unwrap();
    assert_eq!(stored.decoded().unwrap(), entry("/a", Desktop).html);
    assert_eq!(stored.meta.encoding, kiln_store::ContentEncoding::Gzip);
    let meta = t.store.pages().meta(&a_mobile).await.unwrap().unwrap();
    assert_eq!(meta.url, url("/a").to_string());
    assert!(meta.is_fresh(kiln_core::unix_millis_now()));

    // Listing: by prefix, in path order, two at a time through the cursor.
    let all = t.listed("d1", "", 2).await;
    assert_eq!(all.len(), 7, "{all:?}");
    assert_eq!(
        all[..2],
        [
            format!("{} desktop", url("/a")),
            format!("{} mobile", url("/a"))
        ]
    );
    assert_eq!(t.listed("d1", "/blog/", 2).await.len(), 5);
    assert_eq!(
        t.store
            .pages()
            .count("d1", kiln_core::unix_millis_now())
            .await
            .unwrap(),
        7
    );

    // Storing a page clears its failure marker, in the same script.
    t.store
        .pages()
        .put_failure(&a, "timed out", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        t.store.pages().recent_failure(&a).await.unwrap().as_deref(),
        Some("timed out")
    );
    t.put("d1", "/a", Desktop).await;
    assert_eq!(t.store.pages().recent_failure(&a).await.unwrap(), None);

    // By key, across two domains (one script and one marker `DEL` per domain), clearing markers.
    t.store
        .pages()
        .put_failure(&blog[0], "500", Duration::from_secs(30))
        .await
        .unwrap();
    let gone = [blog[0].clone(), blog[1].clone(), other.clone()];
    assert_eq!(t.store.pages().purge(&gone).await.unwrap(), 3);
    for key in &gone {
        assert!(!t.exists(key).await, "{key:?} survived");
    }
    assert_eq!(
        t.store.pages().recent_failure(&blog[0]).await.unwrap(),
        None
    );
    assert_eq!(t.listed("d1", "/blog/", 10).await.len(), 3);

    // By prefix.
    assert_eq!(
        t.store.pages().purge_prefix("d1", "/blog/").await.unwrap(),
        3
    );
    assert_eq!(t.listed("d1", "", 10).await.len(), 2);
    assert!(t.exists(&a).await);

    // The whole domain, with entries the index lost (written by hand here) found by a scan of
    // the node holding the domain's slot, for domains all over the cluster.
    for i in 0..6 {
        let domain = format!("sweep{i}");
        let indexed = t.put(&domain, "/kept", Desktop).await;
        let lost = key(&domain, "/lost", Mobile);
        let _: () = t
            .raw
            .hset(
                page_scoped_key(&t.prefix, "page", &lost),
                [("meta", "{}"), ("html", "<html></html>")],
            )
            .await
            .unwrap();
        assert_eq!(t.listed(&domain, "", 10).await.len(), 1);
        assert_eq!(
            t.store.pages().purge_domain(&domain).await.unwrap(),
            2,
            "{domain}"
        );
        assert!(!t.exists(&indexed).await);
        let lost_left: u32 = t
            .raw
            .exists(page_scoped_key(&t.prefix, "page", &lost))
            .await
            .unwrap();
        assert_eq!(lost_left, 0, "{domain}: the lost entry survived");
    }
    assert_eq!(t.store.pages().purge_domain("d1").await.unwrap(), 2);
    assert!(!t.exists(&a).await);
    assert!(t.listed("d1", "", 10).await.is_empty());
}

#[tokio::test]
async fn locks_and_render_budgets_work_on_a_cluster() {
    let t = TestClusterStore::start().await;
    let page = key("d1", "/a", Desktop);
    let ttl = Duration::from_secs(30);
    assert!(!t.store.pages().render_locked(&page).await.unwrap());
    assert!(
        t.store
            .pages()
            .try_lock_render(&page, "gw-1", ttl)
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .pages()
            .try_lock_render(&page, "gw-2", ttl)
            .await
            .unwrap()
    );
    assert!(t.store.pages().render_locked(&page).await.unwrap());
    t.store.pages().release_render_lock(&page).await.unwrap();
    assert!(
        t.store
            .pages()
            .try_lock_render(&page, "gw-2", ttl)
            .await
            .unwrap()
    );

    let budget = RenderBudget {
        concurrent: 2,
        per_minute: 3,
    };
    let hold = Duration::from_secs(60);
    // Several tenants, so the script runs on more than one node.
    for tenant in ["t1", "t2", "t3", "t4", "t5"] {
        for render in ["a", "b"] {
            assert_eq!(
                t.store
                    .pages()
                    .admit_render(tenant, render, budget, hold)
                    .await
                    .unwrap(),
                Admission::Admitted,
                "{tenant} {render}"
            );
        }
        assert!(
            matches!(
                t.store
                    .pages()
                    .admit_render(tenant, "c", budget, hold)
                    .await
                    .unwrap(),
                Admission::Refused { .. }
            ),
            "{tenant}: a third concurrent render"
        );
        assert_eq!(t.store.pages().renders_under_way(tenant).await.unwrap(), 2);
        t.store
            .pages()
            .release_render_place(tenant, "a")
            .await
            .unwrap();
        assert_eq!(
            t.store
                .pages()
                .admit_render(tenant, "c", budget, hold)
                .await
                .unwrap(),
            Admission::Admitted
        );
        t.store
            .pages()
            .release_render_place(tenant, "b")
            .await
            .unwrap();
        // The minute's counter (the script's other key) stops the fourth start.
        match t
            .store
            .pages()
            .admit_render(tenant, "d", budget, hold)
            .await
            .unwrap()
        {
            Admission::Refused { retry_after } => {
                assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}")
            }
            other => panic!("{tenant}: a fourth render this minute was {other:?}"),
        }
        let slots: BTreeSet<u16> = [
            format!("{}{{t:{tenant}}}:budget:renders", t.prefix),
            format!(
                "{}{{t:{tenant}}}:budget:minute:{}",
                t.prefix,
                kiln_core::unix_millis_now() / 60_000
            ),
        ]
        .iter()
        .map(|k| redis_keyslot(k.as_bytes()))
        .collect();
        assert_eq!(slots.len(), 1);
    }

    // ACME's lock too.
    let host = Hostname::parse("shop.test").unwrap();
    assert!(
        t.store
            .certificates()
            .try_lock(&host, "m1", ttl)
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .certificates()
            .try_lock(&host, "m2", ttl)
            .await
            .unwrap()
    );
    t.store.certificates().release_lock(&host).await.unwrap();
    assert!(
        t.store
            .certificates()
            .try_lock(&host, "m2", ttl)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn usage_counts_add_up_on_a_cluster() {
    let t = TestClusterStore::start().await;
    let hour = |day: &str, hour: u8| UsageHour::new(day, hour).unwrap();
    // One batch over two days: a script for each day's shard of each domain, with its marker.
    let batch = |seq: u64, hits: u64| UsageBatch {
        writer: "gw-1".into(),
        seq,
        hours: BTreeMap::from([
            (
                hour("2025-03-04", 23),
                vec![
                    ("d1".to_owned(), UsageKind::Hit, hits),
                    ("d2".to_owned(), UsageKind::Render, 1),
                ],
            ),
            (
                hour("2025-03-05", 0),
                vec![("d1".to_owned(), UsageKind::Miss, 1)],
            ),
        ]),
    };
    assert!(t.store.usage().add_batch(&batch(1, 2)).await.unwrap());
    assert!(!t.store.usage().add_batch(&batch(1, 2)).await.unwrap());
    assert!(t.store.usage().add_batch(&batch(2, 3)).await.unwrap());
    // And a transaction on one day.
    t.store
        .usage()
        .add(
            &hour("2025-03-05", 7),
            &[("d1".to_owned(), UsageKind::Bypass, 4)],
        )
        .await
        .unwrap();

    let day4 = t.store.usage().for_day("2025-03-04").await.unwrap();
    assert_eq!(day4["d1"].hits, 5);
    assert_eq!(day4["d2"].renders, 2);
    let day5 = t.store.usage().day("2025-03-05").await.unwrap();
    assert_eq!(day5.totals["d1"].misses, 2);
    assert_eq!(day5.totals["d1"].bypasses, 4);
    assert_eq!(day5.hours["d1"][7].bypasses, 4);
    let hours = t.store.usage().hours_for_day("2025-03-04").await.unwrap();
    assert_eq!(hours["d1"][23].hits, 5);
    // The writer's marker is in the slot of the shard it marks ("d1" is in shard 31).
    for day in ["2025-03-04", "2025-03-05"] {
        let marker: String = t
            .raw
            .get(format!("{}{{usage:{day}:31}}:applied:gw-1", t.prefix))
            .await
            .unwrap();
        assert_eq!(marker, "2");
    }

    // A batch of 2,000 domains over two days: a script for each of the 128 (day, shard) pairs,
    // each on its own slot, spread over every node.
    let days = ["2025-03-06", "2025-03-07"];
    let many = UsageBatch {
        writer: "gw-2".into(),
        seq: 1,
        hours: days
            .iter()
            .map(|day| {
                let counts = (0..2_000u64)
                    .map(|n| (format!("d{n}"), UsageKind::Hit, 1 + n % 5))
                    .collect();
                (hour(day, 12), counts)
            })
            .collect(),
    };
    assert!(t.store.usage().add_batch(&many).await.unwrap());
    assert!(!t.store.usage().add_batch(&many).await.unwrap());
    let mut slots = BTreeSet::new();
    for day in days {
        let usage = t.store.usage().day(day).await.unwrap();
        assert_eq!(usage.totals.len(), 2_000);
        assert!((0..2_000u64).all(|n| usage.totals[&format!("d{n}")].hits == 1 + n % 5));
        assert!((0..2_000u64).all(|n| usage.hours[&format!("d{n}")][12].hits == 1 + n % 5));
        for shard in 0..64 {
            let key = format!("{}{{usage:{day}:{shard:02}}}", t.prefix);
            let marker = format!("{key}:applied:gw-2");
            let domains: u64 = t.raw.hlen(&key).await.unwrap();
            assert!(domains > 0, "{key}");
            let seq: String = t.raw.get(&marker).await.unwrap();
            assert_eq!(seq, "1", "{marker}");
            // Every key the shard's script touches has the shard's hash tag.
            assert_eq!(
                redis_keyslot(key.as_bytes()),
                redis_keyslot(marker.as_bytes()),
                "{key}"
            );
            slots.insert(redis_keyslot(key.as_bytes()));
        }
    }
    assert_eq!(slots.len(), 128, "a slot for each day's shard");
    // `redis-cli --cluster create` gives three primaries a third of the slots each.
    for node in [0..=5460, 5461..=10922, 10923..=16383] {
        let owned = slots.iter().filter(|slot| node.contains(*slot)).count();
        assert!(owned > 20, "slots {node:?} hold {owned} of the shards");
    }
}

/// The next event that is not about the subscription itself, within a few seconds.
#[tokio::test]
async fn events_reach_a_subscriber_whichever_node_they_are_published_on() {
    let t = TestClusterStore::start().await;
    let mut events = t.store.events().subscribe().await.unwrap();

    // The store's own announcements.
    let domain = DomainConfig {
        id: "d1".into(),
        tenant_id: "t1".into(),
        host: Hostname::parse("shop.test").unwrap(),
        origin: "https://origin.shop.test".into(),
        verified: true,
        settings: Default::default(),
        service_only: false,
    };
    t.store.directory().put(&domain).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::DomainChanged {
            host: "shop.test".into()
        }
    );
    let page = key("d1", "/a", Desktop);
    let outcome = RenderOutcome::Stored {
        status: 200,
        render_ms: 10,
    };
    t.store
        .pages()
        .announce_render(&page, outcome.clone())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::Rendered {
            page_key: page.page_key(),
            outcome
        }
    );
    t.put("d1", "/a", Desktop).await;
    assert_eq!(
        t.store
            .pages()
            .purge(std::slice::from_ref(&page))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::Purged {
            domain_id: "d1".into(),
            page_keys: vec![page.page_key()]
        }
    );

    // Published on each node in turn: the subscriber listens on one of them only.
    let channel = format!("{}events", t.prefix);
    for &port in t.cluster.ports() {
        let node = raw_client(&t.cluster.node_url(port)).await;
        let event = StoreEvent::DomainChanged {
            host: format!("n{port}.test"),
        };
        let _: i64 = node
            .publish(&channel, serde_json::to_string(&event).unwrap())
            .await
            .unwrap();
        assert_eq!(next_event(&mut events).await, event, "published on {port}");
        let _ = node.quit().await;
    }
}

#[tokio::test]
async fn the_directory_render_log_warm_progress_previews_parity_checks_and_certificates_work_on_a_cluster()
 {
    let t = TestClusterStore::start().await;
    t.store.health().ping().await.unwrap();
    assert!(t.store.health().is_connected());

    // The domain directory.
    let mut configs = HashMap::new();
    for (i, host) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
        let config = DomainConfig {
            id: format!("d{i}"),
            tenant_id: "t1".into(),
            host: Hostname::parse(host).unwrap(),
            origin: format!("https://origin.{host}"),
            verified: i != 1,
            settings: Default::default(),
            service_only: false,
        };
        t.store.directory().put(&config).await.unwrap();
        configs.insert(config.host.clone(), config);
    }
    let b = Hostname::parse("b.test").unwrap();
    assert_eq!(
        t.store.directory().get(&b).await.unwrap().as_ref(),
        configs.get(&b)
    );
    assert_eq!(t.store.directory().all().await.unwrap(), configs);
    assert!(t.store.directory().remove(&b).await.unwrap());
    assert_eq!(t.store.directory().all().await.unwrap().len(), 2);

    // The render log.
    let log_entry = |n: u64| RenderLogEntry {
        at: 1_700_000_000_000 + n,
        tab_at: None,
        domain_id: "d1".into(),
        tenant_id: "t1".into(),
        url: format!("https://a.test/p/{n}"),
        device: Mobile,
        purpose: RenderLogPurpose::Warm,
        outcome: RenderLogOutcome::Stored,
        status: Some(200),
        reason: None,
        duration_ms: n,
        bytes: n,
        user_agent: None,
        worker: Some("worker-a".into()),
        via: Default::default(),
    };
    for n in 1..=3 {
        t.store.render_log().append(&log_entry(n)).await.unwrap();
    }
    let log = t.store.render_log().read("0", 10).await.unwrap();
    let entries: Vec<_> = log.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(entries, (1..=3).map(log_entry).collect::<Vec<_>>());
    assert_eq!(
        t.store.render_log().read(&log[1].0, 10).await.unwrap(),
        log[2..].to_vec()
    );

    // Warm progress (a transaction on one key).
    for ok in [true, true, false] {
        t.store
            .render_log()
            .record_warm_result("w1", ok)
            .await
            .unwrap();
    }
    assert_eq!(
        t.store.render_log().warm_progress("w1").await.unwrap(),
        WarmProgress { done: 2, failed: 1 }
    );

    // Previews: a transaction to put, `BLPOP` on a connection of its own to take.
    let preview = PreviewResult {
        status: 200,
        headers: vec![],
        html: "<p>preview</p>".into(),
        render_ms: 5,
        error: None,
    };
    t.store
        .render_log()
        .put_preview("r1", &preview)
        .await
        .unwrap();
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r1", Duration::from_secs(2))
            .await
            .unwrap(),
        Some(preview.clone())
    );
    let store = t.store.clone();
    let waiting = tokio::spawn(async move {
        store
            .render_log()
            .take_preview("r2", Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.store
        .render_log()
        .put_preview("r2", &preview)
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), Some(preview));
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r3", Duration::from_millis(100))
            .await
            .unwrap(),
        None
    );

    // Parity checks: a transaction over the tenant's keys to put, one MGET to list.
    let mut checks = Vec::new();
    for n in 0..3u64 {
        let mut check = kiln_core::parity::ParityCheck::queued(
            format!("c{n}"),
            "t1".into(),
            "d1".into(),
            format!("https://a.test/p/{n}"),
            Desktop,
        );
        check.requested_at = 1_700_000_000_000 + n;
        t.store.render_log().put_parity_check(&check).await.unwrap();
        checks.push(check);
    }
    checks.reverse();
    assert_eq!(
        t.store
            .render_log()
            .recent_parity_checks("t1", 10)
            .await
            .unwrap(),
        checks,
        "newest first"
    );
    assert_eq!(
        t.store
            .render_log()
            .recent_parity_checks("t2", 10)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        t.store.render_log().parity_check("t2", "c1").await.unwrap(),
        None
    );
    let png = Bytes::from_static(b"\x89PNG picture");
    t.store
        .render_log()
        .put_parity_image("t1", "c1", ParityImage::Diff, png.clone())
        .await
        .unwrap();
    assert_eq!(
        t.store
            .render_log()
            .parity_image("t1", "c1", ParityImage::Diff)
            .await
            .unwrap(),
        Some(png)
    );
    assert_eq!(
        t.store
            .render_log()
            .parity_image("t2", "c1", ParityImage::Diff)
            .await
            .unwrap(),
        None
    );
    // Beyond the newest PARITY_RECENT_MAX, the oldest checks go, pictures and all.
    for n in 3..PARITY_RECENT_MAX as u64 + 1 {
        let mut check = kiln_core::parity::ParityCheck::queued(
            format!("c{n}"),
            "t1".into(),
            "d1".into(),
            format!("https://a.test/p/{n}"),
            Desktop,
        );
        check.requested_at = 1_700_000_000_000 + n;
        t.store.render_log().put_parity_check(&check).await.unwrap();
    }
    let recent = t
        .store
        .render_log()
        .recent_parity_checks("t1", PARITY_RECENT_MAX as usize)
        .await
        .unwrap();
    assert_eq!(recent.len(), PARITY_RECENT_MAX as usize);
    assert_eq!(recent.last().unwrap().id, "c1", "c0, the oldest, is gone");
    assert_eq!(
        t.store.render_log().parity_check("t1", "c0").await.unwrap(),
        None
    );
    assert!(
        t.store
            .render_log()
            .parity_check("t1", "c1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        t.store
            .render_log()
            .parity_image("t1", "c1", ParityImage::Diff)
            .await
            .unwrap()
            .is_some()
    );
    t.store
        .render_log()
        .put_parity_check(&kiln_core::parity::ParityCheck::queued(
            "c-new".into(),
            "t1".into(),
            "d1".into(),
            "https://a.test/new".into(),
            Desktop,
        ))
        .await
        .unwrap();
    assert_eq!(
        t.store.render_log().parity_check("t1", "c1").await.unwrap(),
        None
    );
    assert_eq!(
        t.store
            .render_log()
            .parity_image("t1", "c1", ParityImage::Diff)
            .await
            .unwrap(),
        None,
        "a trimmed check's pictures go with it"
    );

    // Certificates and ACME.
    let host = Hostname::parse("a.test").unwrap();
    t.store
        .challenges()
        .put(&host, "tok", "tok.thumb")
        .await
        .unwrap();
    assert_eq!(
        t.store
            .challenges()
            .get(&host, "tok")
            .await
            .unwrap()
            .as_deref(),
        Some("tok.thumb")
    );
    t.store.challenges().remove(&host, "tok").await.unwrap();
    assert_eq!(t.store.challenges().get(&host, "tok").await.unwrap(), None);
    let record = CertificateRecord {
        chain_pem: "-----BEGIN CERTIFICATE-----".into(),
        sealed_key: "sealed".into(),
        fingerprint: "ab12".into(),
        not_after: 2_000_000_000,
        issued_at: 1_900_000_000,
    };
    t.store.certificates().put(&host, &record).await.unwrap();
    assert_eq!(
        t.store.certificates().get(&host).await.unwrap(),
        Some(record)
    );
    assert_eq!(
        t.store.certificates().index().await.unwrap(),
        HashMap::from([("a.test".to_owned(), "ab12".to_owned())])
    );
    let status = CertificateStatus {
        state: CertificateState::Issued,
        not_after: Some(2_000_000_000),
        updated_at: 1_900_000_000,
        last_error: None,
        failures: 0,
        retry_at: None,
    };
    t.store
        .certificates()
        .put_status(&host, &status)
        .await
        .unwrap();
    assert_eq!(
        t.store.certificates().status(&host).await.unwrap().as_ref(),
        Some(&status)
    );
    assert_eq!(t.store.certificates().statuses().await.unwrap().len(), 1);
    t.store.certificates().remove("a.test").await.unwrap();
    assert_eq!(t.store.certificates().get(&host).await.unwrap(), None);
    assert!(t.store.certificates().index().await.unwrap().is_empty());
    assert_eq!(t.store.certificates().account().await.unwrap(), None);
    t.store
        .certificates()
        .put_account("sealed-account")
        .await
        .unwrap();
    assert_eq!(
        t.store.certificates().account().await.unwrap().as_deref(),
        Some("sealed-account")
    );
}
