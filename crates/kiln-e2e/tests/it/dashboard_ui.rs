//! The web dashboard in a real browser: Debian's Chromium, driven over CDP by chromiumoxide (as the
//! worker drives it), against the whole platform. A customer signs up, adds a domain, verifies it
//! against the test dnsmasq, warms it from a sitemap and watches the progress reach 100 %, finds
//! the pages in the cache list, purges one (and it is gone from Redis too), views a page as a bot,
//! creates and revokes an API key, changes a setting and finds it in the audit log.
//!
//! With `KILN_SCREENSHOTS_DIR` set, the main pages are saved there as PNGs (`just screenshots`
//! refreshes `docs/screenshots/`).

use crate::helpers::TestPlatform;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use kiln_testkit::dns::DnsRecord;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A headless Chromium for one test, closed when dropped (chromiumoxide kills its child).
struct TestBrowser {
    browser: Browser,
    _profile: tempfile::TempDir,
}

impl TestBrowser {
    async fn start() -> Self {
        let chrome =
            std::env::var("KILN_CHROME_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(chrome)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            .args([
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
            ])
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(60))
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config).await.expect("chromium launches");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        TestBrowser {
            browser,
            _profile: profile,
        }
    }
}

/// Evaluates `js` in the page, retrying while a navigation replaces the document.
async fn eval<T: DeserializeOwned>(page: &Page, js: &str) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match page.evaluate(js).await {
            Ok(result) => match result.into_value::<T>() {
                Ok(value) => return value,
                Err(error) if Instant::now() > deadline => panic!("`{js}`: {error}"),
                Err(_) => {}
            },
            Err(error) if Instant::now() > deadline => panic!("`{js}`: {error}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the JavaScript condition `js` holds in the loaded page.
async fn wait_until(page: &Page, js: &str, what: &str, timeout: Duration) {
    let check = format!("document.readyState === 'complete' && !!({js})");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(result) = page.evaluate(check.as_str()).await
            && result.into_value::<bool>().unwrap_or(false)
        {
            return;
        }
        if Instant::now() > deadline {
            let url = page.url().await.ok().flatten().unwrap_or_default();
            let text: String = eval(page, "document.body ? document.body.innerText : ''").await;
            panic!("{what}: not seen within {timeout:?} on {url}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the page at `path` to have loaded.
async fn wait_for_path(page: &Page, path: &str) {
    let js = format!(
        "location.pathname === {}",
        serde_json::to_string(path).unwrap()
    );
    wait_until(
        page,
        &js,
        &format!("the page {path}"),
        Duration::from_secs(30),
    )
    .await;
}

async fn wait_for_text(page: &Page, text: &str) {
    let js = format!(
        "document.body.innerText.includes({})",
        serde_json::to_string(text).unwrap()
    );
    wait_until(
        page,
        &js,
        &format!("the text {text:?}"),
        Duration::from_secs(30),
    )
    .await;
}

/// Types into the field like a person (focus, then key presses).
async fn type_into(page: &Page, selector: &str, text: &str) {
    let field = page.find_element(selector).await.expect(selector);
    field.click().await.expect(selector);
    eval::<bool>(
        page,
        &format!("(document.querySelector('{selector}').value = '', true)"),
    )
    .await;
    field.type_str(text).await.expect(selector);
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
}

async fn text_of(page: &Page, selector: &str) -> String {
    eval(
        page,
        &format!("document.querySelector('{selector}').textContent.trim()"),
    )
    .await
}

/// Saves a screenshot of the whole page when `KILN_SCREENSHOTS_DIR` is set.
async fn screenshot(page: &Page, name: &str) {
    let Some(dir) = std::env::var_os("KILN_SCREENSHOTS_DIR").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let params = ScreenshotParams::builder().full_page(true).build();
    let png = page.screenshot(params).await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn set_viewport(page: &Page, width: i64, height: i64, mobile: bool) {
    page.execute(SetDeviceMetricsOverrideParams::new(
        width,
        height,
        if mobile { 3.0 } else { 1.0 },
        mobile,
    ))
    .await
    .expect("viewport");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_manages_kiln_from_the_browser() {
    let platform = TestPlatform::start().await;
    let base = platform.api.base.clone();
    let host = "shop.ui.test";
    let browser = TestBrowser::start().await;
    let page = browser
        .browser
        .new_page(format!("{base}/signup"))
        .await
        .expect("a page");
    set_viewport(&page, 1280, 900, false).await;

    // ---- sign up ------------------------------------------------------------------------------
    wait_for_path(&page, "/signup").await;
    type_into(&page, "#email", "owner@ui.example").await;
    type_into(&page, "#password", "password123").await;
    type_into(&page, "#password_confirm", "password123").await;
    click(&page, "button[type=submit].primary").await;
    // A weak password is refused next to its field, and the email is kept.
    wait_until(
        &page,
        "document.querySelector('#password-error')",
        "the password error",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        eval::<String>(&page, "document.querySelector('#email').value").await,
        "owner@ui.example"
    );
    let password = "correct horse battery staple";
    type_into(&page, "#password", password).await;
    type_into(&page, "#password_confirm", password).await;
    click(&page, "button[type=submit].primary").await;
    wait_for_path(&page, "/domains/new").await;
    wait_for_text(&page, "Welcome to Kiln").await;

    // ---- add a domain -------------------------------------------------------------------------
    type_into(&page, "#hostname", host).await;
    type_into(&page, "#origin", &platform.site.base()).await;
    click(&page, "button[type=submit].primary").await;
    wait_for_text(&page, &format!("Added {host}.")).await;
    let domain_path: String = eval(&page, "location.pathname").await;
    let domain_id = domain_path.trim_start_matches("/domains/").to_owned();
    assert_eq!(
        text_of(&page, "#cname-target").await,
        crate::helpers::CNAME_TARGET
    );
    let txt_name = text_of(&page, "#txt-name").await;
    let txt_value = text_of(&page, "#txt-value").await;
    assert_eq!(txt_name, format!("_kiln-challenge.{host}"));
    assert!(txt_value.starts_with("kiln-verify-"), "{txt_value}");
    assert!(
        text_of(&page, ".heading .badge")
            .await
            .contains("Waiting for DNS"),
        "pending before the record exists"
    );

    // ---- verify it against dnsmasq ------------------------------------------------------------
    platform.add_dns(&[DnsRecord::txt(&txt_name, &txt_value)]);
    click(&page, "form[action$='/verify'] button").await;
    wait_for_text(&page, &format!("{host} is verified")).await;
    assert_eq!(text_of(&page, ".heading .badge").await, "Verified");
    screenshot(&page, "domain").await;

    // ---- warm from a sitemap, watching the progress bar ----------------------------------------
    let paths = ["/", "/products/1", "/products/2", "/products/3"];
    let urls: String = paths
        .iter()
        .map(|p| format!("<url><loc>http://{host}{p}</loc></url>"))
        .collect();
    platform.site.serve(
        "/sitemap.xml",
        StatusCode::OK,
        "application/xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>"#
        )
        .into_bytes(),
    );
    page.goto(format!("{base}/domains/{domain_id}/cache"))
        .await
        .unwrap();
    wait_for_path(&page, &format!("/domains/{domain_id}/cache")).await;
    assert!(eval::<bool>(&page, "!!document.querySelector('#no-pages')").await);
    type_into(&page, "#sitemap_url", &format!("http://{host}/sitemap.xml")).await;
    click(&page, "form[action$='/warm'] button").await;
    wait_until(
        &page,
        "location.pathname.includes('/warm/')",
        "the warm page",
        Duration::from_secs(30),
    )
    .await;
    // The page's own script follows the job: the bar must reach 100 % without a reload.
    let warm_url: String = eval(&page, "location.href").await;
    wait_until(
        &page,
        "document.querySelector('#warm-percent').textContent === '100 %' \
         && document.querySelector('#warm-progress').value === 100 \
         && !document.querySelector('#warm-finished').hidden",
        "warming reaching 100 %",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(
        eval::<String>(&page, "location.href").await,
        warm_url,
        "no reload"
    );
    // Each URL once per device variant (the default: desktop and mobile).
    let total = paths.len() * 2;
    assert_eq!(text_of(&page, "#warm-done").await, total.to_string());
    assert_eq!(text_of(&page, "#warm-failed").await, "0");
    assert_eq!(text_of(&page, "#warm-state").await, "done");
    screenshot(&page, "warm").await;

    // ---- the cache list -----------------------------------------------------------------------
    click(&page, "#warm-finished a").await;
    wait_for_path(&page, &format!("/domains/{domain_id}/cache")).await;
    let listed: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('#cache-table td.url')].map(td => td.textContent.trim())",
    )
    .await;
    assert_eq!(listed.len(), total, "{listed:?}");
    for path in paths {
        let url = format!("http://{host}{path}");
        assert_eq!(
            listed.iter().filter(|u| **u == url).count(),
            2,
            "{url} in {listed:?}"
        );
    }
    screenshot(&page, "cache").await;

    // Searching narrows the list.
    type_into(&page, "#q", "/products/").await;
    click(&page, "form[role=search] button").await;
    wait_until(
        &page,
        "location.search.includes('q=')",
        "the search",
        Duration::from_secs(30),
    )
    .await;
    let listed: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('#cache-table td.url')].map(td => td.textContent.trim())",
    )
    .await;
    assert_eq!(listed.len(), 6, "{listed:?}");

    // ---- purge one page: gone from the list and from Redis -------------------------------------
    let target = format!("http://{host}/products/2");
    let purge_button = format!("button[aria-label='Purge {target}']");
    click(&page, &purge_button).await;
    wait_for_text(&page, &format!("Purged {target}: 2 cache entries removed.")).await;
    let listed: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('#cache-table td.url')].map(td => td.textContent.trim())",
    )
    .await;
    assert_eq!(listed.len(), total - 2, "{listed:?}");
    assert!(!listed.contains(&target), "{listed:?}");
    let in_redis = platform
        .store
        .pages()
        .list(&domain_id, "", None, 1000)
        .await
        .unwrap();
    let redis_urls: Vec<&str> = in_redis.pages.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(redis_urls.len(), total - 2, "{redis_urls:?}");
    assert!(!redis_urls.contains(&target.as_str()), "{redis_urls:?}");

    // A bot is now served from what warming stored (counted for the hit-ratio chart below).
    let (cache, _) = platform.bot_get(host, "/products/1").await;
    assert_eq!(cache, "HIT");

    // The warm job is listed as done.
    let warm_state: String = text_of(&page, "#warm-jobs tbody tr .badge").await;
    assert_eq!(warm_state, "done");

    // ---- view as bot, from the cache list --------------------------------------------------------
    let shown = format!("http://{host}/products/3");
    click(&page, &format!("a[aria-label='View {shown} as a bot']")).await;
    wait_for_path(&page, &format!("/domains/{domain_id}/preview")).await;
    assert_eq!(
        eval::<String>(&page, "document.querySelector('#url').value").await,
        shown
    );
    click(&page, "form[action$='/preview'] button").await;
    wait_until(
        &page,
        "document.querySelector('#preview-result')",
        "the preview",
        Duration::from_secs(90),
    )
    .await;
    let html = text_of(&page, "pre.source code").await;
    assert!(
        html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"),
        "{html}"
    );
    assert!(html.contains("<title>"), "rendered head: {html}");
    screenshot(&page, "preview").await;

    // ---- compare with people: a parity check through the real worker ---------------------------
    click(&page, "#preview-result form[action$='/parity'] button").await;
    wait_until(
        &page,
        "document.querySelector('#parity-check[data-state=\"done\"] .score-number')",
        "the parity check's report",
        Duration::from_secs(120),
    )
    .await;
    // The demo's product page is what people see: the snapshot differs by a sliver at most.
    let score = text_of(&page, ".score-number").await;
    let percent: f64 = score
        .trim_start_matches('<')
        .trim_end_matches('%')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a score in percent: {score}"));
    assert!(percent < 0.5, "the demo's snapshot differs by {score}");
    wait_until(
        &page,
        "Array.from(document.querySelectorAll('.shots img')).filter(i => i.complete && i.naturalWidth > 0).length === 3",
        "the live page, the snapshot and the difference shown",
        Duration::from_secs(10),
    )
    .await;
    screenshot(&page, "parity").await;

    // ---- API keys: create (shown once, copyable), use, revoke ----------------------------------
    page.goto(format!("{base}/keys")).await.unwrap();
    wait_for_path(&page, "/keys").await;
    type_into(&page, "#name", "CI deploys").await;
    click(&page, "form[action='/keys'] button").await;
    wait_until(
        &page,
        "document.querySelector('#new-key')",
        "the new key",
        Duration::from_secs(30),
    )
    .await;
    let secret = text_of(&page, "#new-key").await;
    assert!(secret.starts_with("kiln_live_"), "{secret}");
    assert!(
        eval::<bool>(
            &page,
            "!!document.querySelector('button.copy[data-copy=new-key]')"
        )
        .await
    );
    screenshot(&page, "keys").await;
    let tenant = platform.api.with_key(&secret);
    let (status, domains) = tenant.domains().await;
    assert_eq!(status, StatusCode::OK, "{domains}");
    assert_eq!(domains["domains"][0]["hostname"], host);
    // The page asks before revoking; the test answers yes.
    eval::<bool>(&page, "(window.confirm = () => true, true)").await;
    click(&page, "#keys-table button.danger").await;
    wait_for_text(&page, "Revoked the key “CI deploys”").await;
    let (status, _) = tenant.domains().await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key fails at once"
    );

    // ---- a setting change lands in the audit log -----------------------------------------------
    page.goto(format!("{base}{domain_path}")).await.unwrap();
    wait_for_path(&page, &domain_path).await;
    type_into(&page, "#cache_ttl_secs", "600").await;
    click(&page, "form.settings button[type=submit]").await;
    wait_for_text(&page, &format!("Saved the settings of {host}.")).await;
    page.goto(format!("{base}/audit")).await.unwrap();
    wait_for_path(&page, "/audit").await;
    wait_for_text(&page, "settings.cache_ttl_secs: 3600 → 600").await;
    let actions: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('#audit-table td.mono')].map(td => td.textContent.trim())",
    )
    .await;
    for action in [
        "domain.update",
        "api_key.revoke",
        "api_key.create",
        "cache.purge",
        "cache.warm",
        "domain.verify",
        "domain.add",
        "account.signup",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    screenshot(&page, "audit").await;

    // ---- the remaining pages, for the screenshots and to see that they show their data ---------
    page.goto(format!("{base}/activity")).await.unwrap();
    wait_for_path(&page, "/activity").await;
    // The page copies the latest renders in before reading; the bot's hit reaches the gateway's
    // counters within a second or so.
    assert!(eval::<bool>(&page, "!!document.querySelector('#render-log')").await);
    let hit_ratio = "document.querySelectorAll('figure.chart svg')[1].textContent";
    let deadline = Instant::now() + Duration::from_secs(30);
    while eval::<String>(&page, hit_ratio).await.contains("No data") {
        assert!(Instant::now() < deadline, "the hit ratio chart stays empty");
        tokio::time::sleep(Duration::from_secs(1)).await;
        page.reload().await.unwrap();
        wait_for_path(&page, "/activity").await;
    }
    assert_eq!(
        eval::<usize>(
            &page,
            "document.querySelectorAll('figure.chart svg').length"
        )
        .await,
        6,
        "three charts for each period"
    );
    screenshot(&page, "activity").await;

    page.goto(format!("{base}/domains")).await.unwrap();
    wait_for_path(&page, "/domains").await;
    let row: String = text_of(&page, "table.list tbody tr").await;
    assert!(row.contains(host) && row.contains("Verified"), "{row}");
    screenshot(&page, "domains").await;
    // Phone-sized: the page must not scroll sideways.
    set_viewport(&page, 390, 844, true).await;
    page.reload().await.unwrap();
    wait_for_path(&page, "/domains").await;
    let overflow: bool = eval(
        &page,
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1",
    )
    .await;
    assert!(!overflow, "the domain list scrolls sideways on a phone");
    screenshot(&page, "domains-phone").await;

    // The logged-out pages.
    set_viewport(&page, 1280, 900, false).await;
    click(&page, "form[action='/logout'] button").await;
    wait_for_path(&page, "/login").await;
    wait_for_text(&page, "You are logged out.").await;
    screenshot(&page, "login").await;
}
