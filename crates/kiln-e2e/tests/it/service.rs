//! The render service end to end, with the real clients its users run: prerender.io's
//! `prerender-node` and Google's `rendertron-middleware` in Express apps, and prerender.io's nginx
//! recipe, each asking Kiln (through the edge) for its bots' pages, rendered by the worker's
//! Chromium from the customer's own server. Bad requests get a clear 4xx and render nothing.

use crate::helpers::clients::{NodeApp, RecipeNginx};
use crate::helpers::{CHROME, GOOGLEBOT, TestStack, cache_status};
use kiln_core::{DomainConfig, DomainSettings, Hostname, RenderVia};
use kiln_store::{RenderLogEntry, RenderLogOutcome, RenderLogPurpose, ServiceToken, token_hash};
use kiln_testkit::dns::{DnsRecord, TestDns};
use reqwest::StatusCode;
use std::time::{Duration, Instant, SystemTime};

const TOKEN: &str = "kiln_svc_e2eTokenOfTheShop0123456789abcdefgh";
const TENANT: &str = "tenant-shop";
const SHOP: &str = "shop.localhost";
const TWITTERBOT: &str = "Twitterbot/1.0";
const FACEBOOK: &str = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";

/// The stack with the render service on `localhost` (Node's resolver knows no other loopback
/// name here), the shop's tenant's token published.
async fn start() -> TestStack {
    let stack = TestStack::start_with(
        DomainSettings::default(),
        &[("KILN_SERVICE_HOST", "localhost")],
    )
    .await;
    stack
        .store
        .service_tokens()
        .put(
            &token_hash(TOKEN),
            &ServiceToken {
                id: "token-of-the-shop".into(),
                tenant_id: TENANT.into(),
                rate_per_second: None,
                burst: None,
            },
        )
        .await
        .expect("publish the token");
    stack
}

/// The render service as the clients are told of it: through the edge.
fn service_url(stack: &TestStack) -> String {
    format!("http://localhost:{}/", stack.edge.port())
}

/// Publishes the shop as the control plane would, and waits until the gateway knows it.
async fn publish_shop(stack: &TestStack, origin: String, service_only: bool) -> DomainConfig {
    let shop = DomainConfig {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: TENANT.into(),
        host: Hostname::parse(SHOP).unwrap(),
        origin,
        verified: true,
        settings: DomainSettings::default(),
        service_only,
    };
    stack
        .store
        .directory()
        .put(&shop)
        .await
        .expect("publish the shop");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = stack
            .client
            .get(stack.edge.url("/__probe"))
            .header("host", SHOP)
            .header("user-agent", CHROME)
            .send()
            .await
            .unwrap();
        // Known to the gateway: served (a domain behind the edge), or refused as one used only
        // through the render service, which the edge does not serve.
        let unknown = probe
            .headers()
            .get("x-kiln-error")
            .is_some_and(|code| code == "unknown-host");
        if !unknown {
            return shop;
        }
        assert!(
            Instant::now() < deadline,
            "the shop never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET of `path` on the shop, sent to its own server on `port` as a browser or bot would.
fn shop_get(stack: &TestStack, port: u16, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
    stack
        .client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", format!("{SHOP}:{port}"))
        .header("user-agent", user_agent)
        .timeout(Duration::from_secs(60))
}

/// The render log once it has at least `count` entries (30 s at most; the worker logs a render just
/// after announcing it).
async fn renders(stack: &TestStack, count: usize) -> Vec<RenderLogEntry> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log: Vec<RenderLogEntry> = stack
            .store
            .render_log()
            .read("0", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, entry)| entry)
            .collect();
        if log.len() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the render log never had {count} entries: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a bot gets: the page as the demo's JavaScript builds it, scripts removed.
fn assert_rendered_product(html: &str) {
    assert!(html.contains("<h1>Stoneware Glaze Set</h1>"), "{html}");
    assert!(html.contains("$56.00"), "{html}");
    assert!(
        !html.contains("/static/app.js"),
        "scripts are removed: {html}"
    );
}

/// `text` percent-encoded as `encodeURIComponent` does it (everything but unreserved characters).
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prerender_node_serves_bots_kilns_render_and_people_the_app() {
    let stack = start().await;
    let app = NodeApp::start(
        "prerender-app.js",
        &[
            ("KILN_SERVICE_URL", service_url(&stack)),
            ("KILN_SERVICE_TOKEN", TOKEN.to_owned()),
            (
                "KILN_APP_ORIGIN",
                format!("http://127.0.0.1:{}", stack.demo_port),
            ),
        ],
    );
    let shop = publish_shop(&stack, format!("https://{SHOP}"), true).await;
    let get = |path: &str, user_agent: &str| shop_get(&stack, app.port, path, user_agent);

    let bot = get("/products/3", GOOGLEBOT).send().await.unwrap();
    assert_eq!(bot.status(), StatusCode::OK);
    let status = cache_status(&bot);
    let first_modified = header(&bot, "last-modified");
    let first_at = SystemTime::now();
    let html = bot.text().await.unwrap();
    assert_eq!(
        status,
        "MISS",
        "the render log: {:#?}",
        stack.store.render_log().read("0", 10).await
    );
    assert_rendered_product(&html);

    let person = get("/products/3", CHROME).send().await.unwrap();
    assert_eq!(person.status(), StatusCode::OK);
    assert_eq!(cache_status(&person), "");
    assert_eq!(
        person.text().await.unwrap(),
        stack.origin_page("/products/3").await,
        "people get the app itself"
    );

    let again = get("/products/3", GOOGLEBOT).send().await.unwrap();
    assert_eq!(cache_status(&again), "HIT");
    assert_eq!(again.text().await.unwrap(), html);

    // The SPA's own status and redirect, from its prerender meta tags.
    let missing = get("/products/999", GOOGLEBOT).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("Not found"));
    let moved = get("/catalogue", GOOGLEBOT).send().await.unwrap();
    assert_eq!(moved.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(&moved, "location"),
        format!("http://{SHOP}:{}/", app.port)
    );

    // A recache renders the page again in the background; the next bot gets the new render.
    // (Last-Modified counts seconds: let one pass since the first render.)
    while first_at.elapsed().unwrap_or_default() < Duration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page_url = format!("http://{SHOP}:{}/products/3", app.port);
    let recache = stack
        .client
        .post(format!("{}recache", service_url(&stack)))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "prerenderToken": TOKEN, "url": page_url }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(recache.status(), StatusCode::OK);
    let queued: serde_json::Value = serde_json::from_str(&recache.text().await.unwrap()).unwrap();
    assert_eq!(queued["queued"], 1, "{queued}");
    let log = renders(&stack, 4).await;
    let fresh = get("/products/3", GOOGLEBOT).send().await.unwrap();
    assert_eq!(cache_status(&fresh), "HIT");
    assert_ne!(
        header(&fresh, "last-modified"),
        first_modified,
        "the recache's render replaced the first"
    );
    assert_rendered_product(&fresh.text().await.unwrap());

    // Every render was the service's, for the shop's tenant, at the URL the middleware named.
    let summary: Vec<_> = log
        .iter()
        .map(|e| (e.url.as_str(), e.purpose, e.outcome, e.status))
        .collect();
    assert_eq!(
        summary,
        [
            (
                page_url.as_str(),
                RenderLogPurpose::Bot,
                RenderLogOutcome::Stored,
                Some(200)
            ),
            (
                &*format!("http://{SHOP}:{}/products/999", app.port),
                RenderLogPurpose::Bot,
                RenderLogOutcome::Stored,
                Some(404)
            ),
            (
                &*format!("http://{SHOP}:{}/catalogue", app.port),
                RenderLogPurpose::Bot,
                RenderLogOutcome::Stored,
                Some(301)
            ),
            (
                page_url.as_str(),
                RenderLogPurpose::Warm,
                RenderLogOutcome::Stored,
                Some(200)
            ),
        ],
        "{log:#?}"
    );
    for entry in &log {
        assert_eq!(entry.via, RenderVia::Service, "{entry:?}");
        assert_eq!(entry.tenant_id, TENANT);
        assert_eq!(entry.domain_id, shop.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendertron_middleware_serves_bots_kilns_render_and_people_the_app() {
    let stack = start().await;
    let app = NodeApp::start(
        "rendertron-app.js",
        &[
            ("KILN_SERVICE_URL", service_url(&stack)),
            ("KILN_SERVICE_TOKEN", TOKEN.to_owned()),
            (
                "KILN_APP_ORIGIN",
                format!("http://127.0.0.1:{}", stack.demo_port),
            ),
        ],
    );
    publish_shop(&stack, format!("https://{SHOP}"), true).await;
    let get = |path: &str, user_agent: &str| shop_get(&stack, app.port, path, user_agent);

    let bot = get("/products/3", TWITTERBOT).send().await.unwrap();
    assert_eq!(bot.status(), StatusCode::OK);
    assert_eq!(cache_status(&bot), "MISS");
    let html = bot.text().await.unwrap();
    assert_rendered_product(&html);

    let another = get("/products/3", FACEBOOK).send().await.unwrap();
    assert_eq!(cache_status(&another), "HIT");
    assert_eq!(another.text().await.unwrap(), html);

    let person = get("/products/3", CHROME).send().await.unwrap();
    assert_eq!(cache_status(&person), "");
    assert_eq!(
        person.text().await.unwrap(),
        stack.origin_page("/products/3").await
    );

    let missing = get("/products/999", TWITTERBOT).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let log = renders(&stack, 2).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|e| e.via == RenderVia::Service), "{log:#?}");
}

/// The stack, and the shop served by prerender.io's nginx recipe (with the DNS server it resolves
/// the service's name with).
async fn start_with_recipe() -> (TestStack, RecipeNginx, TestDns) {
    let stack = start().await;
    // The recipe resolves the service's name at run time, with the resolver it names.
    let dns = TestDns::start(&[DnsRecord::a("localhost", "127.0.0.1")]);
    let recipe = RecipeNginx::start(
        &kiln_demo::Settings::bundled_dir(),
        &format!("127.0.0.1:{}", stack.demo_port),
        &format!("localhost:{}", stack.edge.port()),
        TOKEN,
        dns.addr(),
    );
    // The recipe names pages by `$host`, which has no port: the page URLs are
    // `http://shop.localhost/…`, so Kiln is told where the site is served.
    publish_shop(&stack, format!("http://127.0.0.1:{}", recipe.port), false).await;
    (stack, recipe, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prerender_ios_nginx_recipe_serves_bots_kilns_render_and_people_the_static_app() {
    let (stack, recipe, _dns) = start_with_recipe().await;
    let get = |path: &str, user_agent: &str| shop_get(&stack, recipe.port, path, user_agent);

    let bot = get("/products/3", GOOGLEBOT).send().await.unwrap();
    assert_eq!(
        bot.status(),
        StatusCode::OK,
        "the recipe's log: {}",
        recipe.access_log()
    );
    assert_eq!(cache_status(&bot), "MISS", "{}", recipe.access_log());
    assert_rendered_product(&bot.text().await.unwrap());

    let index = std::fs::read_to_string(kiln_demo::Settings::bundled_dir().join("index.html"))
        .expect("the demo's index.html");
    let person = get("/products/3", CHROME).send().await.unwrap();
    assert_eq!(person.status(), StatusCode::OK);
    assert_eq!(cache_status(&person), "");
    assert_eq!(person.text().await.unwrap(), index);
    // Its assets are the files, for bots too.
    let script = get("/static/app.js", GOOGLEBOT).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(cache_status(&script), "");

    let log = renders(&stack, 1).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].url, format!("http://{SHOP}/products/3"));
    assert_eq!(log[0].via, RenderVia::Service);
}

/// The recipe puts the page's whole `$request_uri` in the path it sends (`rewrite .*
/// /$scheme://$host$request_uri? break;`), and nginx escapes the query's `?` there: Kiln is asked
/// for `/http://shop.localhost/products/2%3Fref=newsletter`. prerender.io's service decodes the
/// URL it is given (and drops `_escaped_fragment_`); Kiln renders the path `/products/2%3Fref=…`,
/// the SPA's "Not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prerender_ios_nginx_recipe_keeps_a_pages_query() {
    let (stack, recipe, _dns) = start_with_recipe().await;
    let bot = shop_get(&stack, recipe.port, "/products/3?ref=newsletter", GOOGLEBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(bot.status(), StatusCode::OK);
    assert_eq!(cache_status(&bot), "MISS");
    assert_rendered_product(&bot.text().await.unwrap());
    let log = renders(&stack, 1).await;
    assert_eq!(
        log[0].url,
        format!("http://{SHOP}/products/3?ref=newsletter")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_through_the_edge_get_a_clear_4xx_and_render_nothing() {
    let stack = start().await;
    let shop = publish_shop(&stack, format!("https://{SHOP}"), true).await;
    let service = |target: &str| {
        stack
            .client
            .get(format!("{}{}", service_url(&stack), &target[1..]))
            .header("user-agent", GOOGLEBOT)
    };

    let long = format!("http://{SHOP}/{}", "a".repeat(9000));
    let cases: Vec<(String, Option<&str>, StatusCode, &str)> = vec![
        // (target, token header, status, X-Kiln-Error)
        (
            format!("/http://{SHOP}/p"),
            None,
            StatusCode::UNAUTHORIZED,
            "no-token",
        ),
        (
            format!("/http://{SHOP}/p"),
            Some("kiln_svc_notATokenAnyoneWasGiven000000000000"),
            StatusCode::UNAUTHORIZED,
            "bad-token",
        ),
        (
            format!(
                "/render/kiln_svc_notATokenAnyoneWasGiven0000/{}",
                encoded(&format!("http://{SHOP}/p"))
            ),
            None,
            StatusCode::UNAUTHORIZED,
            "bad-token",
        ),
        // Another tenant's domain is as unknown as nobody's.
        (
            "/http://demo.localhost/products/3".into(),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
            "unknown-domain",
        ),
        (
            "/http://nobody.localhost/".into(),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
            "unknown-domain",
        ),
        (
            format!("/render?url={}", encoded("file:///etc/passwd")),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            format!("/render/{TOKEN}/{}", encoded("file:///etc/passwd")),
            None,
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            "/file:///etc/passwd".into(),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            format!("/render?url={}", encoded("data:text/html,<h1>hi</h1>")),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            "/http://127.0.0.1/".into(),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            format!("/render/{TOKEN}/{}", encoded("http://127.0.0.1:6379/")),
            None,
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        // The service's own name.
        (
            "/http://localhost/".into(),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        // Malformed: an impossible port, a broken IPv6 literal, a tab (which URL parsers drop
        // silently, making another name for the page; a space is escaped, as browsers do).
        (
            format!("/http://{SHOP}:99999/p"),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            format!("/render?url={}", encoded("http://[::1/p")),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            format!("/render?url={}", encoded(&format!("http://{SHOP}/a\tb"))),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        // Longer than a request line may be: the edge itself refuses it (nginx's 8 KB line).
        (
            format!("/{long}"),
            Some(TOKEN),
            StatusCode::URI_TOO_LONG,
            "",
        ),
    ];
    for (target, token, status, code) in &cases {
        let mut request = service(target);
        if let Some(token) = token {
            request = request.header("x-prerender-token", *token);
        }
        let response = request.send().await.unwrap();
        let shown: String = target.chars().take(120).collect();
        assert_eq!(response.status(), *status, "{shown}");
        assert_eq!(header(&response, "x-kiln-error"), *code, "{shown}");
        let body = response.text().await.unwrap();
        if !code.is_empty() {
            assert!(body.len() > 20, "{shown}: the refusal says why: {body}");
        }
    }

    // A recache names pages in its body, where no request line limits them.
    let recaches = [
        (
            serde_json::json!({ "prerenderToken": TOKEN, "url": long }),
            StatusCode::URI_TOO_LONG,
            "url-too-long",
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN, "urls": [format!("http://{SHOP}/ok"), "file:///etc/passwd"] }),
            StatusCode::BAD_REQUEST,
            "bad-url",
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN, "url": "http://demo.localhost/products/3" }),
            StatusCode::NOT_FOUND,
            "unknown-domain",
        ),
        (
            serde_json::json!({ "url": format!("http://{SHOP}/p") }),
            StatusCode::UNAUTHORIZED,
            "no-token",
        ),
        (
            serde_json::json!({ "prerenderToken": TOKEN }),
            StatusCode::BAD_REQUEST,
            "bad-recache",
        ),
    ];
    for (body, status, code) in recaches {
        let response = stack
            .client
            .post(format!("{}recache", service_url(&stack)))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(header(&response, "x-kiln-error"), code);
    }

    // Nothing was rendered or stored, and no site was asked for a page.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stack.store.render_log().read("0", 10).await.unwrap();
    assert!(log.is_empty(), "{log:#?}");
    let now = kiln_core::unix_millis_now();
    assert_eq!(stack.store.pages().count(&shop.id, now).await.unwrap(), 0);
    assert_eq!(stack.demo.page_loads(), 0);
}
