//! The render service (`KILN_SERVICE_HOST`): prerender.io's and Rendertron's protocols over the
//! same cache, with tokens published in Redis as the control plane publishes them.

use crate::helpers::{GOOGLEBOT, GOOGLEBOT_SMARTPHONE, PAGE, TestApp, domain, spawn_app};
use crate::wait_for_domain;
use kiln_core::{DeviceClass, DomainSettings};
use kiln_queue::QueueKind;
use kiln_store::{ServiceToken, token_hash};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const TOKEN: &str = "kiln_svc_0123456789abcdefghijABCDEFGHIJkl";
const SERVICE: &str = "render.localhost";

/// Publishes `secret` as a token of `tenant`, as the control plane does.
async fn publish(gw: &TestApp, secret: &str, tenant: &str, rate: Option<(u32, u32)>) {
    let token = ServiceToken {
        id: format!("token-of-{tenant}-{}", &secret[secret.len() - 4..]),
        tenant_id: tenant.into(),
        rate_per_second: rate.map(|(rate, _)| rate),
        burst: rate.map(|(_, burst)| burst),
    };
    gw.store
        .service_tokens()
        .put(&token_hash(secret), &token)
        .await
        .unwrap();
}

/// A request to the service host, for `target` (path and query as a middleware sends them).
fn service(gw: &TestApp, target: &str) -> reqwest::RequestBuilder {
    gw.client
        .get(gw.url(target))
        .header("host", SERVICE)
        // The edge takes the middleware's request for the bot's it forwards.
        .header("x-is-bot", "1")
        .header("user-agent", GOOGLEBOT)
}

async fn queued(gw: &TestApp) -> (u64, u64) {
    let queue = gw.render_queue().await;
    (
        queue.untaken(QueueKind::Render).await.unwrap(),
        queue.untaken(QueueKind::Warm).await.unwrap(),
    )
}

#[tokio::test]
async fn every_protocol_form_serves_the_cached_render_the_edge_serves() {
    let gw = spawn_app(DomainSettings::default()).await;
    publish(&gw, TOKEN, "tenant-1", None).await;
    gw.cache_page("/p/3?x=1", DeviceClass::Desktop, "<p>desktop</p>")
        .await;
    gw.cache_page("/p/3?x=1", DeviceClass::Mobile, "<p>phone</p>")
        .await;

    let forms = [
        // prerender-node and the nginx recipe: the URL in the path, the token in a header.
        ("/http://shop.test/p/3?x=1", true, "<p>desktop</p>"),
        (
            "/render?url=http%3A%2F%2Fshop.test%2Fp%2F3%3Fx%3D1",
            true,
            "<p>desktop</p>",
        ),
        // rendertron-middleware: the token and the encoded URL in the path.
        (
            &*format!("/render/{TOKEN}/http%3A%2F%2Fshop.test%2Fp%2F3%3Fx%3D1"),
            false,
            "<p>desktop</p>",
        ),
        (
            &*format!("/render/{TOKEN}/http%3A%2F%2Fshop.test%2Fp%2F3%3Fx%3D1?mobile"),
            false,
            "<p>phone</p>",
        ),
    ];
    for (target, header, html) in forms {
        let mut request = service(&gw, target);
        if header {
            request = request.header("x-prerender-token", TOKEN);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{target}");
        assert_eq!(response.headers()["x-kiln-cache"], "HIT", "{target}");
        assert_eq!(response.text().await.unwrap(), html, "{target}");
    }

    // A phone's crawler gets the phone's render, as through the edge.
    let phone = gw
        .client
        .get(gw.url("/http://shop.test/p/3?x=1"))
        .header("host", SERVICE)
        .header("x-prerender-token", TOKEN)
        .header("user-agent", GOOGLEBOT_SMARTPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(phone.text().await.unwrap(), "<p>phone</p>");

    // What prerender-node asks for: gzip, which it unpacks.
    let gzipped = service(&gw, "/http://shop.test/p/3?x=1")
        .header("x-prerender-token", TOKEN)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);

    let head = gw
        .client
        .head(gw.url("/http://shop.test/p/3?x=1"))
        .header("host", SERVICE)
        .header("x-prerender-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["x-kiln-cache"], "HIT");

    assert_eq!(gw.origin.log.count(), 0, "every answer came from the cache");
    assert_eq!(queued(&gw).await, (0, 0));
    let used = gw.store.service_tokens().last_used().await.unwrap();
    assert!(used.contains_key("token-of-tenant-1-IJkl"), "{used:?}");
}

#[tokio::test]
async fn a_missing_wrong_or_revoked_token_is_401_and_nothing_is_rendered() {
    let gw = spawn_app(DomainSettings::default()).await;
    let none = service(&gw, "/http://shop.test/p").send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["x-kiln-error"], "no-token");
    assert!(none.text().await.unwrap().contains("X-Prerender-Token"));

    let rendertron_without = service(&gw, "/render/http%3A%2F%2Fshop.test%2Fp")
        .send()
        .await
        .unwrap();
    assert_eq!(rendertron_without.status(), StatusCode::UNAUTHORIZED);
    assert!(
        rendertron_without
            .text()
            .await
            .unwrap()
            .contains("/render/<token>/"),
        "the answer says where rendertron-middleware's token goes"
    );

    for wrong in ["kiln_svc_nope", "x\u{7f}y", &"a".repeat(5_000)] {
        let response = service(&gw, "/http://shop.test/p")
            .header("x-prerender-token", wrong)
            .send()
            .await;
        // A header the HTTP client will not send is refused before it leaves.
        if let Ok(response) = response {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()["x-kiln-error"], "bad-token");
        }
    }

    publish(&gw, TOKEN, "tenant-1", None).await;
    gw.cache_page("/p", DeviceClass::Desktop, "<p>cached</p>")
        .await;
    let live = service(&gw, "/http://shop.test/p")
        .header("x-prerender-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    // Revoked: gone from Redis, refused from the very next request.
    gw.store
        .service_tokens()
        .remove(&token_hash(TOKEN))
        .await
        .unwrap();
    let revoked = service(&gw, "/http://shop.test/p")
        .header("x-prerender-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(gw.origin.log.count(), 0);
    assert_eq!(queued(&gw).await, (0, 0));
}

#[tokio::test]
async fn pages_the_token_may_not_render_are_refused_clearly_and_nothing_is_fetched() {
    let gw = spawn_app(DomainSettings::default()).await;
    publish(&gw, TOKEN, "tenant-1", None).await;
    let mut theirs = domain("theirs.test", gw.origin.port, DomainSettings::default());
    theirs.tenant_id = "tenant-2".into();
    gw.store.directory().put(&theirs).await.unwrap();
    let mut unverified = domain("new.test", gw.origin.port, DomainSettings::default());
    unverified.verified = false;
    gw.store.directory().put(&unverified).await.unwrap();
    wait_for_domain(&gw, "theirs.test").await;
    wait_for_domain(&gw, "new.test").await;
    let before = gw.origin.log.count();

    let long = format!("/http://shop.test/{}", "a".repeat(9_000));
    let cases: [(&str, StatusCode, &str); 12] = [
        // Another tenant's domain is as unknown as a domain nobody registered.
        (
            "/http://theirs.test/p",
            StatusCode::NOT_FOUND,
            "unknown-domain",
        ),
        (
            "/http://nobody.test/p",
            StatusCode::NOT_FOUND,
            "unknown-domain",
        ),
        (
            "/http://new.test/p",
            StatusCode::FORBIDDEN,
            "unverified-domain",
        ),
        (
            "/render?url=file%3A%2F%2F%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            "/render?url=data%3Atext%2Fhtml%2C%3Cp%3Ehi",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            "/render?url=javascript%3Aalert(1)",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        ("/http://127.0.0.1/p", StatusCode::BAD_REQUEST, "bad-url"),
        (
            "/http://169.254.169.254/latest/meta-data/",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        ("/http://[::1]/p", StatusCode::BAD_REQUEST, "bad-url"),
        (
            "/http://user:secret@shop.test/p",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            "/http://render.localhost/p",
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (&long, StatusCode::URI_TOO_LONG, "url-too-long"),
    ];
    for (target, status, code) in cases {
        let response = service(&gw, target)
            .header("x-prerender-token", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{target}");
        assert_eq!(response.headers()["x-kiln-error"], code, "{target}");
        let text = response.text().await.unwrap();
        assert!(
            !text.is_empty() && !text.contains("<html"),
            "{target}: {text}"
        );
    }
    for target in ["/favicon.ico", "/render", "/shop.test/p"] {
        let response = service(&gw, target).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{target}");
    }
    let index = service(&gw, "/").send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.text().await.unwrap().contains("X-Prerender-Token"));

    assert_eq!(gw.origin.log.count(), before, "nothing reached any origin");
    assert_eq!(queued(&gw).await, (0, 0), "nothing was queued");
}

#[tokio::test]
async fn a_token_past_its_rate_gets_429_with_retry_after() {
    let gw = spawn_app(DomainSettings::default()).await;
    publish(&gw, TOKEN, "tenant-1", Some((1, 2))).await;
    gw.cache_page("/p", DeviceClass::Desktop, "<p>cached</p>")
        .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = service(&gw, "/http://shop.test/p")
            .header("x-prerender-token", TOKEN)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "1");
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn a_miss_with_no_render_in_time_gets_the_sites_own_page_without_the_bots_identity() {
    // No worker runs in this test: the render is queued once and never comes.
    let settings = DomainSettings {
        bot_wait_ms: 300,
        ..DomainSettings::default()
    };
    let gw = spawn_app(settings).await;
    publish(&gw, TOKEN, "tenant-1", None).await;
    let started = Instant::now();
    let response = service(&gw, "/http://shop.test/products/3")
        .header("x-prerender-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(response.text().await.unwrap(), PAGE);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(queued(&gw).await, (1, 0), "one render was queued for it");

    // The site's page was asked for as a person's browser would, so that a middleware in front of
    // it serves it rather than asking Kiln again.
    let seen = gw.origin.log.requests().pop().unwrap();
    assert_eq!(seen.uri, "/products/3");
    assert_eq!(seen.headers["x-prerender"], "1");
    let user_agent = seen.headers["user-agent"].to_str().unwrap();
    assert!(!user_agent.contains("Googlebot"), "{user_agent}");
    assert!(seen.headers.get("x-prerender-token").is_none());
}

#[tokio::test]
async fn recache_queues_a_fresh_render_of_each_page_or_of_none() {
    let gw = spawn_app(DomainSettings::default()).await;
    publish(&gw, TOKEN, "tenant-1", None).await;
    let recache = |body: serde_json::Value| {
        gw.client
            .post(gw.url("/recache"))
            .header("host", SERVICE)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    let response = recache(serde_json::json!({
        "prerenderToken": TOKEN,
        "urls": ["http://shop.test/a", "http://shop.test/b?utm_source=x"],
        "adaptiveType": "mobile",
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["queued"], 2);
    assert_eq!(answer["urls"][1], "http://shop.test/b");
    assert_eq!(queued(&gw).await, (0, 2), "on the background queue");

    // One page it may not render refuses the whole request.
    let refused = recache(serde_json::json!({
        "prerenderToken": TOKEN,
        "urls": ["http://shop.test/c", "http://nobody.test/d"],
    }))
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    for (body, status) in [
        (
            serde_json::json!({ "urls": ["http://shop.test/c"] }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN }),
            StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN, "url": "http://shop.test/", "adaptiveType": "tv" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN, "url": "http://shop.test/", "extra": 1 }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = recache(body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    let not_json = gw
        .client
        .post(gw.url("/recache"))
        .header("host", SERVICE)
        .body("url=http://shop.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let huge = gw
        .client
        .post(gw.url("/recache"))
        .header("host", SERVICE)
        .body(vec![b' '; 600 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(queued(&gw).await, (0, 2), "nothing more was queued");
}

#[tokio::test]
async fn the_service_host_is_never_a_customers_domain() {
    let gw = spawn_app(DomainSettings::default()).await;
    // Even registered, the name answers as the service, never as a proxied site.
    gw.store
        .directory()
        .put(&domain(SERVICE, gw.origin.port, DomainSettings::default()))
        .await
        .unwrap();
    wait_for_domain(&gw, "shop.test").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = gw.origin.log.count();
    let response = gw
        .client
        .get(gw.url("/"))
        .header("host", SERVICE)
        .header("x-is-bot", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("render service"));
    assert_eq!(gw.origin.log.count(), before);
}

#[tokio::test]
async fn the_nginx_recipes_escaped_urls_and_escaped_fragments_name_the_pages_they_mean() {
    let gw = spawn_app(DomainSettings::default()).await;
    publish(&gw, TOKEN, "tenant-1", None).await;
    gw.cache_page("/p?x=1", DeviceClass::Desktop, "<p>with a query</p>")
        .await;
    gw.cache_page("/caf%C3%A9", DeviceClass::Desktop, "<p>café</p>")
        .await;
    for (target, html) in [
        // `rewrite .* /$scheme://$host$request_uri? break;` escapes `?` and `%`.
        ("/http://shop.test/p%3Fx=1", "<p>with a query</p>"),
        ("/http://shop.test/caf%25C3%25A9", "<p>café</p>"),
        // A page that asked for `_escaped_fragment_` with `<meta name="fragment" content="!">`.
        (
            "/http://shop.test/p?x=1&_escaped_fragment_=",
            "<p>with a query</p>",
        ),
    ] {
        let response = service(&gw, target)
            .header("x-prerender-token", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-kiln-cache"], "HIT", "{target}");
        assert_eq!(response.text().await.unwrap(), html, "{target}");
    }
}

#[tokio::test]
async fn a_domain_used_only_through_the_service_is_not_served_through_the_edge() {
    let gw = spawn_app(DomainSettings::default()).await;
    let mut service_only = domain("own.test", gw.origin.port, DomainSettings::default());
    service_only.service_only = true;
    service_only.origin = "https://own.test".into();
    gw.store.directory().put(&service_only).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = gw.origin.log.count();
    for (x_is_bot, user_agent) in [("0", "Mozilla/5.0 Chrome/130.0"), ("1", GOOGLEBOT)] {
        let response = loop {
            let response = gw
                .client
                .get(gw.url("/products/3"))
                .header("host", "own.test")
                .header("x-is-bot", x_is_bot)
                .header("user-agent", user_agent)
                .send()
                .await
                .unwrap();
            // Until the gateway's directory has the domain, the host is unknown (also 421).
            if response.headers()["x-kiln-error"] != "unknown-host" || Instant::now() > deadline {
                break response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(response.headers()["x-kiln-error"], "service-only-domain");
        assert!(response.text().await.unwrap().contains("render service"));
    }
    assert_eq!(gw.origin.log.count(), before, "nothing was proxied");
    assert_eq!(queued(&gw).await, (0, 0), "nothing was rendered");
}
