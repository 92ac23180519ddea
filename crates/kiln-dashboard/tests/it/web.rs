//! The web dashboard over plain HTTP against real Postgres and Redis: log-in flows, CSRF, security
//! headers, escaping, and forms that keep their input and name the field at fault. (The pages in
//! a real browser, with warming and the cache, are driven through Chromium in `kiln-e2e`.)

use crate::helpers::{PASSWORD, TestServer, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::collections::BTreeMap;
use std::time::Duration;

/// A browser without a browser: keeps cookies, does not follow redirects, and can read the CSRF
/// token out of the last page.
struct WebClient {
    base: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` field.
    fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

impl WebClient {
    fn new(server: &TestServer) -> Self {
        WebClient {
            base: server.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.expect("the request failed");
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (name, val) = pair.split_once('=').unwrap();
            if val.is_empty() || value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), val.to_owned());
            }
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.finish(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.finish(request).await
    }

    async fn post_with(&mut self, path: &str, form: &[(&str, &str)], header: (&str, &str)) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header.0, header.1)
            .form(form);
        self.finish(request).await
    }

    /// Signs up through the form; returns the page the sign-up redirected to.
    async fn sign_up(&mut self, email: &str) -> Page {
        let form = self.get("/signup").await;
        let csrf = form.csrf();
        let done = self
            .post(
                "/signup",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let location = done.location().to_owned();
        self.get(&location).await
    }
}

#[tokio::test]
async fn pages_need_a_log_in_and_return_to_where_the_user_was_going() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let logout = web.get("/domains").await;
    let csrf = logout.csrf();
    let out = web.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(
        !web.cookies.contains_key("kiln_session"),
        "{:?}",
        web.cookies
    );

    let gated = web.get("/keys?x=1").await;
    assert_eq!(gated.status, StatusCode::SEE_OTHER);
    assert_eq!(gated.location(), "/login?next=%2Fkeys%3Fx%3D1");

    let login = web.get("/login?next=%2Fkeys%3Fx%3D1").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(web.cookies.contains_key("kiln_csrf"), "{:?}", web.cookies);
    let csrf = login.csrf();

    // Without the form's token: refused, and nothing is learnt about the password.
    let forged = web
        .post(
            "/login",
            &[("email", "owner@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert!(!web.cookies.contains_key("kiln_session"));

    let wrong = web
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "Owner@Example.com"),
                ("password", "not the password at all"),
                ("next", "/keys?x=1"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("The email or password is wrong"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains(r#"value="Owner@Example.com""#),
        "the email typed is kept"
    );
    assert!(!wrong.body.contains("not the password at all"));

    let csrf = wrong.csrf();
    let right = web
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "owner@example.com"),
                ("password", PASSWORD),
                ("next", "/keys?x=1"),
            ],
        )
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    assert_eq!(right.location(), "/keys?x=1");
    assert_eq!(web.get("/keys").await.status, StatusCode::OK);

    // `next` never leads off the site.
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let page = web.get("/login").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "logged in already");
        web.cookies.remove("kiln_session");
        let page = web.get("/login").await;
        let csrf = page.csrf();
        let done = web
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("email", "owner@example.com"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(done.location(), "/domains", "next = {next}");
    }
}

#[tokio::test]
async fn the_keys_page_revokes_every_key_at_once_with_the_sessions_csrf_token() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let page = web.get("/keys").await;
    assert!(
        !page.body.contains("/keys/revoke-all"),
        "no key to revoke yet"
    );
    for name in ["ci", "deploys"] {
        let csrf = web.get("/keys").await.csrf();
        let created = web.post("/keys", &[("csrf", &csrf), ("name", name)]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let page = web.get("/keys").await;
    assert!(
        page.body.contains(r#"action="/keys/revoke-all""#),
        "{}",
        page.body
    );
    let live = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&t.pg)
            .await
            .unwrap()
    };

    let forged = web.post("/keys/revoke-all", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(live().await, 2);

    let csrf = page.csrf();
    let done = web.post("/keys/revoke-all", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(live().await, 0);
    let shown = web.get(done.location()).await;
    assert!(
        shown.body.contains("Revoked all 2 live keys"),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains(r#"action="/keys/revoke-all""#));
}

#[tokio::test]
async fn state_changing_forms_need_the_sessions_csrf_token_and_a_same_site_origin() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    let page = web.sign_up("owner@example.com").await;
    let csrf = page.csrf();
    let domain = [
        ("hostname", "shop.example.com"),
        ("origin", "http://127.0.0.1:5173"),
    ];

    let missing = web.post("/domains", &domain).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let other = WebClient::new(&server).sign_up("other@example.com").await;
    let theirs = other.csrf();
    let foreign = web
        .post(
            "/domains",
            &[&domain[..], &[("csrf", theirs.as_str())]].concat(),
        )
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    let cross_site = web
        .post_with(
            "/domains",
            &[&domain[..], &[("csrf", csrf.as_str())]].concat(),
            ("sec-fetch-site", "cross-site"),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM domains")
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert_eq!(count, 0, "a refused form changed something");

    let added = web
        .post_with(
            "/domains",
            &[&domain[..], &[("csrf", csrf.as_str())]].concat(),
            ("sec-fetch-site", "same-origin"),
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let shown = web.get(added.location()).await;
    assert!(
        shown.body.contains("Added shop.example.com."),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("_kiln-challenge.shop.example.com"));
    // The flash is shown once.
    let again = web.get(added.location()).await;
    assert!(!again.body.contains("Added shop.example.com."));
}

#[tokio::test]
async fn the_add_domain_form_refuses_the_platforms_names_and_public_suffixes_next_to_the_field() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    let csrf = web.sign_up("owner@example.com").await.csrf();

    for (hostname, says) in [
        (crate::helpers::CNAME_TARGET, "is reserved"),
        ("shop.edge.kiln.test", "is reserved"),
        ("localhost", "is a single label"),
        ("github.io", "is a public suffix"),
    ] {
        let refused = web
            .post(
                "/domains",
                &[
                    ("csrf", csrf.as_str()),
                    ("hostname", hostname),
                    ("origin", "http://127.0.0.1:5173"),
                ],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{hostname}"
        );
        let error = refused
            .body
            .split(r#"id="hostname-error""#)
            .nth(1)
            .unwrap_or_else(|| panic!("{hostname}: no error at the field: {}", refused.body));
        assert!(
            // The form capitalises the message's first letter.
            error
                .split("</")
                .next()
                .unwrap()
                .to_lowercase()
                .contains(&format!("{hostname} {says}")),
            "{hostname}: {error}"
        );
        assert!(
            refused.body.contains(&format!(r#"value="{hostname}""#)),
            "{hostname}: the form lost what was typed"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM domains")
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert_eq!(count, 0, "a refused name was stored");
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_pages_escape_what_users_typed() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    let page = web.sign_up("owner@example.com").await;
    for headers in [&page.headers, &web.get("/api/v1/auth/me").await.headers] {
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(
            !headers.contains_key("strict-transport-security"),
            "a plain-http dashboard cannot ask for https"
        );
    }

    let csrf = page.csrf();
    let hostile = "<script>alert(1)</script>";
    let refused = web
        .post(
            "/domains",
            &[
                ("csrf", &csrf),
                ("hostname", hostile),
                ("origin", "http://127.0.0.1:5173"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!refused.body.contains(hostile), "{}", refused.body);
    assert!(
        refused
            .body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || refused
                .body
                .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"id="hostname-error""#));

    // A setting holding markup comes back as text in its box.
    let added = web
        .post(
            "/domains",
            &[
                ("csrf", &csrf),
                ("hostname", "shop.example.com"),
                ("origin", "http://127.0.0.1:5173"),
            ],
        )
        .await;
    let domain_path = added.location().to_owned();
    let settings = web.get(&domain_path).await;
    let saved = web
        .post(
            &format!("{domain_path}/settings"),
            &[
                ("csrf", &settings.csrf()),
                ("origin", "http://127.0.0.1:5173"),
                ("cache_ttl_secs", "600"),
                ("render_timeout_ms", "15000"),
                ("bot_wait_ms", "5000"),
                ("bot_user_agents", "</textarea><script>alert(2)</script>"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let shown = web.get(&domain_path).await;
    assert!(!shown.body.contains("<script>alert(2)"), "{}", shown.body);
    assert!(shown.body.contains("alert(2)"));

    // Assets: hashed names, cached for a year; anything else under /static is a 404.
    let css_path = shown
        .body
        .split(r#"<link rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let css = web.get(&css_path).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        web.get("/static/kiln.0000.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn forms_keep_what_was_typed_and_name_the_field_at_fault() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);

    let form = web.get("/signup").await;
    let weak = web
        .post(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", "new@example.com"),
                ("password", "password1"),
                ("password_confirm", "password1"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.body.contains(r#"id="password-error""#),
        "{}",
        weak.body
    );
    assert!(weak.body.contains(r#"value="new@example.com""#));
    let differ = web
        .post(
            "/signup",
            &[
                ("csrf", &weak.csrf()),
                ("email", "new@example.com"),
                ("password", PASSWORD),
                ("password_confirm", "something else entirely"),
            ],
        )
        .await;
    assert!(differ.body.contains(r#"id="password_confirm-error""#));
    assert!(differ.body.contains("The two passwords differ"));

    let page = web.sign_up("owner@example.com").await;
    let csrf = page.csrf();
    let added = web
        .post(
            "/domains",
            &[
                ("csrf", &csrf),
                ("hostname", "shop.example.com"),
                ("origin", "http://127.0.0.1:5173"),
            ],
        )
        .await;
    let domain_path = added.location().to_owned();
    let bad = web
        .post(
            &format!("{domain_path}/settings"),
            &[
                ("csrf", &csrf),
                ("origin", "http://127.0.0.1:5173"),
                ("cache_ttl_secs", "a day"),
                ("render_timeout_ms", "15000"),
                ("bot_wait_ms", "5000"),
                ("exclude_paths", "/admin/*\nno-slash"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains(r#"id="cache_ttl_secs-error""#),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("Must be a whole number"));
    assert!(
        bad.body.contains(r#"value="a day""#),
        "the typed value is kept"
    );
    assert!(bad.body.contains("/admin/*\nno-slash"));

    let out_of_range = web
        .post(
            &format!("{domain_path}/settings"),
            &[
                ("csrf", &csrf),
                ("origin", "http://127.0.0.1:5173"),
                ("cache_ttl_secs", "600"),
                ("render_timeout_ms", "15000"),
                ("bot_wait_ms", "5000"),
                ("exclude_paths", "/admin/*\nno-slash"),
            ],
        )
        .await;
    assert!(
        out_of_range.body.contains(r#"id="exclude_paths-error""#),
        "{}",
        out_of_range.body
    );
    assert!(out_of_range.body.contains("Line 2 must start with / or *"));

    let saved = web
        .post(
            &format!("{domain_path}/settings"),
            &[
                ("csrf", &csrf),
                ("origin", "http://127.0.0.1:5173"),
                ("cache_ttl_secs", "600"),
                ("render_timeout_ms", "15000"),
                ("bot_wait_ms", "5000"),
                ("device_variants", "on"),
                ("stale_ttl_secs", "0"),
                ("family_search", "on"),
                ("family_ai", "on"),
                ("exclude_paths", "/admin/*"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let domain = t.redis_domain("shop.example.com").await.expect("published");
    assert_eq!(domain.settings.cache_ttl_secs, 600);
    assert_eq!(domain.settings.stale_ttl_secs, 0);
    assert_eq!(domain.settings.exclude_paths, ["/admin/*"]);
    assert!(domain.settings.device_variants);
    assert!(!domain.settings.blocking.images, "unticked boxes are off");
    assert_eq!(
        domain.settings.bot_families,
        [kiln_core::BotFamily::Search, kiln_core::BotFamily::Ai].into()
    );
    // The form shows what is saved.
    let form = web.get(&domain_path).await;
    assert!(
        form.body
            .contains(r#"<input type="checkbox" name="family_ai" checked>"#),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains(r#"<input type="checkbox" name="family_seo">"#),
        "{}",
        form.body
    );

    // The audit log names the change.
    let audit = web.get("/audit").await;
    assert!(
        audit.body.contains("settings.cache_ttl_secs: 3600 → 600"),
        "{}",
        audit.body
    );
    assert!(audit.body.contains("owner@example.com"));

    // Removing needs the hostname typed.
    let kept = web
        .post(
            &format!("{domain_path}/delete"),
            &[("csrf", &csrf), ("confirm", "shop")],
        )
        .await;
    assert_eq!(kept.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(t.redis_domain("shop.example.com").await.is_some());
    let removed = web
        .post(
            &format!("{domain_path}/delete"),
            &[("csrf", &csrf), ("confirm", "shop.example.com")],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert!(t.redis_domain("shop.example.com").await.is_none());
    assert_eq!(
        web.get(&domain_path).await.status,
        StatusCode::NOT_FOUND,
        "gone"
    );
}

#[tokio::test]
async fn another_tenants_domain_is_not_found_on_every_page() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut owner = WebClient::new(&server);
    let page = owner.sign_up("owner@example.com").await;
    let added = owner
        .post(
            "/domains",
            &[
                ("csrf", &page.csrf()),
                ("hostname", "shop.example.com"),
                ("origin", "http://127.0.0.1:5173"),
            ],
        )
        .await;
    let domain_path = added.location().to_owned();

    let mut intruder = WebClient::new(&server);
    let page = intruder.sign_up("intruder@example.com").await;
    let csrf = page.csrf();
    for path in ["", "/cache", "/preview"] {
        let seen = intruder.get(&format!("{domain_path}{path}")).await;
        assert_eq!(seen.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!seen.body.contains("shop.example.com"), "{path}");
    }
    for (path, form) in [
        ("/settings", vec![("origin", "http://127.0.0.1:9")]),
        ("/verify", vec![]),
        ("/delete", vec![("confirm", "shop.example.com")]),
        (
            "/purge",
            vec![("scope", "all"), ("confirm", "shop.example.com")],
        ),
        ("/warm", vec![("urls", "https://shop.example.com/")]),
    ] {
        let form = [&form[..], &[("csrf", csrf.as_str())]].concat();
        let done = intruder.post(&format!("{domain_path}{path}"), &form).await;
        assert_eq!(done.status, StatusCode::NOT_FOUND, "{path}: {}", done.body);
    }
    assert!(t.redis_domain("shop.example.com").await.is_some());
    let list = intruder.get("/domains").await;
    assert!(!list.body.contains("shop.example.com"));
}

#[tokio::test]
async fn the_service_tokens_page_shows_a_new_token_once_says_where_to_point_and_revokes() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let page = web.get("/service-tokens").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"href="/service-tokens" aria-current="page""#)
    );
    assert!(
        page.body.contains("https://render.kiln.test/"),
        "the service host is shown: {}",
        page.body
    );

    // A mistyped limit is shown back, next to its field.
    let csrf = page.csrf();
    let refused = web
        .post(
            "/service-tokens",
            &[
                ("csrf", &csrf),
                ("name", "shop"),
                ("rate_per_second", "fast"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains(r#"id="rate_per_second-error""#),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"value="fast""#));

    let created = web
        .post(
            "/service-tokens",
            &[
                ("csrf", &csrf),
                ("name", "shop"),
                ("rate_per_second", "5"),
                ("burst", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let start = created.body.find("kiln_svc_").expect("the token is shown");
    let token = &created.body[start..start + 41];
    let published = t
        .app
        .store
        .service_tokens()
        .get(&kiln_store::token_hash(token))
        .await
        .unwrap()
        .expect("published");
    assert_eq!(published.rate_per_second, Some(5));
    assert!(created.body.contains("5/s"), "{}", created.body);

    let listed = web.get("/service-tokens").await;
    assert!(!listed.body.contains(token), "shown once only");
    assert!(listed.body.contains(&format!("{}…", &token[..17])));

    let forged = web
        .post(
            &format!("/service-tokens/{}/revoke", published.id),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let csrf = listed.csrf();
    let revoked = web
        .post(
            &format!("/service-tokens/{}/revoke", published.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    let shown = web.get(revoked.location()).await;
    assert!(
        shown.body.contains("Revoked the token “shop”"),
        "{}",
        shown.body
    );
    let gone = t
        .app
        .store
        .service_tokens()
        .get(&kiln_store::token_hash(token))
        .await
        .unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn the_add_domain_form_offers_service_only_and_needs_no_origin_for_it() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let form = web.get("/domains/new").await;
    assert!(
        form.body
            .contains("Used only through the render service (no CNAME)")
    );
    let csrf = form.csrf();
    // Without the box ticked, an origin is required.
    let refused = web
        .post(
            "/domains",
            &[
                ("csrf", &csrf),
                ("hostname", "shop.example.com"),
                ("origin", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains(r#"id="origin-error""#),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("origin is required"),
        "{}",
        refused.body
    );
    // Ticked, the origin is the public site, checked like any: here it does not resolve.
    let ticked = web
        .post(
            "/domains",
            &[
                ("csrf", &csrf),
                ("hostname", "shop.example.com"),
                ("origin", ""),
                ("service_only", "on"),
            ],
        )
        .await;
    assert_eq!(ticked.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(ticked.body.contains("shop.example.com"), "{}", ticked.body);
    assert!(
        ticked.body.contains("cannot be resolved"),
        "{}",
        ticked.body
    );
    assert!(
        ticked
            .body
            .contains(r#"name="service_only" aria-describedby="service-only-help" checked"#)
    );
}

#[tokio::test]
async fn the_activity_page_marks_renders_through_the_render_service_and_filters_by_them() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let tenant_id = t.tenant_of("owner@example.com").await;
    let domain = t.insert_domain(tenant_id, "shop.example.com", false).await;
    let (tenant, id) = (tenant_id.to_string(), domain.id.to_string());
    let by_edge = "https://shop.example.com/by-edge";
    let by_service = "https://shop.example.com/by-service";
    crate::activity::log_render(&t, &tenant, &id, by_edge, kiln_core::RenderVia::Edge).await;
    crate::activity::log_render(&t, &tenant, &id, by_service, kiln_core::RenderVia::Service).await;
    let badge = r#"<span class="badge via-service" title="Asked for through the render service">service<span class="visually-hidden"> (through the render service)</span></span>"#;

    let page = web.get("/activity").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"<label for="f-via">Through</label>"#));
    assert!(page.body.contains(by_edge) && page.body.contains(by_service));
    // One badge, on the render service's row.
    assert_eq!(page.body.matches(badge).count(), 1, "{}", page.body);
    let row = |url: &str| {
        let at = page.body.find(url).unwrap();
        let end = at + page.body[at..].find("</tr>").unwrap();
        page.body[at..end].to_owned()
    };
    assert!(row(by_service).contains(badge), "{}", row(by_service));
    assert!(!row(by_edge).contains("via-service"), "{}", row(by_edge));

    let service = web.get("/activity?via=service").await;
    assert!(service.body.contains(by_service), "{}", service.body);
    assert!(!service.body.contains(by_edge), "{}", service.body);
    assert!(
        service
            .body
            .contains(r#"<option value="service" selected>The render service</option>"#)
    );
    let edge = web.get("/activity?via=edge").await;
    assert!(edge.body.contains(by_edge), "{}", edge.body);
    assert!(!edge.body.contains(by_service), "{}", edge.body);
    assert!(!edge.body.contains("via-service"));
    // A value that is no choice does not filter, like the other choices.
    let any = web.get("/activity?via=bogus").await;
    assert_eq!(any.status, StatusCode::OK);
    assert!(any.body.contains(by_edge) && any.body.contains(by_service));
}

#[tokio::test]
async fn the_domain_list_marks_domains_used_only_through_the_render_service() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut web = WebClient::new(&server);
    web.sign_up("owner@example.com").await;
    let tenant_id = t.tenant_of("owner@example.com").await;
    t.insert_domain(tenant_id, "render-only.example.com", true)
        .await;
    t.insert_domain(tenant_id, "shop.example.com", false).await;

    let list = web.get("/domains").await;
    assert_eq!(list.status, StatusCode::OK);
    let row = |host: &str| {
        let at = list
            .body
            .find(&format!(">{host}</a>"))
            .unwrap_or_else(|| panic!("{host} is not listed: {}", list.body));
        let end = at + list.body[at..].find("</tr>").unwrap();
        list.body[at..end].to_owned()
    };
    let marker = r#"<span class="badge service-only">Render service only</span>"#;
    assert!(
        row("render-only.example.com").contains(marker),
        "{}",
        list.body
    );
    assert!(!row("shop.example.com").contains(marker), "{}", list.body);
}
