//! Freshness on the bot path, without a worker: a stale entry is served at once and queues one
//! refresh; a page that failed to render moments ago is neither rendered again nor refreshed.

use crate::helpers::{PAGE, TestApp, spawn_app};
use kiln_core::{DeviceClass, DomainSettings};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

/// Waits until the entry `put` stored (fresh for one second) has gone stale.
async fn until_stale() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_stale_page_is_served_at_once_and_refreshed_once_in_the_background() {
    let gw = spawn_app(DomainSettings::default()).await;
    let (_, key) = gw.key("/products/3", DeviceClass::Desktop);
    gw.cache_page_for(
        "/products/3",
        DeviceClass::Desktop,
        "<p>old render</p>",
        1,
        600,
    )
    .await;

    let fresh = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(fresh.headers()["x-kiln-cache"], "HIT");
    assert!(!gw.store.pages().render_locked(&key).await.unwrap());

    until_stale().await;
    let started = Instant::now();
    let stale = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()["x-kiln-cache"], "STALE");
    assert!(stale.headers().contains_key("age"));
    assert_eq!(stale.text().await.unwrap(), "<p>old render</p>");
    // No worker runs here: a bot waiting for the render would take its whole budget (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // One refresh is under way (its render lock is taken), and more stale hits add none.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.store.pages().render_locked(&key).await.unwrap() {
        assert!(Instant::now() < deadline, "no refresh was started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let again = gw.bot("/products/3").send().await.unwrap();
        assert_eq!(again.headers()["x-kiln-cache"], "STALE");
    }
    assert_eq!(
        gw.origin.log.count(),
        0,
        "the origin is not asked for stale pages"
    );
}

#[tokio::test]
async fn a_recent_failure_sends_bots_to_the_origin_at_once_and_holds_back_refreshes() {
    let gw = spawn_app(DomainSettings::default()).await;
    let (_, cold) = gw.key("/products/1", DeviceClass::Desktop);
    gw.store
        .pages()
        .put_failure(&cold, "the origin answered 500", Duration::from_secs(30))
        .await
        .unwrap();
    let started = Instant::now();
    let bypassed = gw.bot("/products/1").send().await.unwrap();
    assert_eq!(bypassed.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(bypassed.text().await.unwrap(), PAGE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not held for a render"
    );
    assert!(
        !gw.store.pages().render_locked(&cold).await.unwrap(),
        "no render was queued"
    );

    // A stale copy of a page that just failed to refresh is served, and not refreshed again.
    let stale_key = gw
        .cache_page_for("/products/2", DeviceClass::Desktop, "<p>kept</p>", 1, 600)
        .await;
    gw.store
        .pages()
        .put_failure(&stale_key, "timeout", Duration::from_secs(30))
        .await
        .unwrap();
    until_stale().await;
    let stale = gw.bot("/products/2").send().await.unwrap();
    assert_eq!(stale.headers()["x-kiln-cache"], "STALE");
    assert_eq!(stale.text().await.unwrap(), "<p>kept</p>");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gw.store.pages().render_locked(&stale_key).await.unwrap());
}

#[tokio::test]
async fn a_domain_without_a_stale_window_renders_again_once_the_page_expires() {
    let settings = DomainSettings {
        stale_ttl_secs: 0,
        bot_wait_ms: 200,
        ..DomainSettings::default()
    };
    let gw = spawn_app(settings).await;
    gw.cache_page_for("/products/3", DeviceClass::Desktop, "<p>old</p>", 1, 0)
        .await;
    assert_eq!(
        gw.bot("/products/3").send().await.unwrap().headers()["x-kiln-cache"],
        "HIT"
    );
    until_stale().await;
    // Expired: nothing stale to serve, so the bot waits its budget and gets the origin's page.
    let response = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
}

#[tokio::test]
async fn cached_pages_go_compressed_to_bots_that_take_gzip_and_answer_conditional_requests() {
    use std::io::Read;
    let gw = spawn_app(DomainSettings::default()).await;
    let html: String = (0..500).map(|i| format!("<li>Item {i}</li>\n")).collect();
    gw.cache_page_for("/list", DeviceClass::Desktop, &html, 60, 600)
        .await;

    let gzipped = gw
        .bot("/list")
        .header("accept-encoding", "br, gzip;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["x-kiln-cache"], "HIT");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "Accept-Encoding");
    let etag = gzipped.headers()["etag"].to_str().unwrap().to_owned();
    let last_modified = gzipped.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let length: usize = gzipped.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = gzipped.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    assert!(body.len() < html.len() / 3, "{} bytes", body.len());
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, html);

    // A bot without gzip (or refusing it) gets the HTML itself, with the same validator.
    for accept in [None, Some("identity"), Some("gzip;q=0")] {
        let mut request = gw.bot("/list");
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        let plain = request.send().await.unwrap();
        assert!(
            !plain.headers().contains_key("content-encoding"),
            "{accept:?}"
        );
        assert_eq!(plain.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(plain.text().await.unwrap(), html, "{accept:?}");
    }

    // Conditional requests: the same page again is 304 without a body.
    for (name, value) in [
        ("if-none-match", etag.clone()),
        (
            "if-none-match",
            format!("\"other\", {}", etag.trim_start_matches("W/")),
        ),
        ("if-modified-since", last_modified.clone()),
    ] {
        let again = gw.bot("/list").header(name, &value).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}: {value}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(again.headers()["x-kiln-cache"], "HIT");
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let changed = gw
        .bot("/list")
        .header("if-none-match", "W/\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    // HEAD: the headers of the page, no body.
    let head = gw
        .client
        .head(gw.url("/list"))
        .header("host", "shop.test")
        .header("x-is-bot", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        html.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
}

/// Stores `html` for `path` in Redis without telling anyone (no event), as if it had changed behind
/// the gateway's back.
async fn overwrite_silently(gw: &TestApp, path: &str, html: &str) {
    gw.cache_page_for(path, DeviceClass::Desktop, html, 60, 0)
        .await;
}

async fn body_of(gw: &TestApp, path: &str) -> (String, String) {
    let response = gw.bot(path).send().await.unwrap();
    let cache = response
        .headers()
        .get("x-kiln-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (cache, response.text().await.unwrap())
}

/// A page under `prefix` that the gateway serves from memory, holding `v1` there and `v2` in Redis.
/// Once the gateway follows the event channel, a page it served comes from memory: a change in
/// Redis that nobody announced is not seen. (Each try uses a new page, untouched by the last.)
async fn a_page_in_memory(gw: &TestApp, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let path = format!("{prefix}/{attempt}");
        overwrite_silently(gw, &path, "v1").await;
        assert_eq!(body_of(gw, &path).await, ("HIT".into(), "v1".into()));
        overwrite_silently(gw, &path, "v2").await;
        if body_of(gw, &path).await.1 == "v1" {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "pages are never served from memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `path` comes back as `expected`, for at most a second (the promise for purges and
/// re-renders reaching every gateway's memory).
async fn within_a_second(gw: &TestApp, path: &str, expected: impl Fn(&str, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (cache, body) = body_of(gw, path).await;
        if expected(&cache, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {cache} {body:?} after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hot_pages_are_served_from_memory_until_a_render_or_a_purge_drops_them_everywhere() {
    let settings = DomainSettings {
        bot_wait_ms: 100,
        ..DomainSettings::default()
    };
    let gw = spawn_app(settings).await;
    let path = a_page_in_memory(&gw, "/hot").await;
    let path = path.as_str();

    // A finished render is announced: every gateway drops its copy.
    let (_, key) = gw.key(path, DeviceClass::Desktop);
    gw.store
        .pages()
        .announce_render(
            &key,
            kiln_core::RenderOutcome::Stored {
                status: 200,
                render_ms: 5,
            },
        )
        .await
        .unwrap();
    within_a_second(&gw, path, |_, body| body == "v2").await;

    // A purge of the page: gone from memory too, so the bot is not served the purged copy.
    gw.store
        .pages()
        .purge(std::slice::from_ref(&key))
        .await
        .unwrap();
    within_a_second(&gw, path, |cache, body| cache == "BYPASS" && body == PAGE).await;

    // A purge by prefix drops the domain's pages from memory.
    overwrite_silently(&gw, path, "v3").await;
    assert_eq!(body_of(&gw, path).await.1, "v3");
    overwrite_silently(&gw, path, "v4").await;
    assert_eq!(body_of(&gw, path).await.1, "v3", "served from memory");
    gw.store
        .pages()
        .purge_prefix(&gw.domain.id, "/nothing-cached-here/")
        .await
        .unwrap();
    within_a_second(&gw, path, |_, body| body == "v4").await;
}

/// Every response carries one `X-Request-Id`, a sane one the client sent or else a fresh one: a page
/// served from memory (whose headers hold a place for it) as much as one read from Redis or the
/// origin's.
#[tokio::test]
async fn every_response_carries_one_request_id() {
    let gw = spawn_app(DomainSettings::default()).await;
    let ids = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    // Read from Redis: a page never asked for is not in memory.
    overwrite_silently(&gw, "/ids/redis", "v1").await;
    let from_redis = gw
        .bot("/ids/redis")
        .header("x-request-id", "from-redis")
        .send()
        .await
        .unwrap();
    assert_eq!(from_redis.headers()["x-kiln-cache"], "HIT");
    assert_eq!(ids(&from_redis), ["from-redis"]);
    let path = a_page_in_memory(&gw, "/ids").await;
    let mut fresh = Vec::new();
    for attempt in 0..3 {
        let given = format!("client-id-{attempt}");
        let response = gw
            .bot(&path)
            .header("x-request-id", &given)
            .send()
            .await
            .unwrap();
        assert_eq!(ids(&response), [given]);
        assert_eq!(response.text().await.unwrap(), "v1", "from memory");
        let response = gw.bot(&path).send().await.unwrap();
        let id = ids(&response);
        assert!(
            id.len() == 1 && id[0].len() == 32 && id[0].bytes().all(|b| b.is_ascii_hexdigit()),
            "{id:?}"
        );
        assert_eq!(response.text().await.unwrap(), "v1", "from memory");
        fresh.extend(id);
    }
    fresh.sort();
    fresh.dedup();
    assert_eq!(fresh.len(), 3, "a fresh id for each request");
    let person = gw.person(Method::GET, &path).send().await.unwrap();
    let id = ids(&person);
    assert!(id.len() == 1 && !id[0].is_empty(), "{id:?}");
}
