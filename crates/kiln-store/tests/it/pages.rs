//! Page entries and their per-domain index: listing by path prefix with a cursor, expiry, and the
//! three purges.

use crate::helpers::{TestStore, domain_key, key, page_scoped_key, url};
use bytes::Bytes;
use fred::prelude::*;
use kiln_core::{CacheKey, DeviceClass};
use kiln_store::{PageEntry, PageMeta, PageSummary, StoreError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TTL: u64 = 300;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A page whose HTML names its path and device, so every entry has its own length.
fn entry(path: &str, device: DeviceClass, status: u16) -> PageEntry {
    PageEntry {
        html: Bytes::from(format!("<html>{path} {device}</html>")),
        meta: PageMeta {
            status,
            headers: vec![],
            url: url(path).to_string(),
            rendered_at: 1_000 + path.len() as u64,
            render_ms: 42,
            expires_at: 0,
            fresh_until: 0,
            encoding: kiln_store::ContentEncoding::Identity,
            length: 0,
            etag: String::new(),
        },
    }
}

impl TestStore {
    async fn put(&self, domain: &str, path: &str, device: DeviceClass) -> CacheKey {
        self.put_for(domain, path, device, TTL).await
    }

    async fn put_for(&self, domain: &str, path: &str, device: DeviceClass, ttl: u64) -> CacheKey {
        let key = key(domain, path, device);
        self.store
            .pages()
            .put(&key, &entry(path, device, 200), ttl, 0)
            .await
            .unwrap();
        key
    }

    /// Every page listed under `prefix`, `limit` at a time, and how many calls that took.
    async fn list_all(
        &self,
        domain: &str,
        prefix: &str,
        limit: usize,
    ) -> (Vec<PageSummary>, usize) {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        for calls in 1.. {
            let listing = self
                .store
                .pages()
                .list(domain, prefix, cursor.as_deref(), limit)
                .await
                .unwrap();
            assert!(listing.pages.len() <= limit);
            pages.extend(listing.pages);
            match listing.next_cursor {
                Some(next) => cursor = Some(next),
                None => return (pages, calls),
            }
            assert!(calls < 10_000, "the listing never ended");
        }
        unreachable!()
    }

    async fn listed(&self, domain: &str, prefix: &str) -> Vec<(String, DeviceClass)> {
        self.list_all(domain, prefix, 1000)
            .await
            .0
            .into_iter()
            .map(|page| (page.url, page.device))
            .collect()
    }

    async fn index_sizes(&self, domain: &str) -> (u64, u64) {
        let by_path: u64 = self
            .raw
            .zcard(domain_key(&self.prefix, domain, "pages:by-path"))
            .await
            .unwrap();
        let by_expiry: u64 = self
            .raw
            .zcard(domain_key(&self.prefix, domain, "pages:by-expiry"))
            .await
            .unwrap();
        (by_path, by_expiry)
    }

    async fn exists(&self, key: &CacheKey) -> bool {
        self.store.pages().get(key).await.unwrap().is_some()
    }
}

fn full(path: &str) -> String {
    url(path).to_string()
}

use DeviceClass::{Desktop, Mobile};

#[tokio::test]
async fn pages_are_listed_by_path_prefix_in_path_order_across_pages() {
    let t = TestStore::start().await;
    // Put out of order; the listing sorts.
    for (path, device) in [
        ("/blog/b", Desktop),
        ("/about", Desktop),
        ("/blog/a?x=1", Desktop),
        ("/blogger", Desktop),
        ("/blog/a", Mobile),
        ("/blog/a", Desktop),
        ("/blog", Desktop),
        ("/", Desktop),
        ("/blog/c/d", Mobile),
    ] {
        t.put("d1", path, device).await;
    }
    // Another domain's pages never show.
    t.put("d2", "/blog/a", Desktop).await;
    t.put("d2", "/blog/zz", Desktop).await;

    let blog_slash = vec![
        (full("/blog/a"), Desktop),
        (full("/blog/a"), Mobile),
        (full("/blog/a?x=1"), Desktop),
        (full("/blog/b"), Desktop),
        (full("/blog/c/d"), Mobile),
    ];
    assert_eq!(t.listed("d1", "/blog/").await, blog_slash);
    // Two at a time: three calls, the last without a cursor.
    let (pages, calls) = t.list_all("d1", "/blog/", 2).await;
    assert_eq!(calls, 3);
    let paged: Vec<_> = pages.iter().map(|p| (p.url.clone(), p.device)).collect();
    assert_eq!(paged, blog_slash);
    // One at a time.
    let (pages, calls) = t.list_all("d1", "/blog/", 1).await;
    assert_eq!((pages.len(), calls), (5, 5));

    // "/blog" is a plain prefix: it takes "/blog" itself and "/blogger" too.
    assert_eq!(
        t.listed("d1", "/blog").await,
        [
            vec![(full("/blog"), Desktop)],
            blog_slash.clone(),
            vec![(full("/blogger"), Desktop)]
        ]
        .concat()
    );
    assert_eq!(
        t.listed("d1", "/blog/a?").await,
        vec![(full("/blog/a?x=1"), Desktop)]
    );
    assert_eq!(t.listed("d1", "/nothing").await, vec![]);
    assert_eq!(t.listed("d3", "").await, vec![]);

    // "" and "/" list everything, in path order.
    let everything = t.listed("d1", "").await;
    assert_eq!(everything.len(), 9);
    assert_eq!(everything[0], (full("/"), Desktop));
    assert_eq!(everything[1], (full("/about"), Desktop));
    assert_eq!(everything.last().unwrap(), &(full("/blogger"), Desktop));
    assert_eq!(t.listed("d1", "/").await, everything);
    let (pages, calls) = t.list_all("d1", "", 4).await;
    assert_eq!(calls, 3);
    assert_eq!(
        pages
            .into_iter()
            .map(|p| (p.url, p.device))
            .collect::<Vec<_>>(),
        everything
    );

    assert_eq!(
        t.listed("d2", "/").await,
        vec![(full("/blog/a"), Desktop), (full("/blog/zz"), Desktop)]
    );

    // A cursor that is not one of ours is refused.
    assert!(matches!(
        t.store.pages().list("d1", "", Some("not hex!"), 10).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn a_summary_describes_the_entry_and_names_its_key() {
    let t = TestStore::start().await;
    let before = now();
    let key = key("d1", "/p?q=1", Mobile);
    let stored = entry("/p?q=1", Mobile, 404);
    t.store.pages().put(&key, &stored, 120, 0).await.unwrap();
    let after = now();

    let listing = t.store.pages().list("d1", "/p", None, 10).await.unwrap();
    assert_eq!(listing.next_cursor, None);
    let [page] = listing.pages.as_slice() else {
        panic!("{listing:?}")
    };
    assert_eq!(page.url, "https://shop.test/p?q=1");
    assert_eq!(page.device, Mobile);
    assert_eq!(page.status, 404);
    assert_eq!(page.bytes, stored.html.len() as u64);
    assert_eq!(page.rendered_at, stored.meta.rendered_at);
    assert!(
        (before + 120_000..=after + 120_000).contains(&page.expires_at),
        "{page:?}"
    );
    assert_eq!(page.key("d1"), key);

    // The stored meta records the same expiry, and Redis expires the hash at that moment.
    let read = t.store.pages().get(&key).await.unwrap().unwrap();
    assert_eq!(read.meta.expires_at, page.expires_at);
    assert_eq!(read.html, stored.html);
    let expire_time: i64 = t
        .raw
        .pexpire_time(page_scoped_key(&t.prefix, "page", &key))
        .await
        .unwrap();
    assert_eq!(expire_time as u64, page.expires_at);
}

#[tokio::test]
async fn expired_pages_leave_the_listing_and_the_index() {
    let t = TestStore::start().await;
    let short = t.put_for("d1", "/short", Desktop, 1).await;
    let also_short = t.put_for("d1", "/also-short", Mobile, 1).await;
    let long = t.put("d1", "/long", Desktop).await;
    assert_eq!(t.index_sizes("d1").await, (3, 3));
    assert_eq!(t.listed("d1", "").await.len(), 3);

    let deadline = Instant::now() + Duration::from_secs(30);
    while t.exists(&short).await || t.exists(&also_short).await {
        assert!(
            Instant::now() < deadline,
            "the short-lived pages never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As soon as Redis has expired the hashes, the listing no longer shows them, and the index
    // no longer holds them.
    assert_eq!(t.listed("d1", "").await, vec![(full("/long"), Desktop)]);
    assert_eq!(t.index_sizes("d1").await, (1, 1));
    assert!(t.exists(&long).await);

    // A write trims expired members too, without any listing.
    t.put_for("d1", "/brief", Desktop, 1).await;
    let brief = key("d1", "/brief", Desktop);
    while t.exists(&brief).await {
        assert!(Instant::now() < deadline, "the brief page never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t.index_sizes("d1").await, (2, 2));
    t.put("d1", "/next", Desktop).await;
    assert_eq!(t.index_sizes("d1").await, (2, 2));

    // A page that vanished another way (evicted, deleted by hand) is unlisted when next seen.
    let _: i64 = t
        .raw
        .del(page_scoped_key(&t.prefix, "page", &long))
        .await
        .unwrap();
    assert_eq!(t.listed("d1", "").await, vec![(full("/next"), Desktop)]);
    assert_eq!(t.index_sizes("d1").await, (1, 1));

    // The index keys expire with the domain's last page.
    let index_expiry: i64 = t
        .raw
        .pexpire_time(domain_key(&t.prefix, "d1", "pages:by-path"))
        .await
        .unwrap();
    let next = t
        .store
        .pages()
        .get(&key("d1", "/next", Desktop))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index_expiry as u64, next.meta.expires_at);
}

#[tokio::test]
async fn rewriting_a_page_keeps_one_index_entry_with_the_new_expiry() {
    let t = TestStore::start().await;
    let k = t.put_for("d1", "/p", Desktop, 60).await;
    let k2 = t.put_for("d1", "/p", Desktop, 600).await;
    assert_eq!(k, k2);
    assert_eq!(t.index_sizes("d1").await, (1, 1));
    let listing = t.store.pages().list("d1", "", None, 10).await.unwrap();
    assert_eq!(listing.pages.len(), 1);
    assert!(listing.pages[0].expires_at > now() + 300_000, "{listing:?}");
}

#[tokio::test]
async fn purging_keys_counts_what_existed_and_touches_nothing_else() {
    let t = TestStore::start().await;
    let a = t.put("d1", "/a", Desktop).await;
    let a_mobile = t.put("d1", "/a", Mobile).await;
    let b = t.put("d1", "/b", Desktop).await;
    let other = t.put("d2", "/a", Desktop).await;
    let never_stored = key("d1", "/never", Desktop);

    let purged = t
        .store
        .pages()
        .purge(&[a.clone(), never_stored, a.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        purged, 2,
        "a and d2's /a existed; duplicates and absentees do not count"
    );
    assert!(!t.exists(&a).await);
    assert!(!t.exists(&other).await);
    assert!(t.exists(&a_mobile).await);
    assert!(t.exists(&b).await);
    assert_eq!(
        t.listed("d1", "").await,
        vec![(full("/a"), Mobile), (full("/b"), Desktop)]
    );
    assert_eq!(t.index_sizes("d1").await, (2, 2));
    assert_eq!(t.index_sizes("d2").await, (0, 0));
    assert_eq!(t.store.pages().purge(&[]).await.unwrap(), 0);
    assert_eq!(t.store.pages().purge(&[a]).await.unwrap(), 0);
}

#[tokio::test]
async fn purging_a_prefix_takes_exactly_the_pages_under_it() {
    let t = TestStore::start().await;
    let mut under = Vec::new();
    for path in ["/blog/a", "/blog/b?x=1", "/blog/c/d"] {
        under.push(t.put("d1", path, Desktop).await);
        under.push(t.put("d1", path, Mobile).await);
    }
    let kept = [
        t.put("d1", "/blog", Desktop).await,
        t.put("d1", "/blogger", Desktop).await,
        t.put("d1", "/about", Desktop).await,
        t.put("d2", "/blog/a", Desktop).await,
    ];

    assert_eq!(
        t.store.pages().purge_prefix("d1", "/blog/").await.unwrap(),
        6
    );
    for key in &under {
        assert!(!t.exists(key).await, "{key:?} survived");
    }
    for key in &kept {
        assert!(t.exists(key).await, "{key:?} was purged");
    }
    assert_eq!(
        t.listed("d1", "").await,
        vec![
            (full("/about"), Desktop),
            (full("/blog"), Desktop),
            (full("/blogger"), Desktop)
        ]
    );
    assert_eq!(
        t.store.pages().purge_prefix("d1", "/blog/").await.unwrap(),
        0
    );
    assert_eq!(t.store.pages().purge_prefix("d1", "/").await.unwrap(), 3);
    assert_eq!(t.listed("d1", "").await, vec![]);
    assert_eq!(t.index_sizes("d1").await, (0, 0));
    assert_eq!(t.listed("d2", "").await, vec![(full("/blog/a"), Desktop)]);
}

#[tokio::test]
async fn purges_handle_thousands_of_pages_in_batches() {
    let t = TestStore::start().await;
    const N: usize = 2_500;
    let keys: Vec<CacheKey> = futures::future::join_all((0..N).map(|i| {
        let t = &t;
        async move { t.put("d1", &format!("/p/{i:05}"), Desktop).await }
    }))
    .await;
    t.put("d1", "/q", Desktop).await;
    assert_eq!(t.index_sizes("d1").await, (N as u64 + 1, N as u64 + 1));

    // Listed in full, in order, across pages of at most the maximum.
    let (pages, calls) = t.list_all("d1", "/p/", 5_000).await;
    assert_eq!(pages.len(), N);
    assert_eq!(calls, N.div_ceil(kiln_store::MAX_LIST_LIMIT));
    assert!(pages.windows(2).all(|w| w[0].url < w[1].url));

    assert_eq!(t.store.pages().purge(&keys[..1_200]).await.unwrap(), 1_200);
    assert_eq!(
        t.store.pages().purge_prefix("d1", "/p/").await.unwrap(),
        (N - 1_200) as u64
    );
    assert_eq!(t.listed("d1", "").await, vec![(full("/q"), Desktop)]);
    assert_eq!(t.index_sizes("d1").await, (1, 1));
}

#[tokio::test]
async fn purging_a_domain_also_finds_entries_missing_from_the_index() {
    let t = TestStore::start().await;
    let indexed = [
        t.put("d1", "/a", Desktop).await,
        t.put("d1", "/b", Mobile).await,
    ];
    // Entries the index lost (or that were written by hand): no index member, no `index` field.
    let mut unindexed = Vec::new();
    for i in 0..1_100 {
        let key = key(
            "d1",
            &format!("/old/{i}"),
            if i % 2 == 0 { Desktop } else { Mobile },
        );
        let _: () = t
            .raw
            .hset(
                page_scoped_key(&t.prefix, "page", &key),
                [("meta", "{}"), ("html", "<html></html>")],
            )
            .await
            .unwrap();
        unindexed.push(key);
    }
    assert_eq!(t.listed("d1", "").await.len(), 2);
    // Neighbours whose keys share the text `{d:d1` must survive, even one whose key starts with
    // d1's page key prefix (and shares its hash slot).
    let neighbours = [
        t.put("d10", "/a", Desktop).await,
        t.put("d1:x", "/a", Desktop).await,
        t.put("d1}:page:desktop", "/a", Desktop).await,
        t.put("d2", "/a", Desktop).await,
    ];
    let _: () = t
        .raw
        .set(
            page_scoped_key(&t.prefix, "lock", &indexed[0]),
            "gw",
            None,
            None,
            false,
        )
        .await
        .unwrap();

    assert_eq!(t.store.pages().purge_domain("d1").await.unwrap(), 2 + 1_100);
    for key in indexed.iter().chain(&unindexed) {
        assert!(!t.exists(key).await, "{key:?} survived");
    }
    for key in &neighbours {
        assert!(t.exists(key).await, "{key:?} was purged");
    }
    let lock_left: i64 = t
        .raw
        .exists(page_scoped_key(&t.prefix, "lock", &indexed[0]))
        .await
        .unwrap();
    assert_eq!(lock_left, 1, "render locks are not pages");
    assert_eq!(t.index_sizes("d1").await, (0, 0));
    assert_eq!(t.listed("d10", "").await.len(), 1);
    assert_eq!(t.store.pages().purge_domain("d1").await.unwrap(), 0);
}

#[tokio::test]
async fn a_page_is_fresh_for_its_ttl_then_stale_until_its_stale_window_ends() {
    let t = TestStore::start().await;
    let key = key("d1", "/a", DeviceClass::Desktop);
    let before = now();
    t.store
        .pages()
        .put(&key, &entry("/a", DeviceClass::Desktop, 200), 60, 600)
        .await
        .unwrap();
    let read = t.store.pages().get(&key).await.unwrap().unwrap();
    let fresh_until = read.meta.fresh_until;
    assert!(
        (before + 60_000..=now() + 60_000).contains(&fresh_until),
        "{fresh_until}"
    );
    assert_eq!(read.meta.expires_at, fresh_until + 600_000);
    assert!(read.meta.is_fresh(fresh_until - 1));
    assert!(!read.meta.is_fresh(fresh_until));
    // Redis keeps the entry through the stale window, and the listing says both times.
    let expire_time: i64 = t
        .raw
        .pexpire_time(page_scoped_key(&t.prefix, "page", &key))
        .await
        .unwrap();
    assert_eq!(expire_time as u64, read.meta.expires_at);
    let listed = t.store.pages().list("d1", "", None, 10).await.unwrap();
    assert_eq!(listed.pages[0].fresh_until, fresh_until);
    assert_eq!(listed.pages[0].expires_at, read.meta.expires_at);

    // Entries stored before freshness existed are fresh until they expire.
    let mut old = read.meta.clone();
    old.fresh_until = 0;
    assert!(old.is_fresh(u64::MAX));
}

#[tokio::test]
async fn a_failure_marker_lasts_its_ttl_and_a_stored_page_or_a_purge_clears_it() {
    let t = TestStore::start().await;
    let key = key("d1", "/broken", DeviceClass::Desktop);
    assert_eq!(t.store.pages().recent_failure(&key).await.unwrap(), None);

    t.store
        .pages()
        .put_failure(&key, "the origin answered 500", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        t.store
            .pages()
            .recent_failure(&key)
            .await
            .unwrap()
            .as_deref(),
        Some("the origin answered 500")
    );
    // Markers are per page and device.
    let other = self::key("d1", "/broken", DeviceClass::Mobile);
    assert_eq!(t.store.pages().recent_failure(&other).await.unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while t
        .store
        .pages()
        .recent_failure(&key)
        .await
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < deadline, "the marker never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    t.store
        .pages()
        .put_failure(&key, "timeout", Duration::from_secs(60))
        .await
        .unwrap();
    t.store
        .pages()
        .put(&key, &entry("/broken", DeviceClass::Desktop, 200), 60, 0)
        .await
        .unwrap();
    assert_eq!(
        t.store.pages().recent_failure(&key).await.unwrap(),
        None,
        "a stored page clears the marker"
    );

    t.store
        .pages()
        .put_failure(&key, "timeout", Duration::from_secs(60))
        .await
        .unwrap();
    t.store
        .pages()
        .purge(std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(
        t.store.pages().recent_failure(&key).await.unwrap(),
        None,
        "purging the page clears the marker"
    );
}

#[tokio::test]
async fn large_pages_are_stored_gzip_compressed_and_read_back_whole() {
    let t = TestStore::start().await;
    let html: String = (0..800)
        .map(|i| format!("<p class=\"item\">Product {i}</p>\n"))
        .collect();
    let mut big = entry("/big", DeviceClass::Desktop, 200);
    big.html = Bytes::from(html.clone());
    let big_key = key("d1", "/big", DeviceClass::Desktop);
    t.store.pages().put(&big_key, &big, 60, 60).await.unwrap();
    let small_key = t.put("d1", "/small", DeviceClass::Desktop).await;

    let read = t.store.pages().get(&big_key).await.unwrap().unwrap();
    assert_eq!(read.meta.encoding, kiln_store::ContentEncoding::Gzip);
    assert!(
        read.html.len() * 5 < html.len(),
        "{} bytes",
        read.html.len()
    );
    assert_eq!(read.decoded().unwrap(), html.as_bytes());
    assert_eq!(read.length(), html.len() as u64);
    let small = t.store.pages().get(&small_key).await.unwrap().unwrap();
    assert_eq!(small.meta.encoding, kiln_store::ContentEncoding::Identity);
    assert_eq!(small.decoded().unwrap(), small.html);

    // The validator follows the content: the same HTML gives the same ETag, other HTML another.
    let etag = read.etag();
    assert!(etag.starts_with("W/\"") && etag.len() > 8, "{etag}");
    t.store.pages().put(&big_key, &big, 60, 60).await.unwrap();
    assert_eq!(
        t.store.pages().get(&big_key).await.unwrap().unwrap().etag(),
        etag
    );
    big.html = Bytes::from(format!("{html}<p>one more</p>"));
    t.store.pages().put(&big_key, &big, 60, 60).await.unwrap();
    assert_ne!(
        t.store.pages().get(&big_key).await.unwrap().unwrap().etag(),
        etag
    );

    // The listing gives the rendered size, not the compressed one.
    let listed = t.store.pages().list("d1", "/big", None, 10).await.unwrap();
    assert_eq!(
        listed.pages[0].bytes,
        html.len() as u64 + "<p>one more</p>".len() as u64
    );
}
