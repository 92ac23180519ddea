//! `collect`: traversal, limits, scoping and error reporting.

use std::sync::Arc;

use kiln_sitemap::{Limits, SitemapError, SkipReason};

use crate::helpers::{MemoryFetcher, ROOT, chain, gzip, index, pair, shop, skipped, urls, urlset};

#[tokio::test]
async fn nested_indexes_are_read_breadth_first() {
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[&shop("/a.xml"), &shop("/nested.xml"), &shop("/b.xml.gz")]),
        )
        .serve(&shop("/a.xml"), urlset(&[&shop("/1"), &shop("/2")]))
        .serve(&shop("/nested.xml"), index(&[&shop("/c.xml")]))
        // Gzip is recognised whatever the name says: `/c.xml` is compressed, `/b.xml.gz` is not.
        .serve(&shop("/b.xml.gz"), urlset(&[&shop("/3"), &shop("/4")]))
        .serve(&shop("/c.xml"), gzip(urlset(&[&shop("/5")]).as_bytes()));

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(
        urls(&collected),
        [shop("/1"), shop("/2"), shop("/3"), shop("/4"), shop("/5")]
    );
    assert_eq!(collected.sitemaps_read, 5);
    assert_eq!(skipped(&collected), []);
    assert!(!collected.truncated);
    assert_eq!(
        fetcher.fetched(),
        [
            ROOT.to_owned(),
            shop("/a.xml"),
            shop("/nested.xml"),
            shop("/b.xml.gz"),
            shop("/c.xml")
        ]
    );
}

#[tokio::test]
async fn a_sitemap_listed_twice_or_in_a_cycle_is_read_once() {
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[&shop("/a.xml"), ROOT, &shop("/a.xml"), &shop("/b.xml#part")]),
        )
        .serve(
            &shop("/a.xml"),
            index(&[ROOT, &shop("/b.xml"), &shop("/a.xml")]),
        )
        .serve(&shop("/b.xml"), urlset(&[&shop("/page")]));

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(urls(&collected), [shop("/page")]);
    assert_eq!(collected.sitemaps_read, 3);
    assert_eq!(
        fetcher.fetched(),
        [ROOT.to_owned(), shop("/a.xml"), shop("/b.xml")]
    );
    assert_eq!(skipped(&collected), []);
    assert!(!collected.truncated);
}

#[tokio::test]
async fn index_nesting_stops_at_max_depth() {
    // The root index is depth 0; the page list sits three levels of nesting below it.
    let fetcher = || {
        MemoryFetcher::new()
            .serve(ROOT, index(&[&shop("/l1.xml")]))
            .serve(&shop("/l1.xml"), index(&[&shop("/l2.xml")]))
            .serve(&shop("/l2.xml"), index(&[&shop("/l3.xml")]))
            .serve(&shop("/l3.xml"), urlset(&[&shop("/deep")]))
    };
    let cases = [
        (3, vec![shop("/deep")], 4, vec![]),
        (
            2,
            vec![],
            3,
            vec![pair(&shop("/l3.xml"), "nested deeper than 2 index levels")],
        ),
        (
            0,
            vec![],
            1,
            vec![pair(&shop("/l1.xml"), "nested deeper than 0 index levels")],
        ),
    ];
    for (max_depth, expected_urls, expected_read, expected_skipped) in cases {
        let fetcher = fetcher();
        let limits = Limits {
            max_depth,
            ..Limits::default()
        };
        let collected = fetcher.collect(&limits).await.unwrap();
        assert_eq!(urls(&collected), expected_urls, "max_depth {max_depth}");
        assert_eq!(
            collected.sitemaps_read, expected_read,
            "max_depth {max_depth}"
        );
        assert_eq!(
            fetcher.fetched().len(),
            expected_read,
            "max_depth {max_depth}"
        );
        assert_eq!(
            skipped(&collected),
            expected_skipped,
            "max_depth {max_depth}"
        );
        assert_eq!(
            collected.truncated,
            !expected_skipped.is_empty(),
            "max_depth {max_depth}"
        );
    }
}

#[tokio::test]
async fn sitemaps_beyond_max_sitemaps_are_not_fetched() {
    let children: Vec<String> = (1..=5).map(|n| shop(&format!("/s{n}.xml"))).collect();
    let child_refs: Vec<&str> = children.iter().map(String::as_str).collect();
    let mut fetcher = MemoryFetcher::new().serve(ROOT, index(&child_refs));
    for (n, child) in children.iter().enumerate() {
        fetcher = fetcher.serve(child, urlset(&[&shop(&format!("/p{}", n + 1))]));
    }
    let limits = Limits {
        max_sitemaps: 3,
        ..Limits::default()
    };

    let collected = fetcher.collect(&limits).await.unwrap();

    // The root counts towards the limit, so two children are read.
    assert_eq!(urls(&collected), [shop("/p1"), shop("/p2")]);
    assert_eq!(collected.sitemaps_read, 3);
    assert_eq!(
        fetcher.fetched(),
        [ROOT.to_owned(), shop("/s1.xml"), shop("/s2.xml")]
    );
    let reason = "the limit of 3 sitemaps was reached";
    assert_eq!(
        skipped(&collected),
        [
            pair(&shop("/s3.xml"), reason),
            pair(&shop("/s4.xml"), reason),
            pair(&shop("/s5.xml"), reason)
        ]
    );
    assert!(collected.truncated);
}

#[tokio::test]
async fn collection_stops_at_max_urls() {
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[&shop("/a.xml"), &shop("/b.xml"), &shop("/c.xml")]),
        )
        .serve(
            &shop("/a.xml"),
            urlset(&[&shop("/a1"), &shop("/a2"), &shop("/a3")]),
        )
        .serve(
            &shop("/b.xml"),
            urlset(&[&shop("/b1"), &shop("/a1"), &shop("/b2")]),
        )
        .serve(&shop("/c.xml"), urlset(&[&shop("/c1")]));

    let limits = Limits {
        max_urls: 4,
        ..Limits::default()
    };
    let collected = fetcher.collect(&limits).await.unwrap();
    assert_eq!(
        urls(&collected),
        [shop("/a1"), shop("/a2"), shop("/a3"), shop("/b1")]
    );
    assert!(collected.truncated);
    let reason = "the limit of 4 URLs was reached";
    // `/b.xml` is where the limit was hit; `/c.xml` was never taken in.
    assert_eq!(
        skipped(&collected),
        [pair(&shop("/b.xml"), reason), pair(&shop("/c.xml"), reason)]
    );
    assert_eq!(collected.sitemaps_read, 3);

    // Exactly as many distinct pages as the limit is not a truncation.
    let limits = Limits {
        max_urls: 6,
        ..Limits::default()
    };
    let collected = fetcher.collect(&limits).await.unwrap();
    assert_eq!(collected.urls.len(), 6);
    assert!(!collected.truncated);
    assert_eq!(skipped(&collected), []);
}

#[tokio::test]
async fn max_urls_truncates_the_root_sitemap_itself() {
    let fetcher =
        MemoryFetcher::new().serve(ROOT, urlset(&[&shop("/1"), &shop("/2"), &shop("/3")]));
    let limits = Limits {
        max_urls: 2,
        ..Limits::default()
    };
    let collected = fetcher.collect(&limits).await.unwrap();
    assert_eq!(urls(&collected), [shop("/1"), shop("/2")]);
    assert!(collected.truncated);
    assert_eq!(
        skipped(&collected),
        [pair(ROOT, "the limit of 2 URLs was reached")]
    );
}

#[tokio::test]
async fn only_http_urls_on_the_root_host_are_kept() {
    let other_host = "not on shop.example.com, the host of the root sitemap";
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            urlset(&[
                &shop("/kept"),
                "http://shop.example.com/plain-http",
                "HTTPS://SHOP.EXAMPLE.COM/upper",
                "https://evil.example.net/",
                "https://www.shop.example.com/",
                "https://shop.example.com:8443/admin",
                "https://shop.example.com.evil.example.net/",
                "ftp://shop.example.com/file",
                "javascript:alert(1)",
                "/relative/path",
                "https://shop example.com/",
                "",
            ]),
        )
        .serve(
            "https://evil.example.net/sitemap.xml",
            urlset(&["https://evil.example.net/"]),
        );

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(
        urls(&collected),
        [
            shop("/kept"),
            "http://shop.example.com/plain-http".to_owned(),
            shop("/upper")
        ]
    );
    assert_eq!(
        skipped(&collected),
        [
            pair("https://evil.example.net/", other_host),
            pair("https://www.shop.example.com/", other_host),
            pair("https://shop.example.com:8443/admin", other_host),
            pair("https://shop.example.com.evil.example.net/", other_host),
            pair("ftp://shop.example.com/file", "not an http or https URL"),
            pair("javascript:alert(1)", "not an http or https URL"),
            pair("/relative/path", "not an absolute URL"),
            pair(
                "https://shop example.com/",
                "malformed URL: invalid international domain name"
            ),
            pair("", "the <loc> is empty"),
        ]
    );
    assert!(!collected.truncated, "skipped entries are not a truncation");
}

#[tokio::test]
async fn child_sitemaps_on_another_host_are_not_fetched() {
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[
                "https://evil.example.net/sitemap.xml",
                "http://169.254.169.254/latest/",
                &shop("/a.xml"),
            ]),
        )
        .serve(
            "https://evil.example.net/sitemap.xml",
            urlset(&[&shop("/planted")]),
        )
        .serve(&shop("/a.xml"), urlset(&[&shop("/a")]));

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(urls(&collected), [shop("/a")]);
    assert_eq!(fetcher.fetched(), [ROOT.to_owned(), shop("/a.xml")]);
    let other_host = "not on shop.example.com, the host of the root sitemap";
    assert_eq!(
        skipped(&collected),
        [
            pair("https://evil.example.net/sitemap.xml", other_host),
            pair("http://169.254.169.254/latest/", other_host)
        ]
    );
}

#[tokio::test]
async fn a_failing_child_is_skipped_and_the_rest_continue() {
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[
                &shop("/down.xml"),
                &shop("/html.xml"),
                &shop("/good.xml"),
                &shop("/missing.xml"),
                &shop("/broken.xml"),
            ]),
        )
        .fail(&shop("/down.xml"), "HTTP 503")
        .serve(
            &shop("/html.xml"),
            "<!DOCTYPE html><html><body>Not here</body></html>",
        )
        .serve(&shop("/good.xml"), urlset(&[&shop("/good")]))
        .serve(
            &shop("/broken.xml"),
            "<urlset><url><loc>https://shop.example.com/x</url>",
        );

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(urls(&collected), [shop("/good")]);
    assert_eq!(collected.sitemaps_read, 2);
    let skipped = skipped(&collected);
    assert_eq!(
        skipped[..3],
        [
            pair(&shop("/down.xml"), "failed to fetch: HTTP 503"),
            pair(
                &shop("/html.xml"),
                "not a sitemap: expected <urlset> or <sitemapindex>, found <html>"
            ),
            pair(&shop("/missing.xml"), "failed to fetch: HTTP 404"),
        ]
    );
    assert_eq!(skipped[3].0, shop("/broken.xml"));
    assert!(
        skipped[3]
            .1
            .starts_with("not a sitemap: malformed XML at byte "),
        "{}",
        skipped[3].1
    );
    assert_eq!(skipped.len(), 4);
    assert!(!collected.truncated);
}

#[tokio::test]
async fn a_child_over_the_size_cap_is_skipped() {
    let big_page_list: Vec<String> = (0..2_000).map(|n| shop(&format!("/p{n}"))).collect();
    let refs: Vec<&str> = big_page_list.iter().map(String::as_str).collect();
    let bomb = gzip(urlset(&refs).as_bytes());
    let fetcher = MemoryFetcher::new()
        .serve(
            ROOT,
            index(&[&shop("/bomb.xml.gz"), &shop("/big.xml"), &shop("/ok.xml")]),
        )
        .serve(&shop("/bomb.xml.gz"), bomb.clone())
        .serve(&shop("/big.xml"), urlset(&refs))
        .serve(&shop("/ok.xml"), urlset(&[&shop("/ok")]));
    let limits = Limits {
        max_bytes: 16 * 1024,
        ..Limits::default()
    };
    assert!(
        bomb.len() < limits.max_bytes,
        "the compressed body must pass the fetch cap"
    );

    let collected = fetcher.collect(&limits).await.unwrap();

    assert_eq!(urls(&collected), [shop("/ok")]);
    assert_eq!(
        skipped(&collected),
        [
            pair(
                &shop("/bomb.xml.gz"),
                "not a sitemap: the body is larger than 16384 bytes once decompressed"
            ),
            pair(
                &shop("/big.xml"),
                "failed to fetch: the body is larger than 16384 bytes"
            ),
        ]
    );
}

#[tokio::test]
async fn pages_are_deduplicated_in_first_seen_order() {
    let fetcher = MemoryFetcher::new()
        .serve(ROOT, index(&[&shop("/a.xml"), &shop("/b.xml")]))
        .serve(
            &shop("/a.xml"),
            urlset(&[&shop("/x"), &shop("/y"), &shop("/x"), &shop("/y#reviews")]),
        )
        .serve(
            &shop("/b.xml"),
            urlset(&[
                &shop("/z"),
                &shop("/x"),
                "  https://SHOP.example.com/y  ",
                &shop("/w"),
            ]),
        );

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(
        urls(&collected),
        [shop("/x"), shop("/y"), shop("/z"), shop("/w")]
    );
    assert_eq!(skipped(&collected), []);
}

#[tokio::test]
async fn a_text_sitemap_is_read_as_a_page_list() {
    let body = format!("{}\r\n\r\n{}\n/relative\n", shop("/1"), shop("/2"));
    let fetcher = MemoryFetcher::new().serve(ROOT, gzip(body.as_bytes()));

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(urls(&collected), [shop("/1"), shop("/2")]);
    assert_eq!(
        skipped(&collected),
        [pair("/relative", "not an absolute URL")]
    );
}

#[tokio::test]
async fn a_root_that_cannot_be_read_is_an_error() {
    let cases = [
        (
            MemoryFetcher::new(),
            "failed to fetch https://shop.example.com/sitemap.xml: HTTP 404",
        ),
        (
            MemoryFetcher::new().fail(ROOT, "connection refused"),
            "failed to fetch https://shop.example.com/sitemap.xml: connection refused",
        ),
        (
            MemoryFetcher::new().serve(ROOT, "<!doctype html>\n<html><head></head></html>"),
            "https://shop.example.com/sitemap.xml is not a sitemap: \
             expected <urlset> or <sitemapindex>, found <html>",
        ),
        (
            MemoryFetcher::new().serve(ROOT, ""),
            "https://shop.example.com/sitemap.xml is not a sitemap: the body is empty",
        ),
    ];
    for (fetcher, expected) in cases {
        let error = fetcher.collect(&Limits::default()).await.unwrap_err();
        assert_eq!(chain(&error), expected);
        assert!(matches!(
            error,
            SitemapError::Fetch { .. } | SitemapError::Invalid { .. }
        ));
    }
}

#[tokio::test]
async fn a_root_that_is_not_http_is_refused_without_fetching() {
    let fetcher = MemoryFetcher::new();
    let root = url::Url::parse("file:///etc/passwd").unwrap();

    let error = kiln_sitemap::collect(&fetcher, &root, &Limits::default())
        .await
        .unwrap_err();

    assert!(
        matches!(error, SitemapError::UnsupportedRoot { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "file:///etc/passwd cannot be a sitemap location: only http and https URLs with a host are supported"
    );
    assert_eq!(fetcher.fetched(), Vec::<String>::new());
}

#[tokio::test]
async fn children_are_fetched_four_at_a_time() {
    let children: Vec<String> = (1..=10).map(|n| shop(&format!("/s{n}.xml"))).collect();
    let child_refs: Vec<&str> = children.iter().map(String::as_str).collect();
    let mut fetcher = MemoryFetcher::new().serve(ROOT, index(&child_refs));
    for (n, child) in children.iter().enumerate() {
        fetcher = fetcher.serve(child, urlset(&[&shop(&format!("/p{n}"))]));
    }

    let collected = fetcher.collect(&Limits::default()).await.unwrap();

    assert_eq!(collected.urls.len(), 10);
    assert_eq!(collected.sitemaps_read, 11);
    assert_eq!(fetcher.max_in_flight(), 4);
}

#[tokio::test]
async fn skipped_entries_beyond_max_skipped_are_only_counted() {
    let foreign: Vec<String> = (0..5)
        .map(|n| format!("https://other.example/{n}"))
        .collect();
    let mut locs: Vec<&str> = foreign.iter().map(String::as_str).collect();
    let kept = shop("/kept");
    locs.push(&kept);
    let fetcher = MemoryFetcher::new().serve(ROOT, urlset(&locs));
    let limits = Limits {
        max_skipped: 2,
        ..Limits::default()
    };

    let collected = fetcher.collect(&limits).await.unwrap();

    assert_eq!(urls(&collected), [kept]);
    assert_eq!(
        collected
            .skipped
            .iter()
            .map(|skipped| skipped.url.as_str())
            .collect::<Vec<_>>(),
        ["https://other.example/0", "https://other.example/1"]
    );
    assert!(matches!(
        collected.skipped[0].reason,
        SkipReason::OtherHost { .. }
    ));
    assert_eq!(collected.skipped_omitted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_runs_in_a_spawned_task() {
    // Axum handlers and job runners spawn `collect`, which needs its future to be `Send`.
    let fetcher = Arc::new(
        MemoryFetcher::new()
            .serve(ROOT, index(&[&shop("/a.xml")]))
            .serve(&shop("/a.xml"), urlset(&[&shop("/a")])),
    );
    let task = tokio::spawn({
        let fetcher = Arc::clone(&fetcher);
        async move {
            let root = url::Url::parse(ROOT).unwrap();
            kiln_sitemap::collect(fetcher.as_ref(), &root, &Limits::default()).await
        }
    });

    let collected = task.await.unwrap().unwrap();

    assert_eq!(urls(&collected), [shop("/a")]);
}
