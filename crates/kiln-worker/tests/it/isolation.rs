//! Render isolation: a page sees nothing an earlier render left behind, whether that render was of
//! the same domain or of another tenant's (cookies, storage, IndexedDB, Cache Storage, service
//! workers, permissions, the tab's own state, the HTTP cache); and what the HTTP cache shares
//! between renders of one domain today, pinned so that changing it is a deliberate decision.
//!
//! Each render loads the isolation probe of the test origin (`origin.rs`), which reports into its
//! DOM what it finds and, asked to, leaves one of everything behind and reports that it did. The
//! tests read the report from the stored page.

use kiln_core::DeviceClass::Desktop;
use kiln_core::{CacheKey, NormalizedUrl};
use serde::Deserialize;
use std::time::Duration;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::origin::TestOrigin;

/// Renders per test: enough that a tab, context or renderer handed out again by the pool (it
/// keeps two warm tabs per browser in these tests) would be among them.
const RENDERS: usize = 6;

/// What the probe finds of earlier renders (or, in [`Report::wrote`], of its own writes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Found {
    cookie: String,
    /// The Cookie header of the request for the page, as the origin received it.
    cookie_header: String,
    local_storage: Vec<String>,
    session_storage: Vec<String>,
    indexed_db: Vec<String>,
    caches: Vec<String>,
    /// The scopes (paths) of the service workers registered for the page's origin.
    service_workers: Vec<String>,
    /// Whether a service worker controls the page.
    controlled: bool,
    window_name: String,
    history_length: u32,
    /// The geolocation permission's state (`prompt`, `granted` or `denied`).
    geolocation: String,
}

impl Found {
    /// What a page finds in a fresh browser context and a fresh tab.
    fn nothing(history_length: u32) -> Found {
        Found {
            cookie: String::new(),
            cookie_header: String::new(),
            local_storage: vec![],
            session_storage: vec![],
            indexed_db: vec![],
            caches: vec![],
            service_workers: vec![],
            controlled: false,
            window_name: String::new(),
            history_length,
            geolocation: "prompt".into(),
        }
    }
}

/// What the probe reads back after leaving everything behind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wrote {
    /// What the page finds once it has written.
    state: Found,
    /// The record read back from its IndexedDB database.
    idb_record: Option<String>,
    /// The entry read back from its Cache Storage cache.
    cache_entry: Option<String>,
    /// The Cookie header of a request the page made afterwards, as the origin received it.
    cookie_echo: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Report {
    /// How many times the `bundle` script ran.
    bundle_runs: u32,
    found: Found,
    wrote: Option<Wrote>,
    /// The probe's steps that threw.
    errors: Vec<String>,
}

/// One render of the probe.
struct Probe<'a> {
    origin: &'a TestOrigin,
    tenant: &'a str,
    domain: &'a str,
    /// Have the page leave everything behind, marked with this token.
    write: Option<&'a str>,
    /// Have the page load this script and this stylesheet (each twice).
    bundle: Option<(String, String)>,
}

impl TestApp {
    /// Renders the probe as a job of `probe.domain` and `probe.tenant`, and reads its report.
    async fn probe(&self, probe: Probe<'_>) -> Report {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(token) = probe.write {
            query.append_pair("write", token);
        }
        if let Some((script, style)) = &probe.bundle {
            query
                .append_pair("bundle", script)
                .append_pair("style", style);
        }
        let path_and_query = format!("/isolation/page?{}", query.finish());
        let mut job = self.job(&probe.origin.url(&path_and_query), Desktop);
        // A page of its own for each render (the same key would find the last render's page fresh
        // in the cache and not render at all), on the domain's public host.
        job.page_url = NormalizedUrl::from_stored(format!(
            "https://{}.example.test{path_and_query}&render={}",
            probe.domain,
            uuid::Uuid::new_v4().simple()
        ));
        job.key = CacheKey::new(probe.domain, Desktop, &job.page_url);
        job.tenant_id = probe.tenant.to_owned();
        // Room for the probe's two waits of up to 5 s on a loaded machine (and for a retry within
        // the helper's deadline).
        job.render_timeout_ms = 20_000;
        let rendered = self.run(job).await;
        assert_eq!(rendered.status(), 200);
        let html = rendered.html();
        let report = html
            .split_once(r#"<pre id="report">"#)
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(report, _)| report)
            .unwrap_or_else(|| panic!("the probe wrote no report: {html}"));
        serde_json::from_str(report)
            .unwrap_or_else(|error| panic!("the probe's report does not read ({error}): {report}"))
    }
}

/// What the origins served: the probe page (from the origin it was rendered on), and the bundles
/// (always from the test's own origin).
#[derive(Debug, Clone, Copy)]
struct Counts {
    pages: usize,
    script: usize,
    style: usize,
}

impl Counts {
    fn of(bundles: &TestOrigin, pages: &TestOrigin) -> Counts {
        Counts {
            pages: pages.hits("/isolation/page"),
            script: bundles.hits("/isolation/bundle.js"),
            style: bundles.hits("/isolation/bundle.css"),
        }
    }

    fn minus(&self, before: &Counts) -> Counts {
        Counts {
            pages: self.pages - before.pages,
            script: self.script - before.script,
            style: self.style - before.style,
        }
    }
}

/// Waits until render `n`'s tab is kept for the domain's next render: it is scrubbed and kept a
/// moment after the render is announced, and the next render takes a fresh one until then.
async fn wait_for_a_kept_tab(app: &TestApp, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.metric("kiln_browser_tabs_kept").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "render {n}'s tab was not kept for the domain's next render"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that the probe found nothing left by earlier renders and, if it wrote, that every write
/// took (so that finding nothing means something). `history_length` is what the first page of the
/// test found: a fresh tab's.
fn check(what: &str, report: &Report, token: &str, history_length: u32) {
    assert_eq!(
        report.found,
        Found::nothing(history_length),
        "{what}: the page found what an earlier render left behind"
    );
    assert_eq!(
        report.errors,
        Vec::<String>::new(),
        "{what}: steps of the probe failed"
    );
    let wrote = report
        .wrote
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: the probe did not write"));
    // A page cannot grant itself a permission, but its request for one can leave a decision behind:
    // full Chromium denies the geolocation request and keeps the denial for the origin. The headless
    // shell keeps no decision a page's request causes, so with it there is none to leave behind.
    assert!(
        matches!(wrote.state.geolocation.as_str(), "denied" | "prompt"),
        "{what}: {wrote:?}"
    );
    let expected = Wrote {
        state: Found {
            cookie: format!("kiln_js={token}"),
            // The page's own request, made before it wrote anything.
            cookie_header: String::new(),
            local_storage: vec!["kiln-local".into()],
            session_storage: vec!["kiln-session".into()],
            indexed_db: vec!["kiln-db".into()],
            caches: vec!["kiln-cache".into()],
            service_workers: vec!["/isolation/".into()],
            // No `clients.claim()`: the page that registered the worker stays uncontrolled.
            controlled: false,
            window_name: format!("kiln-window-{token}"),
            history_length,
            geolocation: wrote.state.geolocation.clone(),
        },
        idb_record: Some(token.to_owned()),
        cache_entry: Some(token.to_owned()),
        // Both cookies, the HttpOnly one from the origin's Set-Cookie header included.
        cookie_echo: Some(format!("kiln_http={token}; kiln_js={token}")),
    };
    assert_eq!(
        wrote, &expected,
        "{what}: the page's own writes did not all take, so finding nothing proves little"
    );
}

/// The issue's promise for one domain: between two renders of it, a page sees no cookie, storage,
/// service worker, permission or tab state that an earlier render's page left behind. Every render
/// leaves all of it behind and finds none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_of_one_domain_find_nothing_an_earlier_render_left() {
    let app = spawn_app().await;
    let mut history_length = None;
    for n in 1..=RENDERS {
        let token = format!("render{n}");
        let report = app
            .probe(Probe {
                origin: &app.origin,
                tenant: "tenant-a",
                domain: "shop-a",
                write: Some(&token),
                bundle: None,
            })
            .await;
        let fresh_tab = *history_length.get_or_insert(report.found.history_length);
        check(&format!("render {n} of shop-a"), &report, &token, fresh_tab);
        // The next render takes this one's tab, scrubbed, once it is kept.
        wait_for_a_kept_tab(&app, n).await;
    }
    app.shutdown().await;
}

/// Nothing crosses tenants. Tenant A's domains are on one origin; tenant B's are on another port
/// of the same address, or on tenant A's origin itself (a domain that changed hands, or two
/// tenants' sites on one server); tenant C has an egress grant of its own, so its renders run in
/// browser contexts opened with its own proxy (`Lease::use_proxy`), on either origin. The two
/// origins are one *site* (a site ignores the port), so a browser context shared between renders
/// would show up here: cookies are shared by host whatever the port, and Chromium partitions its
/// HTTP cache by site. Between different hosts, cookies and the HTTP cache are kept apart by
/// Chromium itself, and a shared context could go unnoticed.
///
/// Every render is of a domain of its own, so sharing the HTTP cache between renders of one domain
/// (which the render-cost work may bring) cannot change what this test expects: every page loads
/// tenant A's cacheable bundles, and the origin must serve them to every render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_crosses_tenants_not_even_the_http_cache() {
    let app = spawn_app_with(&[(
        "KILN_ALLOWED_PRIVATE_NETS",
        "127.0.0.1:1-65535@*, 127.0.0.1:1-65535@tenant-c",
    )])
    .await;
    let other = TestOrigin::start().await;
    let bundles = (
        app.origin.url("/isolation/bundle.js"),
        app.origin.url("/isolation/bundle.css"),
    );
    let renders = [
        ("tenant-a", &app.origin),
        ("tenant-b", &other),
        ("tenant-b", &app.origin),
        ("tenant-c", &app.origin),
        ("tenant-c", &other),
    ];
    let mut history_length = None;
    for round in 1..=2 {
        for (i, (tenant, origin)) in renders.iter().enumerate() {
            let domain = format!("{tenant}-site{i}-round{round}");
            let token = format!("{tenant}.{i}.{round}");
            let before = Counts::of(&app.origin, origin);
            let report = app
                .probe(Probe {
                    origin,
                    tenant,
                    domain: &domain,
                    write: Some(&token),
                    bundle: Some(bundles.clone()),
                })
                .await;
            let what = format!("{domain} of {tenant} on {}", origin.base);
            let fresh_tab = *history_length.get_or_insert(report.found.history_length);
            check(&what, &report, &token, fresh_tab);
            assert_eq!(
                report.bundle_runs, 2,
                "{what}: the bundle did not run twice"
            );
            // Each load of the page fetches the bundles once (it loads them twice; a render
            // retried loads the page once more).
            let fetched = Counts::of(&app.origin, origin).minus(&before);
            assert!(fetched.pages >= 1, "{what}: {fetched:?}");
            assert_eq!(
                (fetched.script, fetched.style),
                (fetched.pages, fetched.pages),
                "{what}: every load of the page should have fetched tenant A's script and \
                 stylesheet from the origin once each; fetching fewer means a page had them from \
                 an earlier render's HTTP cache"
            );
        }
    }
    assert!(other.hits("/isolation/page") >= 4);
    app.shutdown().await;
}

/// What renders of one domain share: the HTTP cache (with the renderer process), and nothing
/// else. The pool keeps a render's tab, scrubbed, for the domain's next render, so the domain's
/// cacheable script and stylesheet (the origin lets any cache keep them for an hour) are fetched
/// once for all its renders; within one page the second load of each comes from the cache too.
/// Sharing them is allowed between renders of one domain only: never across domains or tenants
/// (`nothing_crosses_tenants_not_even_the_http_cache`), and cookies and storage are never shared
/// (`renders_of_one_domain_find_nothing_an_earlier_render_left`, whose pages have cookies: then the
/// HTTP cache is cleared too, since responses cached with cookies may have been made for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_of_one_domain_share_their_http_cache() {
    let app = spawn_app().await;
    let bundles = (
        app.origin.url("/isolation/bundle.js"),
        app.origin.url("/isolation/bundle.css"),
    );
    for n in 1..=3 {
        let report = app
            .probe(Probe {
                origin: &app.origin,
                tenant: "tenant-a",
                domain: "shop-a",
                write: None,
                bundle: Some(bundles.clone()),
            })
            .await;
        assert_eq!(report.errors, Vec::<String>::new(), "render {n}");
        assert_eq!(report.bundle_runs, 2, "render {n}: the bundle ran twice");
        let served = Counts::of(&app.origin, &app.origin);
        assert!(served.pages >= n, "{served:?}");
        // A render retried (loading the page once more) may have taken another tab.
        if served.pages == n {
            assert_eq!(
                (served.script, served.style),
                (1, 1),
                "after render {n} of one domain: the domain's cacheable bundles are fetched once \
                 for all its renders, from the tab kept for it"
            );
        }
        wait_for_a_kept_tab(&app, n).await;
    }
    app.shutdown().await;
}
