//! Per-domain settings on the bot path: the domain's own bot patterns, the families of bots it
//! renders for, the paths it renders, and one render per URL when it does not tell phones from
//! desktops; all in force as soon as published. Also: without the edge, the gateway classifies
//! User-Agents itself, from the edge's own data file.

use crate::helpers::{GOOGLEBOT, GOOGLEBOT_SMARTPHONE, PAGE, TestApp, spawn_app};
use kiln_core::{BotFamily, CacheKey, DeviceClass, DomainSettings, NormalizedUrl};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

const RENDERED: &str = "<!doctype html><html><head><title>Rendered</title></head><body><h1>Rendered</h1></body></html>";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The `X-Kiln-Cache` a response carries, if any.
fn cache_status(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-kiln-cache")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_domain_bot_pattern_sends_a_request_the_edge_took_for_a_person_down_the_bot_path() {
    let gw = spawn_app(DomainSettings {
        bot_user_agents: strings(&["MyCrawler", "Screaming Frog"]),
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;

    for agent in [
        "Mozilla/5.0 (compatible; mycrawler/2.0)",
        "Screaming Frog SEO Spider/19.0",
    ] {
        let response = gw.person_as("/products/1", agent).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cache_status(&response).as_deref(), Some("HIT"), "{agent}");
        assert_eq!(response.text().await.unwrap(), RENDERED);
    }
    assert_eq!(gw.origin.log.count(), 0, "the crawlers got the render");

    let person = gw.person(Method::GET, "/products/1").send().await.unwrap();
    assert_eq!(cache_status(&person), None);
    assert_eq!(person.text().await.unwrap(), PAGE);
    assert_eq!(gw.origin.log.count(), 1, "people still reach the origin");
}

/// A GET for `path` on `shop.test` from `user_agent` that did not come through the edge (no
/// `X-Is-Bot`).
fn direct(gw: &TestApp, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
    gw.client
        .get(gw.url(path))
        .header("host", "shop.test")
        .header("user-agent", user_agent)
}

#[tokio::test]
async fn without_the_edge_the_gateway_classifies_user_agents_as_the_edge_does() {
    let gw = spawn_app(DomainSettings::default()).await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;
    for bot in [
        GOOGLEBOT,
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    ] {
        let response = direct(&gw, "/products/1", bot).send().await.unwrap();
        assert_eq!(cache_status(&response).as_deref(), Some("HIT"), "{bot}");
        assert_eq!(response.text().await.unwrap(), RENDERED);
    }
    assert_eq!(gw.origin.log.count(), 0);
    // People, clients deliberately not listed, and bots fetching assets reach the origin.
    for (path, agent) in [
        (
            "/products/1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        ),
        ("/products/1", "curl/8.5.0"),
        ("/products/1", ""),
        ("/app.js", GOOGLEBOT),
    ] {
        let response = direct(&gw, path, agent).send().await.unwrap();
        assert_eq!(cache_status(&response), None, "{agent} {path}");
    }
    assert_eq!(gw.origin.log.count(), 4);
    // The edge's verdict stands when there is one: it took this Googlebot for a person.
    let response = gw.person_as("/products/1", GOOGLEBOT).send().await.unwrap();
    assert_eq!(cache_status(&response), None);
    assert_eq!(gw.origin.log.count(), 5);
}

#[tokio::test]
async fn bots_of_families_the_domain_does_not_render_for_get_the_origins_page() {
    let gw = spawn_app(DomainSettings {
        bot_families: [BotFamily::Search, BotFamily::Social].into(),
        bot_user_agents: strings(&["AcmeAudit"]),
        bot_wait_ms: 5_000,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;
    let gptbot = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";
    let ahrefs = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)";

    // Through the edge (which names the family) and straight to the gateway alike.
    let through_edge = gw
        .bot_as("/products/1", gptbot)
        .header("x-kiln-bot-family", "ai")
        .send()
        .await
        .unwrap();
    assert_eq!(cache_status(&through_edge), None);
    assert_eq!(through_edge.text().await.unwrap(), PAGE);
    let direct_seo = direct(&gw, "/products/1", ahrefs).send().await.unwrap();
    assert_eq!(cache_status(&direct_seo), None);
    assert_eq!(gw.origin.log.count(), 2);

    // Googlebot and a link unfurler get the render; so does the domain's own crawler, whatever its
    // family would be.
    for agent in [
        GOOGLEBOT,
        "Twitterbot/1.0",
        "Mozilla/5.0 (compatible; AcmeAudit/1.0)",
    ] {
        let response = direct(&gw, "/products/1", agent).send().await.unwrap();
        assert_eq!(cache_status(&response).as_deref(), Some("HIT"), "{agent}");
    }
    assert_eq!(gw.origin.log.count(), 2);
}

#[tokio::test]
async fn bots_asking_for_excluded_paths_are_proxied_like_people() {
    // A long budget: were the path taken for rendering, the bot would wait and come back marked.
    let gw = spawn_app(DomainSettings {
        exclude_paths: strings(&["/admin*", "*/print"]),
        bot_wait_ms: 5_000,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/admin/users", DeviceClass::Desktop, RENDERED)
        .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;

    let started = Instant::now();
    for path in ["/admin", "/admin/users?page=2", "/products/1/print"] {
        let response = gw.bot(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cache_status(&response), None, "{path}");
        assert_eq!(response.text().await.unwrap(), PAGE, "{path}");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "no bot waited");
    let seen: Vec<String> = gw
        .origin
        .log
        .requests()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(seen, ["/admin", "/admin/users?page=2", "/products/1/print"]);

    let rendered = gw.bot("/products/1").send().await.unwrap();
    assert_eq!(cache_status(&rendered).as_deref(), Some("HIT"));
    assert_eq!(gw.origin.log.count(), 3);
}

#[tokio::test]
async fn with_an_include_list_only_those_paths_are_rendered() {
    let gw = spawn_app(DomainSettings {
        include_paths: strings(&["/", "/blog/*"]),
        exclude_paths: strings(&["/blog/drafts/*"]),
        ..DomainSettings::default()
    })
    .await;
    for path in ["/", "/blog/hello", "/blog/drafts/next", "/shop"] {
        gw.cache_page(path, DeviceClass::Desktop, RENDERED).await;
    }

    for (path, rendered) in [
        ("/", true),
        ("/blog/hello", true),
        ("/blog/drafts/next", false),
        ("/shop", false),
        ("/blog", false),
    ] {
        let response = gw.bot(path).send().await.unwrap();
        let expected = rendered.then_some("HIT");
        assert_eq!(cache_status(&response).as_deref(), expected, "{path}");
        let body = response.text().await.unwrap();
        assert_eq!(body, if rendered { RENDERED } else { PAGE }, "{path}");
    }
    assert_eq!(gw.origin.log.count(), 3);
}

#[tokio::test]
async fn without_device_variants_phones_and_desktops_share_one_render() {
    let gw = spawn_app(DomainSettings {
        device_variants: false,
        bot_wait_ms: 200,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;
    let phone = gw
        .bot_as("/products/1", GOOGLEBOT_SMARTPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_status(&phone).as_deref(), Some("HIT"));
    assert_eq!(phone.text().await.unwrap(), RENDERED);

    // An uncached page asked for by both: the one render is the desktop one (no worker runs here,
    // so both bots fall back to the origin, and the render lock they took is still held).
    for agent in [GOOGLEBOT_SMARTPHONE, GOOGLEBOT] {
        let response = gw.bot_as("/products/2", agent).send().await.unwrap();
        assert_eq!(cache_status(&response).as_deref(), Some("BYPASS"));
    }
    let key = |device| {
        let url = NormalizedUrl::from_request("http", &gw.domain.host, "/products/2", &[]).unwrap();
        CacheKey::new(&gw.domain.id, device, &url)
    };
    let ttl = Duration::from_secs(60);
    assert!(
        !gw.store
            .pages()
            .try_lock_render(&key(DeviceClass::Desktop), "test", ttl)
            .await
            .unwrap(),
        "the desktop render was asked for"
    );
    assert!(
        gw.store
            .pages()
            .try_lock_render(&key(DeviceClass::Mobile), "test", ttl)
            .await
            .unwrap(),
        "no mobile render was asked for"
    );
}

#[tokio::test]
async fn with_device_variants_phones_get_their_own_render() {
    // The control for the test above: the same request misses the desktop entry by default.
    let gw = spawn_app(DomainSettings {
        bot_wait_ms: 100,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, RENDERED)
        .await;
    let phone = gw
        .bot_as("/products/1", GOOGLEBOT_SMARTPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_status(&phone).as_deref(), Some("BYPASS"));
    gw.cache_page("/products/1", DeviceClass::Mobile, "mobile")
        .await;
    let phone = gw
        .bot_as("/products/1", GOOGLEBOT_SMARTPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(phone.text().await.unwrap(), "mobile");
}

#[tokio::test]
async fn changed_settings_take_effect_as_soon_as_they_are_published() {
    let mut gw = spawn_app(DomainSettings::default()).await;
    gw.cache_page("/admin", DeviceClass::Desktop, RENDERED)
        .await;
    let before = gw.bot("/admin").send().await.unwrap();
    assert_eq!(cache_status(&before).as_deref(), Some("HIT"));
    let crawler = "Mozilla/5.0 (compatible; MyCrawler/1.0)";
    let person = gw.person_as("/admin", crawler).send().await.unwrap();
    assert_eq!(cache_status(&person), None);

    gw.change_settings(DomainSettings {
        exclude_paths: strings(&["/admin*"]),
        bot_user_agents: strings(&["mycrawler"]),
        include_paths: strings(&["/blog/*", "/admin"]),
        ..DomainSettings::default()
    })
    .await;
    // Well under the directory's 30 s full re-read: the change event did it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let bot = gw.bot("/admin").send().await.unwrap();
        if cache_status(&bot).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new exclude list never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The bot patterns were rebuilt with the path rules.
    gw.cache_page("/blog/a", DeviceClass::Desktop, RENDERED)
        .await;
    let crawled = gw.person_as("/blog/a", crawler).send().await.unwrap();
    assert_eq!(cache_status(&crawled).as_deref(), Some("HIT"));
}
