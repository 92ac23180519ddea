//! Parity checks against real Postgres, Redis and dnsmasq: filing them through the REST API and the
//! web form (queued on the parity queue, counted against the tenant's render budget, refused for
//! pages the tenant may not check), reading them back, and their pages and pictures once a worker
//! has stored a report, as a worker does, through the store. Other tenants find nothing of them.
//! (Running a check needs a worker with Chromium: that is the worker's tests' and `kiln-e2e`'s.)

use crate::helpers::{ApiClient, CNAME_TARGET, TestApp, TestRedis, TestServer, spawn_app};
use base64::Engine;
use bytes::Bytes;
use kiln_control::settings::RenderBudget;
use kiln_core::job::RenderPurpose;
use kiln_core::parity::{
    FieldDiff, ParityCheck, ParityImage, ParityReport, ParityState, TextDiff, VisualDiff,
};
use kiln_core::{DeviceClass, RenderJob};
use kiln_queue::{QueueKind, QueueSettings, RenderQueue};
use kiln_testkit::dns::{DnsRecord, TestDns};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::{Value, json};
use std::time::Duration;

const HOST: &str = "shop.example.com";
const ORIGIN: &str = "http://127.0.0.1:5173";

/// 1×1 PNGs, one per picture, told apart by their colour.
const LIVE_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC";
const SNAPSHOT_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP49esXAAXgAu+YSct+AAAAAElFTkSuQmCC";
const DIFF_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

fn png(base64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .unwrap()
}

/// A dashboard whose DNS (a real dnsmasq, running while the returned server does) points `HOST`'s
/// CNAME at the CNAME target, so that the domain verifies; `configure` changes its settings first.
async fn server_with(
    configure: impl FnOnce(&mut TestApp),
) -> (TestDns, TestApp, TestServer, RenderQueue) {
    let dns = TestDns::start(&[
        DnsRecord::a(CNAME_TARGET, "127.0.0.1"),
        DnsRecord::cname(HOST, CNAME_TARGET),
    ]);
    let mut app = spawn_app().await;
    app.settings.dns_server = Some(dns.addr());
    configure(&mut app);
    let server = TestServer::start(&app).await;
    let queue = RenderQueue::connect(&queue_settings(&app))
        .await
        .expect("failed to connect to the render queues");
    (dns, app, server, queue)
}

fn queue_settings(app: &TestApp) -> QueueSettings {
    QueueSettings::new(
        secrecy::ExposeSecret::expose_secret(&app.settings.queue_redis_url),
        app.settings.redis_prefix.clone(),
        Duration::from_secs(2),
    )
}

/// An account: its session (for the web pages), a client with an API key, and its tenant.
struct Account {
    session: String,
    api: ApiClient,
    tenant: String,
}

async fn account(server: &TestServer, email: &str) -> Account {
    let mut session = ApiClient::new(server);
    let created = session.sign_up(email).await;
    let tenant = created.body["tenant_id"].as_str().unwrap().to_owned();
    let key = session
        .post("/api/v1/api-keys", json!({ "name": "tests" }))
        .await;
    assert_eq!(key.status, 201, "{:?}", key.body);
    Account {
        session: session.session.clone().unwrap(),
        api: session.with_key(key.body["secret"].as_str().unwrap()),
        tenant,
    }
}

/// Adds `HOST` (with `settings`) to the account and verifies it through the test DNS; returns its id.
async fn verified_domain(account: &Account, settings: Value) -> String {
    let added = account
        .api
        .post(
            "/api/v1/domains",
            json!({ "hostname": HOST, "origin": ORIGIN, "settings": settings }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let id = added.body["id"].as_str().unwrap().to_owned();
    let verified = account
        .api
        .post(&format!("/api/v1/domains/{id}/verify"), json!({}))
        .await;
    assert_eq!(verified.body["verified"], true, "{:?}", verified.body);
    id
}

/// Every job waiting on the parity queue, read from the queue's Redis as a worker would get it.
fn parity_jobs(app: &TestApp, redis: &TestRedis) -> Vec<RenderJob> {
    let data = format!(
        "{}:data",
        queue_settings(app).queue_name_of(QueueKind::Parity)
    );
    redis
        .cli(&["HVALS", &data])
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

async fn unfinished(queue: &RenderQueue, kind: QueueKind) -> u64 {
    queue.depth(kind).await.unwrap().unfinished()
}

async fn file(api: &ApiClient, url: &str) -> crate::helpers::ApiResponse {
    api.post("/api/v1/parity", json!({ "url": url })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_filed_through_the_api_is_queued_for_a_worker_and_only_its_tenant_sees_it() {
    let (_dns, app, server, queue) = server_with(|_| {}).await;
    let jane = account(&server, "jane@example.com").await;
    let domain_id = verified_domain(&jane, json!({})).await;

    let filed = jane
        .api
        .post(
            "/api/v1/parity",
            json!({ "url": "https://Shop.Example.com/products/3?b=2&a=1", "device": "mobile" }),
        )
        .await;

    assert_eq!(filed.status, 202, "{:?}", filed.body);
    let id = filed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        filed.headers[LOCATION].to_str().unwrap(),
        format!("/api/v1/parity/{id}")
    );
    assert_eq!(filed.body["state"], "queued");
    assert_eq!(filed.body["device"], "mobile");
    assert_eq!(filed.body["domain_id"], domain_id.as_str());
    assert_eq!(
        filed.body["url"], "https://shop.example.com/products/3?a=1&b=2",
        "normalised as a bot's request is"
    );
    assert_eq!(filed.body["report"], Value::Null);
    assert_eq!(filed.body["images"], Value::Null);

    // One job, on the parity queue and no other, for a worker to run as this check.
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 1);
    assert_eq!(unfinished(&queue, QueueKind::Render).await, 0);
    assert_eq!(unfinished(&queue, QueueKind::Warm).await, 0);
    let jobs = parity_jobs(&app, &app.redis);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(
        job.purpose,
        RenderPurpose::Parity {
            check_id: id.clone()
        }
    );
    assert_eq!(job.purpose.as_str(), "parity");
    assert_eq!(job.tenant_id, jane.tenant);
    assert_eq!(job.device, DeviceClass::Mobile);
    assert_eq!(
        job.page_url.as_str(),
        "https://shop.example.com/products/3?a=1&b=2"
    );
    assert_eq!(job.render_url, format!("{ORIGIN}/products/3?a=1&b=2"));

    // Stored for the worker, and holding one place of the tenant's render budget under its name.
    let stored = app
        .app
        .store
        .render_log()
        .parity_check(&jane.tenant, &id)
        .await
        .unwrap()
        .expect("the check is stored before its job is queued");
    assert_eq!(stored.state, ParityState::Queued);
    assert_eq!(stored.domain_id, domain_id);
    assert_eq!(
        app.app
            .store
            .pages()
            .renders_under_way(&jane.tenant)
            .await
            .unwrap(),
        1
    );
    app.app
        .store
        .pages()
        .release_render_place(&jane.tenant, &format!("parity:{id}"))
        .await
        .unwrap();
    assert_eq!(
        app.app
            .store
            .pages()
            .renders_under_way(&jane.tenant)
            .await
            .unwrap(),
        0,
        "the place is named parity:<check id>, for the worker to give back"
    );

    let read = jane.api.get(&format!("/api/v1/parity/{id}")).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body, filed.body);
    let listed = jane.api.get("/api/v1/parity").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["checks"], json!([filed.body]));
    let second = file(&jane.api, "https://shop.example.com/").await;
    assert_eq!(second.status, 202, "{:?}", second.body);
    let listed = jane.api.get("/api/v1/parity?limit=1").await;
    assert_eq!(
        listed.body["checks"][0]["id"], second.body["id"],
        "newest first"
    );
    assert_eq!(listed.body["checks"].as_array().unwrap().len(), 1);
    for limit in ["0", "101", "x", ""] {
        let refused = jane.api.get(&format!("/api/v1/parity?limit={limit}")).await;
        assert_eq!(refused.status, 400, "limit={limit}: {:?}", refused.body);
    }
    for path in [
        "/api/v1/parity/not-an-id",
        "/api/v1/parity/0190a0b0-0000-7000-8000-000000000001",
        &format!("/api/v1/parity/{id}/images/diff"),
        &format!("/api/v1/parity/{id}/images/other"),
    ] {
        let missing = jane.api.get(path).await;
        assert_eq!(missing.status, 404, "{path}: {:?}", missing.body);
        assert_eq!(missing.code(), "not_found");
    }

    // Another tenant: the check is not there, its pictures neither, and Jane's pages are not
    // Bob's to check.
    let bob = account(&server, "bob@example.com").await;
    for path in [
        format!("/api/v1/parity/{id}"),
        format!("/api/v1/parity/{id}/images/live"),
    ] {
        let hidden = bob.api.get(&path).await;
        assert_eq!(hidden.status, 404, "{path}: {:?}", hidden.body);
        assert_eq!(hidden.message(), "no such parity check");
    }
    assert_eq!(
        bob.api.get("/api/v1/parity").await.body,
        json!({ "checks": [] })
    );
    let foreign = file(&bob.api, "https://shop.example.com/products/3").await;
    assert_eq!(foreign.status, 422, "{:?}", foreign.body);
    assert!(
        foreign
            .message()
            .contains("shop.example.com is not one of this account's domains"),
        "{:?}",
        foreign.body
    );
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_the_tenant_may_not_check_are_refused_and_nothing_is_queued() {
    let (_dns, app, server, queue) = server_with(|_| {}).await;
    let jane = account(&server, "jane@example.com").await;
    verified_domain(&jane, json!({ "exclude_paths": ["/account/*"] })).await;
    let unverified = jane
        .api
        .post(
            "/api/v1/domains",
            json!({ "hostname": "blog.example.com", "origin": ORIGIN }),
        )
        .await;
    assert_eq!(unverified.status, 201, "{:?}", unverified.body);

    let cases: &[(Value, u16, &str, &str)] = &[
        (
            json!({ "url": "https://blog.example.com/" }),
            409,
            "domain_not_verified",
            "blog.example.com is not verified yet",
        ),
        (
            json!({ "url": "https://shop.example.com/account/orders" }),
            422,
            "invalid_body",
            "the domain's include_paths/exclude_paths leave it out",
        ),
        (
            json!({ "url": "https://elsewhere.example/" }),
            422,
            "invalid_body",
            "elsewhere.example is not one of this account's domains",
        ),
        (
            json!({ "url": "shop.example.com/products/3" }),
            422,
            "invalid_body",
            "not an absolute URL",
        ),
        (
            json!({ "url": "ftp://shop.example.com/" }),
            422,
            "invalid_body",
            "the scheme `ftp` is not http or https",
        ),
        (json!({}), 422, "invalid_body", "missing field `url`"),
        (
            json!({ "url": "https://shop.example.com/", "device": "tablet" }),
            422,
            "invalid_body",
            "unknown variant `tablet`",
        ),
        (
            json!({ "url": "https://shop.example.com/", "when": "now" }),
            422,
            "invalid_body",
            "unknown field `when`",
        ),
    ];
    for (body, status, code, message) in cases {
        let refused = jane.api.post("/api/v1/parity", body.clone()).await;
        assert_eq!(refused.status, *status, "{body}: {:?}", refused.body);
        assert_eq!(refused.code(), *code, "{body}: {:?}", refused.body);
        assert!(
            refused.message().contains(message),
            "{body}: {:?}",
            refused.body
        );
    }
    let not_json = jane
        .api
        .raw(
            jane.api
                .request(reqwest::Method::POST, "/api/v1/parity")
                .header("content-type", "text/plain")
                .body("https://shop.example.com/"),
        )
        .await;
    assert_eq!(not_json.status, 415, "{:?}", not_json.body);

    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 0);
    assert!(parity_jobs(&app, &app.redis).is_empty());
    assert_eq!(
        jane.api.get("/api/v1/parity").await.body,
        json!({ "checks": [] })
    );
    assert_eq!(
        app.app
            .store
            .pages()
            .renders_under_way(&jane.tenant)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_render_budget_refuses_checks_with_retry_after_and_queues_nothing() {
    let (_dns, app, server, queue) = server_with(|app| {
        app.settings.render_budget = RenderBudget {
            concurrent: 1,
            per_minute: 0,
        };
    })
    .await;
    let jane = account(&server, "jane@example.com").await;
    let domain_id = verified_domain(&jane, json!({})).await;

    let first = file(&jane.api, "https://shop.example.com/").await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let refused = file(&jane.api, "https://shop.example.com/pricing").await;
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.code(), "render_budget_exhausted");
    let retry_after: u64 = refused.headers[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The first check's place lapses by itself after 4 render timeouts (10 s each by default) and
    // 2 minutes of queueing, unless a worker gives it back first.
    assert!(
        (150..=160).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert!(
        refused
            .message()
            .ends_with(&format!("try again in {retry_after} s")),
        "{:?}",
        refused.body
    );
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 1);
    let listed = jane.api.get("/api/v1/parity").await;
    assert_eq!(listed.body["checks"].as_array().unwrap().len(), 1);

    // The web form says the same, next to the URL.
    let web = WebSession::new(&server, &jane.session);
    let form = web.get(&format!("/domains/{domain_id}/parity")).await;
    let page = web
        .post(
            &format!("/domains/{domain_id}/parity"),
            &[
                ("csrf", &csrf_of(&form.2)),
                ("url", "https://shop.example.com/pricing"),
                ("device", "desktop"),
            ],
        )
        .await;
    assert_eq!(page.0, StatusCode::TOO_MANY_REQUESTS, "{}", page.2);
    assert!(page.1.contains_key(RETRY_AFTER));
    assert!(
        page.2.contains("The account&#39;s render budget is in use"),
        "{}",
        page.2
    );
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 1);

    // A worker gives the place back when the check ends: then there is room again.
    let id = first.body["id"].as_str().unwrap();
    app.app
        .store
        .pages()
        .release_render_place(&jane.tenant, &format!("parity:{id}"))
        .await
        .unwrap();
    let again = file(&jane.api, "https://shop.example.com/pricing").await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_cannot_be_queued_is_recorded_failed_and_gives_its_place_back() {
    let mut queue_redis = TestRedis::start();
    let queue_url = queue_redis.url();
    let (_dns, app, server, _queue) = server_with(move |app| {
        app.settings.queue_redis_url = queue_url.into();
    })
    .await;
    let jane = account(&server, "jane@example.com").await;
    verified_domain(&jane, json!({})).await;
    queue_redis.stop();

    let refused = file(&jane.api, "https://shop.example.com/").await;

    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.code(), "unavailable");
    assert!(
        refused
            .message()
            .starts_with("the parity queue is unavailable"),
        "{:?}",
        refused.body
    );
    let listed = jane.api.get("/api/v1/parity").await;
    let checks = listed.body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{:?}", listed.body);
    assert_eq!(checks[0]["state"], "failed");
    assert!(
        checks[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("the check could not be queued: "),
        "{}",
        checks[0]
    );
    assert!(checks[0]["finished_at"].is_string());
    assert_eq!(
        app.app
            .store
            .pages()
            .renders_under_way(&jane.tenant)
            .await
            .unwrap(),
        0
    );
}

// ---- the web pages ------------------------------------------------------------------------------

/// A logged-in browser without a browser: sends the session cookie, does not follow redirects.
struct WebSession {
    base: String,
    cookie: String,
    client: reqwest::Client,
}

type Page = (StatusCode, reqwest::header::HeaderMap, String);

impl WebSession {
    fn new(server: &TestServer, session: &str) -> Self {
        WebSession {
            base: server.base.clone(),
            cookie: format!("kiln_session={session}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        request
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("the request failed")
    }

    async fn get(&self, path: &str) -> Page {
        let response = self
            .send(self.client.get(format!("{}{path}", self.base)))
            .await;
        (
            response.status(),
            response.headers().clone(),
            response.text().await.unwrap(),
        )
    }

    async fn get_bytes(&self, path: &str) -> (StatusCode, Option<String>, Bytes) {
        let response = self
            .send(self.client.get(format!("{}{path}", self.base)))
            .await;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        (
            response.status(),
            content_type,
            response.bytes().await.unwrap(),
        )
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .send(self.client.post(format!("{}{path}", self.base)).form(form))
            .await;
        (
            response.status(),
            response.headers().clone(),
            response.text().await.unwrap(),
        )
    }
}

/// The value of a page's first `name="csrf"` field.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_of_a_check_being_checked_says_so_and_refreshes_itself() {
    let (_dns, app, server, queue) = server_with(|_| {}).await;
    let jane = account(&server, "jane@example.com").await;
    let domain_id = verified_domain(&jane, json!({})).await;
    let web = WebSession::new(&server, &jane.session);

    // "View as bot" leads to the compare tab.
    let preview = web.get(&format!("/domains/{domain_id}/preview")).await;
    assert_eq!(preview.0, StatusCode::OK);
    assert!(
        preview.2.contains(&format!(
            r#"<a href="/domains/{domain_id}/parity">Compare with people</a>"#
        )),
        "{}",
        preview.2
    );
    let tab = web.get(&format!("/domains/{domain_id}/parity")).await;
    assert_eq!(tab.0, StatusCode::OK, "{}", tab.2);
    assert!(
        tab.2
            .contains("No checks of shop.example.com in the past week.")
    );
    let csrf = csrf_of(&tab.2);

    // A URL of another host is refused next to the field; a form without the token is refused.
    let elsewhere = web
        .post(
            &format!("/domains/{domain_id}/parity"),
            &[
                ("csrf", &csrf),
                ("url", "https://elsewhere.example/"),
                ("device", "desktop"),
            ],
        )
        .await;
    assert_eq!(elsewhere.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        elsewhere
            .2
            .contains("Give an absolute URL on shop.example.com"),
        "{}",
        elsewhere.2
    );
    let forged = web
        .post(
            &format!("/domains/{domain_id}/parity"),
            &[("url", "https://shop.example.com/"), ("device", "desktop")],
        )
        .await;
    assert_eq!(forged.0, StatusCode::FORBIDDEN);
    assert_eq!(unfinished(&queue, QueueKind::Parity).await, 0);

    let filed = web
        .post(
            &format!("/domains/{domain_id}/parity"),
            &[
                ("csrf", &csrf),
                ("url", "https://shop.example.com/pricing"),
                ("device", "mobile"),
            ],
        )
        .await;
    assert_eq!(filed.0, StatusCode::SEE_OTHER, "{}", filed.2);
    let location = filed.1[LOCATION].to_str().unwrap().to_owned();
    let prefix = format!("/domains/{domain_id}/parity/");
    let id = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("redirected to {location}"))
        .to_owned();
    let jobs = parity_jobs(&app, &app.redis);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].purpose,
        RenderPurpose::Parity {
            check_id: id.clone()
        }
    );
    assert_eq!(jobs[0].device, DeviceClass::Mobile);

    let page = web.get(&location).await;
    assert_eq!(page.0, StatusCode::OK, "{}", page.2);
    let html = &page.2;
    assert!(html.contains("Checking…"), "{html}");
    assert!(
        html.contains(&format!(
            r#"id="parity-check" data-status-url="/api/v1/parity/{id}" data-state="queued""#
        )),
        "the script polls the check: {html}"
    );
    assert!(html.contains("https://shop.example.com/pricing"));
    assert!(html.contains("<dd>Phone</dd>"), "{html}");
    assert!(!html.contains("<img"), "no pictures before they exist");
    let tab = web.get(&format!("/domains/{domain_id}/parity")).await;
    assert!(
        tab.2.contains(&format!(
            r#"<a href="{location}">https://shop.example.com/pricing</a>"#
        )),
        "{}",
        tab.2
    );
    assert!(
        tab.2
            .contains(r#"<span class="badge pending">queued</span>"#),
        "{}",
        tab.2
    );

    // A worker takes it: still being checked. It fails: the page says why, and stops waiting.
    let mut check = app
        .app
        .store
        .render_log()
        .parity_check(&jane.tenant, &id)
        .await
        .unwrap()
        .unwrap();
    check.state = ParityState::Running;
    app.app
        .store
        .render_log()
        .put_parity_check(&check)
        .await
        .unwrap();
    let page = web.get(&location).await;
    assert!(page.2.contains(r#"data-state="running""#), "{}", page.2);
    assert!(page.2.contains("Checking…"));
    check.state = ParityState::Failed;
    check.error = Some("the live page answered 500 <Internal>".to_owned());
    app.app
        .store
        .render_log()
        .put_parity_check(&check)
        .await
        .unwrap();
    let page = web.get(&location).await;
    assert!(!page.2.contains("Checking…"), "{}", page.2);
    assert!(
        page.2
            .contains("The check failed: the live page answered 500 &#60;Internal&#62;"),
        "{}",
        page.2
    );
}

/// Stores `check`'s report and pictures as a worker does: the pictures first, then the check, done.
async fn complete_as_a_worker(app: &TestApp, tenant: &str, id: &str) -> ParityCheck {
    for (image, picture) in [
        (ParityImage::Live, LIVE_PNG),
        (ParityImage::Snapshot, SNAPSHOT_PNG),
        (ParityImage::Diff, DIFF_PNG),
    ] {
        app.app
            .store
            .render_log()
            .put_parity_image(tenant, id, image, Bytes::from(png(picture)))
            .await
            .unwrap();
    }
    let mut check = app
        .app
        .store
        .render_log()
        .parity_check(tenant, id)
        .await
        .unwrap()
        .unwrap();
    check.state = ParityState::Done;
    check.finished_at = Some(kiln_core::unix_millis_now());
    check.live_ms = Some(1240);
    check.snapshot_ms = Some(860);
    check.report = Some(ParityReport {
        visual: VisualDiff {
            width: 1280,
            height: 2000,
            differing_pixels: 61_440,
            score: 0.024,
            live_height: 2000,
            snapshot_height: 1800,
        },
        text: TextDiff {
            missing: vec![
                "Add to basket".to_owned(),
                "<script>alert(1)</script> Only 3 left".to_owned(),
            ],
            extra: vec!["Loading prices…".to_owned()],
            missing_total: 7,
            extra_total: 1,
            live_chars: 5400,
            snapshot_chars: 5100,
        },
        fields: vec![
            FieldDiff {
                field: "title".to_owned(),
                only_live: vec!["Blue kettle – Shop".to_owned()],
                only_snapshot: vec!["Shop".to_owned()],
            },
            FieldDiff {
                field: "json_ld".to_owned(),
                only_live: vec![r#"{"@type":"Product","name":"Blue kettle"}"#.to_owned()],
                only_snapshot: Vec::new(),
            },
        ],
    });
    app.app
        .store
        .render_log()
        .put_parity_check(&check)
        .await
        .unwrap();
    check
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_of_a_done_check_shows_the_score_the_pictures_and_what_bots_miss() {
    let (_dns, app, server, _queue) = server_with(|_| {}).await;
    let jane = account(&server, "jane@example.com").await;
    let domain_id = verified_domain(&jane, json!({})).await;
    let filed = file(&jane.api, "https://shop.example.com/kettles/blue").await;
    assert_eq!(filed.status, 202, "{:?}", filed.body);
    let id = filed.body["id"].as_str().unwrap().to_owned();
    complete_as_a_worker(&app, &jane.tenant, &id).await;

    let web = WebSession::new(&server, &jane.session);
    let page = web.get(&format!("/domains/{domain_id}/parity/{id}")).await;
    assert_eq!(page.0, StatusCode::OK, "{}", page.2);
    let html = &page.2;
    assert!(!html.contains("Checking…"), "{html}");
    // The score: a big percentage, amber (between 0.5 % and 5 %), on its gauge.
    assert!(html.contains(r#"<div class="score fair">"#), "{html}");
    assert!(
        html.contains(r#"<strong class="score-number">2.4 %</strong>"#),
        "{html}"
    );
    assert!(html.contains("Small differences"));
    assert!(html.contains(r#"<svg class="gauge fair""#), "{html}");
    assert!(
        html.contains(r#"<rect class="bar" x="0" y="2" width="142.2""#),
        "{html}"
    );
    assert!(html.contains("(61,440 of 2,560,000 pixels)"), "{html}");
    // The three pictures, side by side, each linking to the full size.
    let base = format!("/domains/{domain_id}/parity/{id}");
    for image in ["live", "snapshot", "diff"] {
        assert!(
            html.contains(&format!(
                r#"<a href="{base}/{image}.png" title="Open the full-size picture"><img src="{base}/{image}.png""#
            )),
            "{image}: {html}"
        );
    }
    // The text, escaped, with how much more there is; the fields that differ.
    assert!(html.contains("<h3>Text bots miss (7)</h3>"), "{html}");
    assert!(html.contains("<li>Add to basket</li>"));
    assert!(
        html.contains("<li>&#60;script&#62;alert(1)&#60;/script&#62; Only 3 left</li>"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("and 5 more"));
    assert!(html.contains("<li>Loading prices…</li>"));
    assert!(html.contains(r#"<th scope="row">Title</th>"#));
    assert!(html.contains("<li>Blue kettle – Shop</li>"));
    assert!(html.contains(r#"<th scope="row">JSON-LD</th>"#));
    assert!(html.contains("&#34;Blue kettle&#34;"), "{html}");
    assert!(
        html.contains("live page 1240 ms, snapshot 860 ms"),
        "{html}"
    );
    // The compare tab lists it with its score.
    let tab = web.get(&format!("/domains/{domain_id}/parity")).await;
    assert!(
        tab.2.contains(r#"<span class="score-cell fair">"#),
        "{}",
        tab.2
    );
    assert!(tab.2.contains("2.4 %</span>"), "{}", tab.2);

    // The pictures, to the owner's session and API key.
    for (image, picture) in [
        ("live", LIVE_PNG),
        ("snapshot", SNAPSHOT_PNG),
        ("diff", DIFF_PNG),
    ] {
        let (status, content_type, body) = web.get_bytes(&format!("{base}/{image}.png")).await;
        assert_eq!(status, StatusCode::OK, "{image}");
        assert_eq!(content_type.as_deref(), Some("image/png"));
        assert_eq!(body, png(picture), "{image}");
        let response = jane
            .api
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/parity/{id}/images/{image}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "image/png");
        assert_eq!(response.bytes().await.unwrap(), png(picture));
    }
    let (status, _, _) = web.get_bytes(&format!("{base}/other.png")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let done = jane.api.get(&format!("/api/v1/parity/{id}")).await;
    assert_eq!(done.body["state"], "done");
    assert_eq!(done.body["report"]["visual"]["score"], 0.024);
    assert_eq!(done.body["report"]["text"]["missing_total"], 7);
    assert_eq!(done.body["report"]["fields"][0]["field"], "title");
    assert_eq!(
        done.body["images"]["snapshot"],
        format!("/api/v1/parity/{id}/images/snapshot")
    );

    // Another tenant finds neither the page nor the pictures, by Jane's domain or its own.
    let bob = account(&server, "bob@example.com").await;
    let bobs_domain = bob
        .api
        .post(
            "/api/v1/domains",
            json!({ "hostname": "bob.example.com", "origin": ORIGIN }),
        )
        .await;
    assert_eq!(bobs_domain.status, 201, "{:?}", bobs_domain.body);
    let bobs_domain = bobs_domain.body["id"].as_str().unwrap();
    let bob_web = WebSession::new(&server, &bob.session);
    for domain in [domain_id.as_str(), bobs_domain] {
        let page = bob_web.get(&format!("/domains/{domain}/parity/{id}")).await;
        assert_eq!(page.0, StatusCode::NOT_FOUND, "{domain}: {}", page.2);
        let (status, content_type, body) = bob_web
            .get_bytes(&format!("/domains/{domain}/parity/{id}/live.png"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{domain}");
        assert_ne!(content_type.as_deref(), Some("image/png"));
        assert_ne!(body, png(LIVE_PNG));
    }
    let hidden = bob
        .api
        .get(&format!("/api/v1/parity/{id}/images/live"))
        .await;
    assert_eq!(hidden.status, 404);
    // Nor does a check of another of Jane's domains show under this one.
    let other = jane
        .api
        .post(
            "/api/v1/domains",
            json!({ "hostname": "blog.example.com", "origin": ORIGIN }),
        )
        .await;
    let other = other.body["id"].as_str().unwrap();
    let page = web.get(&format!("/domains/{other}/parity/{id}")).await;
    assert_eq!(page.0, StatusCode::NOT_FOUND);
}
