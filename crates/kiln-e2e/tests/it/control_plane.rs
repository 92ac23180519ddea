//! The control plane driving the whole platform: what a customer does through the dashboard's API
//! (sign up, add and verify a domain, change its settings, warm, preview, purge, read the render
//! log and usage) and what bots then get through the real edge, gateway and worker.

use crate::helpers::{
    AUDIT_TOOL, CHROME, CNAME_TARGET, GOOGLEBOT, GOOGLEBOT_SMARTPHONE, PASSWORD, TestOrigin,
    TestPlatform, cache_status, first_showing, gzip, session_cookie, utc_today,
};
use kiln_testkit::dns::DnsRecord;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How quickly a change made through the API must reach the gateways (the API documents "within a
/// second" for domain changes).
const PROPAGATION: Duration = Duration::from_secs(1);

/// What only the demo's JavaScript produces on `/products/3`: the shell has an empty `#app`.
const PRODUCT_3_H1: &str = "<h1>Stoneware Glaze Set</h1>";

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_takes_a_domain_from_nothing_to_renders_for_bots() {
    let platform = TestPlatform::start().await;
    let host = "shop.e2e.test";

    // Sign up; the session cookie is what creates API keys.
    let signed_up = platform.api.sign_up("owner@shop.example", PASSWORD).await;
    assert_eq!(signed_up.status(), StatusCode::CREATED);
    let cookie = session_cookie(&signed_up).expect("sign-up sets kiln_session");
    let created = platform.api.create_key(&cookie, "deploy script").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let key: Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let secret = str_of(&key, "secret");
    assert!(secret.starts_with(str_of(&key, "prefix")), "{key}");
    let tenant = platform.api.with_key(secret);

    // Add the domain: it starts unverified, with instructions for proving ownership.
    let (status, domain) = tenant
        .add_domain(&json!({ "hostname": host, "origin": platform.site.base(), "settings": { "bot_rate_per_second": 0 } }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{domain}");
    let id = str_of(&domain, "id").to_owned();
    assert_eq!(domain["verified"], false, "{domain}");
    assert_eq!(domain["verification"]["status"], "pending", "{domain}");
    assert_eq!(domain["verification"]["cname_target"], CNAME_TARGET);
    assert_eq!(
        domain["verification"]["txt_record"]["name"],
        format!("_kiln-challenge.{host}")
    );

    // Unverified, the gateway knows the host (421 until the publication reaches it) but proxies its
    // bots to the origin: the origin's shell, no render.
    let (_, proxied) = first_showing(
        Instant::now(),
        || platform.get(host, "/products/3", GOOGLEBOT),
        |r| r.status() != StatusCode::MISDIRECTED_REQUEST,
    )
    .await;
    assert_eq!(proxied.status(), StatusCode::OK);
    assert_eq!(cache_status(&proxied), "", "{:?}", proxied.headers());
    assert_eq!(
        proxied.text().await.unwrap(),
        platform.stack.origin_page("/products/3").await,
        "an unverified domain's bots get the origin's bytes"
    );
    assert_eq!(
        platform.site.hits("/products/3"),
        1,
        "one proxied request, no render"
    );

    // Without the DNS record, the check fails and says so.
    let (status, checked) = tenant.verify(&id).await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert_eq!(checked["verified"], false, "{checked}");
    assert!(
        !checked["verification"]["last_check"].is_null(),
        "{checked}"
    );

    // Nothing of an unverified domain is rendered on request either.
    let url = format!("http://{host}/products/3");
    for (what, (status, body)) in [
        ("render", tenant.render(&[("url", &url)]).await),
        ("warm", tenant.warm(&json!({ "urls": [url] })).await),
    ] {
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {body}");
        assert_eq!(
            body["error"]["code"], "domain_not_verified",
            "{what}: {body}"
        );
    }
    assert_eq!(platform.site.hits("/products/3"), 1);

    // With the TXT record, it passes, and within a second bots get renders.
    platform.publish_challenge(&domain);
    let (status, verified) = tenant.verify(&id).await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["verification"]["status"], "verified", "{verified}");
    let (sent, first) = first_showing(
        since,
        || platform.get(host, "/products/3", GOOGLEBOT),
        |r| r.headers().contains_key("x-kiln-cache"),
    )
    .await;
    assert!(
        sent <= PROPAGATION,
        "the verification took {sent:?} to reach the gateway"
    );
    assert_eq!(cache_status(&first), "MISS");
    let rendered = first.text().await.unwrap();
    assert!(rendered.contains(PRODUCT_3_H1), "{rendered}");
    let (cache, again) = platform.bot_get(host, "/products/3").await;
    assert_eq!(cache, "HIT");
    assert_eq!(again, rendered);

    // The verification is kept, not just published.
    let (status, stored) = tenant.domain(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["verified"], true, "{stored}");

    // Every endpoint a script like this one uses is in the published API description.
    let openapi = platform.api.openapi().await;
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/api-keys",
        "/api/v1/domains",
        "/api/v1/domains/{id}",
        "/api/v1/domains/{id}/verify",
        "/api/v1/cache",
        "/api/v1/cache/purge",
        "/api/v1/cache/warm",
        "/api/v1/cache/warm/{id}",
        "/api/v1/render",
        "/api/v1/renders",
        "/api/v1/usage",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changes_reach_the_gateway_within_a_second() {
    let platform = TestPlatform::start().await;
    let host = "settings.e2e.test";
    let tenant = platform.api.tenant("owner@settings.example").await;
    let domain = platform.verified_domain(&tenant, host, json!({})).await;
    let id = str_of(&domain, "id");

    // Cached before the change, so that every poll below is answered at once.
    let (cache, _) = platform.first_bot_render(host, "/about").await;
    assert_eq!(cache, "MISS");
    assert_eq!(platform.bot_get(host, "/about").await.0, "HIT");
    assert_eq!(platform.bot_get(host, "/products/2").await.0, "MISS");
    let audit = platform
        .get(host, "/products/2", AUDIT_TOOL)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cache_status(&audit),
        "",
        "the edge takes the audit tool for a person"
    );

    // Excluding a path: its bots are proxied from then on.
    let (status, changed) = tenant
        .update_domain(id, &json!({ "settings": { "exclude_paths": ["/about*"] } }))
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["settings"]["exclude_paths"], json!(["/about*"]));
    let (sent, proxied) = first_showing(
        since,
        || platform.get(host, "/about", GOOGLEBOT),
        |r| !r.headers().contains_key("x-kiln-cache"),
    )
    .await;
    assert!(
        sent <= PROPAGATION,
        "exclude_paths took {sent:?} to reach the gateway"
    );
    assert_eq!(proxied.status(), StatusCode::OK);
    assert_eq!(
        proxied.text().await.unwrap(),
        platform.stack.origin_page("/about").await
    );
    assert_eq!(
        platform.bot_get(host, "/products/2").await.0,
        "HIT",
        "other paths are still rendered"
    );

    // A User-Agent pattern of the domain's own: the audit tool now gets what bots get.
    let (status, changed) = tenant
        .update_domain(
            id,
            &json!({ "settings": { "bot_user_agents": ["acmeseoaudit"] } }),
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["settings"]["bot_user_agents"],
        json!(["acmeseoaudit"])
    );
    assert_eq!(
        changed["settings"]["exclude_paths"],
        json!(["/about*"]),
        "a PATCH keeps the settings it leaves out"
    );
    let (sent, as_bot) = first_showing(
        since,
        || platform.get(host, "/products/2", AUDIT_TOOL),
        |r| r.headers().contains_key("x-kiln-cache"),
    )
    .await;
    assert!(
        sent <= PROPAGATION,
        "bot_user_agents took {sent:?} to reach the gateway"
    );
    assert_eq!(cache_status(&as_bot), "HIT");
    assert!(as_bot.text().await.unwrap().contains("<h1>"));

    // A new origin: people and renders go there from then on.
    let moved = TestOrigin::start(format!("http://127.0.0.1:{}", platform.stack.demo_port)).await;
    let (status, changed) = tenant
        .update_domain(id, &json!({ "origin": moved.base() }))
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["origin"], moved.base());
    let (sent, _) = first_showing(
        since,
        || platform.get(host, "/products/1", CHROME),
        |_| moved.hits("/products/1") > 0,
    )
    .await;
    assert!(
        sent <= PROPAGATION,
        "the origin change took {sent:?} to reach the gateway"
    );
    let before = platform.site.hits("/products/5");
    assert_eq!(platform.bot_get(host, "/products/5").await.0, "MISS");
    assert_eq!(
        moved.hits("/products/5"),
        1,
        "the worker renders from the new origin"
    );
    assert_eq!(platform.site.hits("/products/5"), before);

    // Usage shows the one request the path rule spared a render.
    let usage = tenant
        .poll(
            || tenant.usage(id),
            |usage| usage["days"][0]["passthroughs"].as_i64() >= Some(1),
        )
        .await;
    assert_eq!(usage["days"][0]["passthroughs"], 1, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_from_a_sitemap_index_renders_each_page_once_and_bots_hit() {
    let platform = TestPlatform::start().await;
    let host = "sitemap.e2e.test";
    let tenant = platform.api.tenant("owner@sitemap.example").await;
    // One render per URL: phones get the desktop render.
    let domain = platform
        .verified_domain(&tenant, host, json!({ "device_variants": false }))
        .await;
    let id = str_of(&domain, "id");

    // An index pointing at a gzipped child and a plain one; /products/3 is listed in both, and the
    // plain one also lists a page of another site, which must never be rendered.
    let site = &platform.site;
    site.serve(
        "/sitemap.xml",
        StatusCode::OK,
        "application/xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>http://{host}/sitemaps/products.xml.gz</loc></sitemap>
  <sitemap><loc>http://{host}/sitemaps/pages.xml</loc></sitemap>
</sitemapindex>"#
        )
        .into_bytes(),
    );
    site.serve(
        "/sitemaps/products.xml.gz",
        StatusCode::OK,
        "application/gzip",
        gzip(&format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://{host}/products/1</loc></url>
  <url><loc>http://{host}/products/2</loc></url>
  <url><loc>http://{host}/products/3</loc></url>
</urlset>"#
        )),
    );
    site.serve(
        "/sitemaps/pages.xml",
        StatusCode::OK,
        "application/xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://{host}/</loc></url>
  <url><loc>http://{host}/products/3</loc></url>
  <url><loc>http://elsewhere.example/products/4</loc></url>
</urlset>"#
        )
        .into_bytes(),
    );
    let paths = ["/", "/products/1", "/products/2", "/products/3"];

    let (status, job) = tenant
        .warm(&json!({ "domain_id": id, "sitemap_url": format!("http://{host}/sitemap.xml") }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "collecting", "{job}");
    let job = tenant.finished_warm(str_of(&job, "id")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        job["total"],
        paths.len(),
        "distinct URLs × one device: {job}"
    );
    assert_eq!(job["done"], paths.len(), "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    assert_eq!(job["queued"], 0, "{job}");
    let skipped: Vec<&str> = job["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("{job}"))
        .iter()
        .map(|s| str_of(s, "url"))
        .collect();
    assert_eq!(skipped, ["http://elsewhere.example/products/4"], "{job}");

    for sitemap in [
        "/sitemap.xml",
        "/sitemaps/products.xml.gz",
        "/sitemaps/pages.xml",
    ] {
        assert_eq!(site.hits(sitemap), 1, "{sitemap} read once");
    }
    for path in paths {
        assert_eq!(site.hits(path), 1, "{path} rendered exactly once");
    }
    assert_eq!(
        site.hits("/products/4"),
        0,
        "the other site's page was not rendered"
    );

    let listed = tenant.cached_pages(id).await;
    let expected: Vec<(String, String)> = paths
        .iter()
        .map(|p| (format!("http://{host}{p}"), "desktop".to_owned()))
        .collect();
    assert_eq!(listed, expected);

    // The listing pages with a cursor, and the pages add up to the same set.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut query = vec![("domain_id", id), ("limit", "3")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let (status, page) = tenant.cache(&query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let pages = page["pages"].as_array().unwrap();
        assert!(pages.len() <= 3, "{page}");
        for listed in pages {
            assert_eq!(listed["status"], 200, "{listed}");
            assert!(listed["bytes"].as_u64() > Some(0), "{listed}");
            paged.push(str_of(listed, "url").to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the listing never ended");
    let (status, products) = tenant
        .cache(&[("domain_id", id), ("prefix", "/products/")])
        .await;
    assert_eq!(status, StatusCode::OK, "{products}");
    assert_eq!(products["pages"].as_array().unwrap().len(), 3, "{products}");
    paged.sort();
    let urls: Vec<String> = expected.iter().map(|(url, _)| url.clone()).collect();
    assert_eq!(paged, urls);

    for path in paths {
        for bot in [GOOGLEBOT, GOOGLEBOT_SMARTPHONE] {
            let response = platform.get(host, path, bot).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(cache_status(&response), "HIT", "{path} for {bot}");
            assert!(response.text().await.unwrap().contains("<h1"), "{path}");
        }
        assert_eq!(site.hits(path), 1, "a hit never reaches the origin: {path}");
    }

    // A sitemap URL the origin answers with its HTML shell fails the job, saying why.
    let (status, job) = tenant
        .warm(&json!({ "domain_id": id, "sitemap_url": format!("http://{host}/no-sitemap.xml") }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = tenant.finished_warm(str_of(&job, "id")).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["total"], 0, "{job}");
    assert!(str_of(&job, "error").contains("not a sitemap"), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_counts_a_page_that_fails_to_render_as_failed() {
    let platform = TestPlatform::start().await;
    let host = "failing.e2e.test";
    let tenant = platform.api.tenant("owner@failing.example").await;
    let domain = platform.verified_domain(&tenant, host, json!({})).await;
    let id = str_of(&domain, "id");
    platform.site.serve(
        "/broken",
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/html; charset=utf-8",
        b"<!doctype html><title>Oops</title><h1>Internal error</h1>".to_vec(),
    );

    let urls = [
        format!("http://{host}/products/1"),
        format!("http://{host}/broken"),
    ];
    let (status, job) = tenant.warm(&json!({ "urls": urls })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    // Device variants are on by default: each URL for desktop and for mobile.
    assert_eq!(job["total"], 4, "{job}");
    let job = tenant.finished_warm(str_of(&job, "id")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["done"], 2, "{job}");
    assert_eq!(job["failed"], 2, "{job}");
    assert_eq!(job["queued"], 0, "{job}");
    assert_eq!(
        platform.site.hits("/broken"),
        2,
        "one try per device: an origin's 500 is not retried"
    );

    assert_eq!(
        tenant.cached_pages(id).await,
        [
            (urls[0].clone(), "desktop".to_owned()),
            (urls[0].clone(), "mobile".to_owned())
        ],
        "nothing is stored for the failing page"
    );

    let log = tenant
        .poll(
            || tenant.renders(id),
            |log| log["renders"].as_array().is_some_and(|r| r.len() >= 4),
        )
        .await;
    let failed: Vec<&Value> = log["renders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    for render in failed {
        assert_eq!(render["url"], urls[1], "{render}");
        assert_eq!(render["purpose"], "warm", "{render}");
        assert_eq!(render["status"], 500, "{render}");
        assert!(render["reason"].is_string(), "{render}");
        assert!(render["bot"].is_null(), "no bot asked for a warm: {render}");
    }

    // A preview of the failing page answers 200 with the failure in the body.
    let (status, preview) = tenant.render(&[("url", &urls[1])]).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["status"], 500, "{preview}");
    assert!(preview["error"].is_string(), "{preview}");
    assert_eq!(platform.site.hits("/broken"), 3);

    // A bot asking for the failing page gets a render that fails too, and then the origin's own
    // answer.
    let bot = platform
        .get(host, "/broken", GOOGLEBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(bot.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(cache_status(&bot), "BYPASS");
    assert!(bot.text().await.unwrap().contains("Internal error"));
    assert_eq!(
        platform.site.hits("/broken"),
        5,
        "the bot's render and its fall-back"
    );

    let usage = tenant
        .poll(
            || tenant.usage(id),
            |usage| {
                usage["days"][0]["bypasses"].as_i64() >= Some(1)
                    && usage["days"][0]["failed_renders"].as_i64() >= Some(3)
            },
        )
        .await;
    let today = &usage["days"][0];
    assert_eq!(today["renders"], 2, "{usage}");
    assert_eq!(today["failed_renders"], 3, "{usage}");
    assert_eq!(today["bypasses"], 1, "{usage}");
    assert_eq!(today["cache_misses"], 0, "{usage}");
    assert_eq!(today["cache_hits"], 0, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_render_returns_the_rendered_page_and_stores_nothing() {
    let platform = TestPlatform::start().await;
    let host = "preview.e2e.test";
    let tenant = platform.api.tenant("owner@preview.example").await;
    let domain = platform.verified_domain(&tenant, host, json!({})).await;
    let id = str_of(&domain, "id");
    let url = format!("http://{host}/products/3");

    let (status, preview) = tenant.render(&[("url", &url)]).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["url"], url);
    assert_eq!(preview["device"], "desktop");
    assert_eq!(preview["status"], 200, "{preview}");
    assert!(preview["error"].is_null(), "{preview}");
    let body = str_of(&preview, "body");
    assert!(body.contains(PRODUCT_3_H1), "{body}");
    assert!(
        !body.contains("/static/app.js"),
        "scripts are removed: {body}"
    );

    // Tracking parameters are dropped as for bots: the same page.
    let tracked = format!("{url}?utm_source=newsletter");
    let (status, mobile) = tenant
        .render(&[("url", &tracked), ("device", "mobile")])
        .await;
    assert_eq!(status, StatusCode::OK, "{mobile}");
    assert_eq!(mobile["url"], url);
    assert_eq!(mobile["device"], "mobile");
    assert!(str_of(&mobile, "body").contains(PRODUCT_3_H1));
    assert_eq!(platform.site.hits("/products/3"), 2, "one load per preview");

    assert_eq!(tenant.cached_pages(id).await, [], "previews are not cached");
    let (cache, rendered) = platform.first_bot_render(host, "/products/3").await;
    assert_eq!(
        cache, "MISS",
        "a bot after a preview still gets a fresh render"
    );
    assert!(rendered.contains(PRODUCT_3_H1));

    let log = tenant
        .poll(
            || tenant.renders(id),
            |log| log["renders"].as_array().is_some_and(|r| r.len() >= 3),
        )
        .await;
    let mut kinds: Vec<(&str, &str, &str)> = log["renders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                str_of(r, "purpose"),
                str_of(r, "outcome"),
                str_of(r, "device"),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("bot", "stored", "desktop"),
            ("preview", "rendered", "desktop"),
            ("preview", "rendered", "mobile"),
        ],
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_log_and_usage_show_a_bots_miss_and_hit() {
    let platform = TestPlatform::start().await;
    let host = "activity.e2e.test";
    let tenant = platform.api.tenant("owner@activity.example").await;
    let domain = platform.verified_domain(&tenant, host, json!({})).await;
    let id = str_of(&domain, "id");

    let (cache, _) = platform.first_bot_render(host, "/products/2").await;
    assert_eq!(cache, "MISS");
    assert_eq!(platform.bot_get(host, "/products/2").await.0, "HIT");

    let log = tenant
        .poll(
            || tenant.renders(id),
            |log| log["renders"].as_array().is_some_and(|r| !r.is_empty()),
        )
        .await;
    let renders = log["renders"].as_array().unwrap();
    assert_eq!(renders.len(), 1, "one render for a miss and a hit: {log}");
    let render = &renders[0];
    assert_eq!(
        render["url"],
        format!("http://{host}/products/2"),
        "{render}"
    );
    assert_eq!(render["device"], "desktop", "{render}");
    assert_eq!(render["purpose"], "bot", "{render}");
    assert_eq!(render["outcome"], "stored", "{render}");
    assert_eq!(render["status"], 200, "{render}");
    assert_eq!(render["bot"], GOOGLEBOT, "{render}");
    assert!(render["bytes"].as_i64().unwrap() > 0, "{render}");
    assert!(render["reason"].is_null(), "{render}");

    // The gateway flushes its counters once a second.
    let usage = tenant
        .poll(
            || tenant.usage(id),
            |usage| {
                usage["days"].as_array().is_some_and(|days| {
                    days.iter().any(|d| {
                        d["cache_hits"].as_i64() >= Some(1)
                            && d["cache_misses"].as_i64() >= Some(1)
                            && d["renders"].as_i64() >= Some(1)
                    })
                })
            },
        )
        .await;
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{usage}");
    let today = &days[0];
    assert_eq!(today["domain_id"], id, "{usage}");
    assert_eq!(today["day"], utc_today(), "{usage}");
    assert_eq!(today["cache_hits"], 1, "{usage}");
    assert_eq!(today["cache_misses"], 1, "{usage}");
    assert_eq!(today["renders"], 1, "{usage}");
    assert_eq!(today["bypasses"], 0, "{usage}");
    assert_eq!(today["passthroughs"], 0, "{usage}");
    assert_eq!(today["failed_renders"], 0, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_through_the_api_makes_the_next_bot_render_again() {
    let platform = TestPlatform::start().await;
    let host = "purge.e2e.test";
    let tenant = platform.api.tenant("owner@purge.example").await;
    let domain = platform.verified_domain(&tenant, host, json!({})).await;
    let id = str_of(&domain, "id");
    let url = format!("http://{host}/products/4");

    let (cache, _) = platform.first_bot_render(host, "/products/4").await;
    assert_eq!(cache, "MISS");
    assert_eq!(platform.bot_get(host, "/products/4").await.0, "HIT");
    let loads = platform.site.hits("/products/4");

    let (status, purged) = tenant.purge(&json!({ "urls": [url] })).await;
    assert_eq!(status, StatusCode::OK, "{purged}");
    assert_eq!(purged["purged"], 1, "{purged}");
    assert_eq!(tenant.cached_pages(id).await, []);

    let (cache, rendered) = platform.bot_get(host, "/products/4").await;
    assert_eq!(cache, "MISS", "the purged page is rendered again");
    assert!(rendered.contains("<h1>"), "{rendered}");
    assert_eq!(platform.site.hits("/products/4"), loads + 1);
    assert_eq!(platform.bot_get(host, "/products/4").await.0, "HIT");

    // A purge by path prefix reaches the same page.
    let (status, purged) = tenant
        .purge(&json!({ "domain_id": id, "prefix": "/products/" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{purged}");
    assert_eq!(purged["purged"], 1, "{purged}");
    assert_eq!(platform.bot_get(host, "/products/4").await.0, "MISS");
    assert_eq!(platform.site.hits("/products/4"), loads + 2);
    assert_eq!(platform.pages_in_redis(id).await, 1);

    // Removing the domain withdraws it from the gateway within a second and purges its pages.
    let (status, body) = tenant.delete_domain(id).await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (sent, _) = first_showing(
        since,
        || platform.get(host, "/products/4", GOOGLEBOT),
        |r| r.status() == StatusCode::MISDIRECTED_REQUEST,
    )
    .await;
    assert!(
        sent <= PROPAGATION,
        "the removal took {sent:?} to reach the gateway"
    );
    assert_eq!(platform.pages_in_redis(id).await, 0);
    assert_eq!(platform.site.hits("/products/4"), loads + 2);
    let (status, _) = tenant.cache(&[("domain_id", id)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Stores `html` as `host`'s rendered `path` (for desktops, over http, as a bot straight at a
/// gateway asks for it) in Redis without telling the gateways, as a render that just finished
/// would be found there.
async fn store_silently(
    platform: &TestPlatform,
    domain_id: &str,
    host: &str,
    path: &str,
    html: &str,
) {
    let host = kiln_core::Hostname::parse(host).unwrap();
    let url = kiln_core::NormalizedUrl::from_request("http", &host, path, &[]).unwrap();
    let key = kiln_core::CacheKey::new(domain_id, kiln_core::DeviceClass::Desktop, &url);
    let meta = serde_json::from_value(json!({
        "status": 200, "headers": [], "url": url.as_str(), "rendered_at": 0, "render_ms": 5,
    }))
    .unwrap();
    let entry = kiln_store::PageEntry {
        html: html.to_owned().into(),
        meta,
    };
    platform
        .store
        .pages()
        .put(&key, &entry, 60, 0)
        .await
        .unwrap();
}

/// A bot's GET for `path` on `host` sent straight to one gateway: `X-Kiln-Cache` and body.
async fn bot_at(
    platform: &TestPlatform,
    gateway: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> (String, String) {
    let response = platform
        .stack
        .client
        .get(format!("http://{gateway}{path}"))
        .header("host", host)
        .header("x-is-bot", "1")
        .header("user-agent", GOOGLEBOT)
        .send()
        .await
        .unwrap();
    (cache_status(&response), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_purge_answers_no_gateway_serves_the_purged_page_from_memory() {
    let mut platform = TestPlatform::start().await;
    platform.stack.stop_worker().await.unwrap();
    let second = platform.stack.another_gateway().await;
    let gateways = [platform.stack.gateway, second];
    let host = "memory.e2e.test";
    let tenant = platform.api.tenant("owner@memory.example").await;
    let domain = platform
        .verified_domain(&tenant, host, json!({ "bot_wait_ms": 0 }))
        .await;
    let id = str_of(&domain, "id");
    store_silently(&platform, id, host, "/ready", "ready").await;
    for gateway in gateways {
        let (sent, _) = first_showing(
            Instant::now(),
            || {
                platform
                    .stack
                    .client
                    .get(format!("http://{gateway}/ready"))
                    .header("host", host)
                    .header("x-is-bot", "1")
                    .header("user-agent", GOOGLEBOT)
            },
            |r| r.headers().contains_key("x-kiln-cache"),
        )
        .await;
        assert!(
            sent <= PROPAGATION,
            "the domain took {sent:?} to reach {gateway}"
        );
    }

    // Each round: both gateways hold the page in memory; it is purged; bots on both gateways ask
    // the moment the purge answers. (With no worker and no wait for renders, a bot that does not
    // get the purged copy from memory gets the origin's page at once.)
    let mut old_pages = Vec::new();
    for round in 0..40 {
        let path = format!("/products/{round}");
        let old = format!("old {round}");
        store_silently(&platform, id, host, &path, &old).await;
        for gateway in gateways {
            // The first read fills the gateway's memory; the second is served from it.
            for _ in 0..2 {
                assert_eq!(
                    bot_at(&platform, gateway, host, &path).await,
                    ("HIT".into(), old.clone())
                );
            }
        }
        // Other tenants were busy changing domains just before: each gateway takes its events
        // one after the other, so it comes to the purge a few milliseconds later.
        let store = &platform.store;
        futures::future::join_all((0..50).map(|n| {
            let busy = kiln_core::Hostname::parse(&format!("busy-{n}.e2e.test")).unwrap();
            async move { store.directory().remove(&busy).await.unwrap() }
        }))
        .await;
        let (status, purged) = tenant
            .purge(&json!({ "urls": [format!("http://{host}{path}")] }))
            .await;
        let (first, second) = tokio::join!(
            bot_at(&platform, gateways[0], host, &path),
            bot_at(&platform, gateways[1], host, &path),
        );
        assert_eq!(status, StatusCode::OK, "{purged}");
        assert_eq!(purged["purged"], 1, "{purged}");
        assert_eq!(purged["confirmed"], true, "{purged}");
        assert_eq!(purged["unconfirmed_gateways"], 0, "{purged}");
        for (gateway, (cache, body)) in gateways.iter().zip([first, second]) {
            if body == old {
                old_pages.push(format!("round {round}, {gateway}: {cache} {body:?}"));
            }
        }
    }
    assert!(
        old_pages.is_empty(),
        "bots got the purged page after the purge answered:\n{}",
        old_pages.join("\n")
    );

    // A gateway that registered and then went silent (stalled, or cut off from Redis while it
    // still serves from memory) is waited for up to the documented bound, and reported.
    platform
        .store
        .events()
        .register_gateway("silent")
        .await
        .unwrap();
    let since = Instant::now();
    let (status, purged) = tenant.purge(&json!({ "domain_id": id, "all": true })).await;
    let took = since.elapsed();
    assert_eq!(status, StatusCode::OK, "{purged}");
    assert_eq!(purged["confirmed"], false, "{purged}");
    assert_eq!(purged["unconfirmed_gateways"], 1, "{purged}");
    assert!(
        took >= kiln_store::CONFIRM_WAIT
            && took < kiln_store::CONFIRM_WAIT + Duration::from_secs(2),
        "the purge answered after {took:?}"
    );
    // Once it has stopped cleanly (deregistered), nobody waits for it.
    platform
        .store
        .events()
        .deregister_gateway("silent")
        .await
        .unwrap();
    let (_, purged) = tenant.purge(&json!({ "domain_id": id, "all": true })).await;
    assert_eq!(purged["confirmed"], true, "{purged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_warm_render_purge_or_read_anothers_domain() {
    let platform = TestPlatform::start().await;
    let (host_a, host_b) = ("a.e2e.test", "b.e2e.test");
    let alice = platform.api.tenant("alice@a.example").await;
    let domain_a = platform.verified_domain(&alice, host_a, json!({})).await;
    let id_a = str_of(&domain_a, "id");
    let (cache, _) = platform.first_bot_render(host_a, "/products/5").await;
    assert_eq!(cache, "MISS");
    let (status, warm_a) = alice
        .warm(&json!({ "urls": [format!("http://{host_a}/products/6")] }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{warm_a}");
    let warm_a = str_of(&warm_a, "id").to_owned();
    assert_eq!(alice.finished_warm(&warm_a).await["done"], 2);
    let cached_a = alice.cached_pages(id_a).await;
    assert_eq!(cached_a.len(), 3, "{cached_a:?}");
    let loads_a = platform.site.hits("/products/5") + platform.site.hits("/products/6");

    // Bob owns a domain too, verified by CNAME this time.
    let bob = platform.api.tenant("bob@b.example").await;
    let (status, domain_b) = bob
        .add_domain(&json!({ "hostname": host_b, "origin": platform.site.base(), "settings": { "bot_rate_per_second": 0 } }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{domain_b}");
    platform.add_dns(&[DnsRecord::cname(host_b, CNAME_TARGET)]);
    let (status, domain_b) = bob.verify(str_of(&domain_b, "id")).await;
    assert_eq!(status, StatusCode::OK, "{domain_b}");
    assert_eq!(domain_b["verified"], true, "{domain_b}");

    let page_a = format!("http://{host_a}/products/5");
    let refused: Vec<(&str, StatusCode, Value)> = vec![
        ("warm A's URL", bob.warm(&json!({ "urls": [page_a] })).await),
        (
            "warm A's sitemap",
            bob.warm(&json!({ "domain_id": id_a, "sitemap_url": format!("http://{host_a}/sitemap.xml") }))
                .await,
        ),
        ("read A's warm job", bob.warm_status(&warm_a).await),
        ("render A's URL", bob.render(&[("url", &page_a)]).await),
        ("purge A's URL", bob.purge(&json!({ "urls": [page_a] })).await),
        (
            "purge A's prefix",
            bob.purge(&json!({ "domain_id": id_a, "prefix": "/" })).await,
        ),
        (
            "purge all of A",
            bob.purge(&json!({ "domain_id": id_a, "all": true })).await,
        ),
        ("list A's cache", bob.cache(&[("domain_id", id_a)]).await),
        ("read A's render log", bob.renders(id_a).await),
        ("read A's usage", bob.usage(id_a).await),
        ("read A's domain", bob.domain(id_a).await),
        (
            "change A's settings",
            bob.update_domain(id_a, &json!({ "settings": { "exclude_paths": ["/*"] } }))
                .await,
        ),
        ("verify A's domain", bob.verify(id_a).await),
        ("delete A's domain", bob.delete_domain(id_a).await),
        (
            "register A's hostname",
            bob.add_domain(&json!({ "hostname": host_a, "origin": platform.site.base(), "settings": { "bot_rate_per_second": 0 } }))
                .await,
        ),
    ]
    .into_iter()
    .map(|(what, (status, body))| (what, status, body))
    .collect();
    for (what, status, body) in &refused {
        assert!(status.is_client_error(), "{what}: {status} {body}");
        assert!(
            body["error"]["code"].is_string(),
            "{what}: one error shape: {body}"
        );
    }
    // Someone else's ids look like ids that do not exist; URLs name the host that is not theirs.
    for (what, status, _) in &refused {
        let expected = match *what {
            "warm A's URL" | "render A's URL" | "purge A's URL" => StatusCode::UNPROCESSABLE_ENTITY,
            "register A's hostname" => StatusCode::CONFLICT,
            _ => StatusCode::NOT_FOUND,
        };
        assert_eq!(*status, expected, "{what}");
    }

    // Bob's own listings show nothing of Alice's.
    let (status, bobs) = bob.domains().await;
    assert_eq!(status, StatusCode::OK);
    let hosts: Vec<&str> = bobs["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| str_of(d, "hostname"))
        .collect();
    assert_eq!(hosts, [host_b]);
    let alices_usage = alice
        .poll(
            || alice.usage(id_a),
            |usage| usage["days"].as_array().is_some_and(|d| !d.is_empty()),
        )
        .await;
    assert_eq!(alices_usage["days"][0]["domain_id"], id_a);
    let (status, bobs_usage) = bob.usage_of_all().await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        bobs_usage["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|day| day["domain_id"] != id_a),
        "{bobs_usage}"
    );

    // A's domain, cache and origin are as they were.
    let (status, still) = alice.domain(id_a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["verified"], true, "{still}");
    assert_eq!(still["settings"]["exclude_paths"], json!([]), "{still}");
    assert_eq!(alice.cached_pages(id_a).await, cached_a);
    for path in ["/products/5", "/products/6"] {
        assert_eq!(platform.bot_get(host_a, path).await.0, "HIT", "{path}");
    }
    assert_eq!(
        platform.site.hits("/products/5") + platform.site.hits("/products/6"),
        loads_a,
        "nothing of A's was rendered for Bob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sitemap_warm_leaves_out_paths_the_domain_never_renders() {
    let platform = TestPlatform::start().await;
    let host = "rules.e2e.test";
    let tenant = platform.api.tenant("owner@rules.example").await;
    let domain = platform
        .verified_domain(
            &tenant,
            host,
            json!({ "device_variants": false, "exclude_paths": ["/about*"] }),
        )
        .await;
    let id = str_of(&domain, "id");
    platform.site.serve(
        "/sitemap.xml",
        StatusCode::OK,
        "application/xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://{host}/products/1</loc></url>
  <url><loc>http://{host}/about</loc></url>
</urlset>"#
        )
        .into_bytes(),
    );

    let (status, job) = tenant
        .warm(&json!({ "domain_id": id, "sitemap_url": format!("http://{host}/sitemap.xml") }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = tenant.finished_warm(str_of(&job, "id")).await;
    assert_eq!(
        platform.site.hits("/about"),
        0,
        "exclude_paths: \"Paths matching one of these glob patterns are never rendered\"; {job}"
    );
    assert_eq!(
        tenant.cached_pages(id).await,
        [(format!("http://{host}/products/1"), "desktop".to_owned())]
    );
    assert_eq!(job["total"], 1, "{job}");
    let skipped: Vec<&str> = job["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_of(s, "url"))
        .collect();
    assert_eq!(skipped, [format!("http://{host}/about")], "{job}");

    // A list of URLs leaves it out the same way, and there is no preview of it.
    let (status, job) = tenant
        .warm(&json!({ "urls": [format!("http://{host}/about"), format!("http://{host}/products/1")] }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 1, "{job}");
    assert_eq!(
        job["skipped"][0]["url"],
        format!("http://{host}/about"),
        "{job}"
    );
    let job = tenant.finished_warm(str_of(&job, "id")).await;
    assert_eq!(job["done"], 1, "{job}");
    assert_eq!(platform.site.hits("/about"), 0, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pages_are_served_at_once_refreshed_and_kept_when_the_origin_fails() {
    let platform = TestPlatform::start().await;
    let host = "stale.e2e.test";
    let tenant = platform.api.tenant("owner@stale.example").await;
    // Fresh for a second, then stale for the default week; one render per URL.
    let domain = platform
        .verified_domain(
            &tenant,
            host,
            json!({ "cache_ttl_secs": 1, "device_variants": false }),
        )
        .await;
    let path = "/products/3";
    let key = kiln_core::CacheKey::new(
        str_of(&domain, "id"),
        kiln_core::DeviceClass::Desktop,
        &kiln_core::NormalizedUrl::from_stored(format!("http://{host}{path}")),
    );

    let (cache, first) = platform.first_bot_render(host, path).await;
    assert_eq!(cache, "MISS");
    assert!(first.contains(PRODUCT_3_H1), "{first}");

    // Stale: served at once, and one background render makes it fresh again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (cache, stale) = platform.bot_get(host, path).await;
    assert_eq!(cache, "STALE");
    assert_eq!(stale, first);
    let (_, refreshed) = first_showing(
        Instant::now(),
        || platform.get(host, path, GOOGLEBOT),
        |r| cache_status(r) == "HIT",
    )
    .await;
    assert!(refreshed.text().await.unwrap().contains(PRODUCT_3_H1));
    // A bot that read the stale copy just before the refresh landed may have queued another
    // refresh, which the worker drops as the page is fresh: let it settle before the origin breaks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while platform.store.pages().render_locked(&key).await.unwrap() {
        assert!(Instant::now() < deadline, "a refresh never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Now the origin breaks: the refresh fails, the good copy stays and keeps being served, and
    // the broken page is not rendered again on every bot's request.
    platform.site.serve(
        path,
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/html",
        b"<h1>Internal error</h1>".to_vec(),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let loads_before = platform.site.hits(path);
    let (cache, kept) = platform.bot_get(host, path).await;
    assert_eq!(cache, "STALE");
    assert!(kept.contains(PRODUCT_3_H1), "{kept}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failure = loop {
        if let Some(failure) = platform.store.pages().recent_failure(&key).await.unwrap() {
            break failure;
        }
        assert!(Instant::now() < deadline, "the refresh never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(failure.contains("500"), "{failure}");
    let loads_after_refresh = platform.site.hits(path);
    assert!(
        loads_after_refresh > loads_before,
        "the refresh loaded the page"
    );
    for _ in 0..5 {
        let (cache, body) = platform.bot_get(host, path).await;
        assert_eq!(cache, "STALE");
        assert!(
            body.contains(PRODUCT_3_H1),
            "a failed refresh replaced the page: {body}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        platform.site.hits(path),
        loads_after_refresh,
        "the broken page was rendered again while its failure was fresh"
    );
    let entry = platform
        .store
        .pages()
        .get(&key)
        .await
        .unwrap()
        .expect("kept");
    assert!(String::from_utf8_lossy(&entry.decoded().unwrap()).contains(PRODUCT_3_H1));
}
