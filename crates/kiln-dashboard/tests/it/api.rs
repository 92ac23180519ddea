//! The REST API against real Postgres, Redis and dnsmasq: accounts, sessions, keys, domains,
//! verification, purging, listing, a warm's record, errors and tenant isolation. (Warms' renders,
//! previews, the render log and usage need a worker with Chromium: they are exercised end to end
//! in `kiln-e2e`.)

use crate::helpers::{
    ApiClient, CNAME_TARGET, PASSWORD, TestApp, TestServer, session_from, spawn_app,
};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kiln_core::{BotFamily, CacheKey, DeviceClass, Hostname, NormalizedUrl};
use kiln_store::{PageEntry, PageMeta};
use kiln_testkit::dns::{DnsRecord, TestDns};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn server_with(configure: impl FnOnce(&mut TestApp)) -> (TestApp, TestServer) {
    let mut app = spawn_app().await;
    configure(&mut app);
    let server = TestServer::start(&app).await;
    (app, server)
}

async fn server() -> (TestApp, TestServer) {
    server_with(|_| {}).await
}

/// A server whose DNS (a real dnsmasq, running while the returned server does) has `host` point
/// its CNAME at the CNAME target, so that the domain verifies.
async fn server_with_a_cname_for(host: &str) -> (TestDns, TestApp, TestServer) {
    let dns = TestDns::start(&[
        DnsRecord::a(CNAME_TARGET, "127.0.0.1"),
        DnsRecord::cname(host, CNAME_TARGET),
    ]);
    let dns_addr = dns.addr();
    let (app, server) = server_with(|app| app.settings.dns_server = Some(dns_addr)).await;
    (dns, app, server)
}

const ORIGIN: &str = "http://127.0.0.1:5173";

// ---- accounts and sessions ----------------------------------------------------------------------

#[tokio::test]
async fn sign_up_logs_in_with_a_safe_cookie_and_refuses_taken_emails_and_weak_passwords() {
    let (_app, server) = server().await;
    let mut client = ApiClient::new(&server);
    let created = client.sign_up("Jane@Example.com").await;
    assert_eq!(created.body["email"], "jane@example.com");
    let cookie = created
        .cookies
        .iter()
        .find(|c| c.starts_with("kiln_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain-http dashboards cannot use Secure: {cookie}"
    );

    let me = client.get("/api/v1/auth/me").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["email"], "jane@example.com");
    assert_eq!(me.body["tenant_id"], created.body["tenant_id"]);

    let anonymous = ApiClient::new(&server);
    let taken = anonymous
        .post(
            "/api/v1/auth/signup",
            json!({ "email": "JANE@example.com ", "password": PASSWORD }),
        )
        .await;
    assert_eq!((taken.status, taken.code()), (409, "conflict"));
    assert!(
        taken.message().contains("already exists"),
        "{}",
        taken.message()
    );

    for (email, password, expected) in [
        ("bob@example.com", "short", "too short"),
        ("bob@example.com", "password123456", "too easy to guess"),
        ("bob@example.com", "bob@example.com", "too easy to guess"),
        ("not-an-email", PASSWORD, "not an email address"),
    ] {
        let refused = anonymous
            .post(
                "/api/v1/auth/signup",
                json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(
            refused.status, 422,
            "{email}/{password}: {:?}",
            refused.body
        );
        assert!(
            refused.message().contains(expected),
            "{email}/{password}: {}",
            refused.message()
        );
        assert!(refused.cookies.is_empty());
    }
}

#[tokio::test]
async fn cookies_are_secure_when_the_dashboard_is_served_over_https() {
    let (_app, server) = server_with(|app| {
        app.settings.public_url = "https://kiln.example.com".parse().unwrap();
    })
    .await;
    let created = ApiClient::new(&server).sign_up("a@example.com").await;
    assert!(
        created.cookies.iter().any(|c| c.contains("Secure")),
        "{:?}",
        created.cookies
    );
    // Browsers are told to use https only, for a year.
    assert_eq!(
        created.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn log_in_checks_the_password_and_is_rate_limited_per_account() {
    let (_app, server) = server().await;
    ApiClient::new(&server).sign_up("jane@example.com").await;
    let client = ApiClient::new(&server);

    let wrong = client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "jane@example.com", "password": "not the password at all" }),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized"));
    let unknown = client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "nobody@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.message(),
        wrong.message(),
        "an unknown email must be indistinguishable from a wrong password"
    );

    let ok = client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "JANE@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let logged_in = ApiClient {
        session: Some(session_from(&ok)),
        ..client.clone()
    };
    assert_eq!(logged_in.get("/api/v1/auth/me").await.status, 200);

    // Ten attempts per account at once (two used above), then one every 30 s.
    let mut limited = None;
    for attempt in 0..12 {
        let response = client
            .post(
                "/api/v1/auth/login",
                json!({ "email": "jane@example.com", "password": "wrong password again!" }),
            )
            .await;
        if response.status == 429 {
            limited = Some((attempt, response));
            break;
        }
        assert_eq!(response.status, 401);
    }
    let (attempt, response) = limited.expect("log-in attempts were never limited");
    // Ten attempts at once: the 11th is refused, or the 12th if a slow machine let a new one accrue.
    assert!(
        (8..=9).contains(&attempt),
        "limited after {} attempts",
        attempt + 2
    );
    assert_eq!(response.code(), "rate_limited");
    let retry: u64 = response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // Even the right password waits now: the limit is on attempts, not on failures.
    let blocked = client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "jane@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(blocked.status, 429);
    // Another account is not affected.
    ApiClient::new(&server).sign_up("other@example.com").await;
    let other = client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "other@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(other.status, 200);
}

/// A client of `server` whose connections come from `ip` (any 127.x address is this machine's).
fn client_from(server: &TestServer, ip: &str) -> ApiClient {
    ApiClient {
        client: reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        ..ApiClient::new(server)
    }
}

async fn log_in_from(client: &ApiClient, password: &str) -> u16 {
    client
        .post(
            "/api/v1/auth/login",
            json!({ "email": "owner@example.com", "password": password }),
        )
        .await
        .status
}

#[tokio::test]
async fn guessing_from_one_address_does_not_lock_the_owner_out_from_another() {
    let (_app, server) = server().await;
    ApiClient::new(&server).sign_up("owner@example.com").await;

    // Someone who knows the address guesses until they are stopped, and stays stopped, even with
    // the right password.
    let attacker = client_from(&server, "127.0.0.2");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(log_in_from(&attacker, "a wrong guess, again").await);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[11], 429, "{statuses:?}");
    assert_eq!(log_in_from(&attacker, PASSWORD).await, 429);

    // The owner, from their own address, logs in as if nothing had happened, and again.
    let owner = client_from(&server, "127.0.0.3");
    assert_eq!(log_in_from(&owner, PASSWORD).await, 200);
    assert_eq!(log_in_from(&owner, PASSWORD).await, 200);
    assert_eq!(log_in_from(&attacker, PASSWORD).await, 429, "still limited");

    // Guesses spread over many addresses meet the account's ceiling: an address that has failed
    // once gets no more tries once the account has seen fifty failures...
    let mut refused = Vec::new();
    for i in 1..=40 {
        let guesser = client_from(&server, &format!("127.0.1.{i}"));
        assert_eq!(log_in_from(&guesser, "a first guess from here").await, 401);
        if log_in_from(&guesser, "a second guess from here").await == 429 {
            refused.push(guesser);
        }
    }
    assert!(
        refused.len() >= 10,
        "only {} second guesses refused",
        refused.len()
    );
    assert_eq!(log_in_from(&refused[0], PASSWORD).await, 429);
    // ...but a correct password from an address with no failures still passes.
    let travelling = client_from(&server, "127.0.0.4");
    assert_eq!(log_in_from(&travelling, PASSWORD).await, 200);
}

fn forge(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn tampered_expired_and_unsigned_tokens_are_refused() {
    let (app, server) = server().await;
    let mut client = ApiClient::new(&server);
    client.sign_up("jane@example.com").await;
    let token = client.session.clone().unwrap();
    let claims = claims_of(&token);
    let secret = "test-session-secret-0123456789abcdef";
    assert_eq!(
        secret,
        secrecy::ExposeSecret::expose_secret(app.settings.session_secret.as_ref().unwrap())
    );

    let as_session = |token: String| ApiClient {
        session: Some(token),
        ..client.clone()
    };
    // The genuine token, and the same claims re-signed with the right key, are accepted: the
    // refusals below are about what was changed, nothing else.
    assert_eq!(
        as_session(token.clone())
            .get("/api/v1/auth/me")
            .await
            .status,
        200
    );
    assert_eq!(
        as_session(forge(&claims, secret))
            .get("/api/v1/auth/me")
            .await
            .status,
        200
    );

    let mut other_tenant = claims.clone();
    other_tenant["tid"] = json!(uuid::Uuid::new_v4());
    let mut expired = claims.clone();
    expired["iat"] = json!(claims["iat"].as_i64().unwrap() - 7200);
    expired["exp"] = json!(claims["iat"].as_i64().unwrap() - 60);
    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(serde_json::to_string(&claims).unwrap().as_bytes());
    let parts: Vec<&str> = token.split('.').collect();
    let mut flipped = parts[1].as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let cases = [
        (
            "another key",
            forge(&claims, "another-secret-0123456789abcdefghij"),
        ),
        ("alg none", format!("{header_none}.{payload}.")),
        (
            "payload edited",
            format!(
                "{}.{}.{}",
                parts[0],
                String::from_utf8(flipped).unwrap(),
                parts[2]
            ),
        ),
        ("signature dropped", format!("{}.{}.", parts[0], parts[1])),
        ("expired", forge(&expired, secret)),
        ("other tenant's id, right key", forge(&other_tenant, secret)),
        ("garbage", "garbage".to_owned()),
    ];
    for (what, token) in cases {
        let response = as_session(token).get("/api/v1/auth/me").await;
        assert_eq!(response.status, 401, "{what}: {:?}", response.body);
        assert_eq!(response.code(), "unauthorized", "{what}");
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn tokens_past_half_their_life_are_renewed() {
    let (app, server) = server().await;
    let mut client = ApiClient::new(&server);
    client.sign_up("jane@example.com").await;
    let claims = claims_of(client.session.as_ref().unwrap());
    let secret =
        secrecy::ExposeSecret::expose_secret(app.settings.session_secret.as_ref().unwrap())
            .to_owned();

    let fresh = client.get("/api/v1/auth/me").await;
    assert!(fresh.cookies.is_empty(), "a fresh token is not renewed");

    let mut aging = claims.clone();
    aging["iat"] = json!(claims["iat"].as_i64().unwrap() - 1000);
    let old = ApiClient {
        session: Some(forge(&aging, &secret)),
        ..client.clone()
    };
    let renewed = old.get("/api/v1/auth/me").await;
    assert_eq!(renewed.status, 200);
    let new_token = session_from(&renewed);
    let new_claims = claims_of(&new_token);
    assert_eq!(
        new_claims["sid"], claims["sid"],
        "the same session continues"
    );
    assert!(new_claims["iat"].as_i64() > aging["iat"].as_i64());
}

#[tokio::test]
async fn log_out_and_password_changes_end_sessions_at_once() {
    let (_app, server) = server().await;
    let mut first = ApiClient::new(&server);
    first.sign_up("jane@example.com").await;
    let login = |password: &'static str| {
        let client = ApiClient::new(&server);
        async move {
            client
                .post(
                    "/api/v1/auth/login",
                    json!({ "email": "jane@example.com", "password": password }),
                )
                .await
        }
    };
    let second = ApiClient {
        session: Some(session_from(&login(PASSWORD).await)),
        ..first.clone()
    };
    let third = ApiClient {
        session: Some(session_from(&login(PASSWORD).await)),
        ..first.clone()
    };

    let logged_out = third.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(logged_out.status, 204);
    assert!(
        logged_out
            .cookies
            .iter()
            .any(|c| c.starts_with("kiln_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        logged_out.cookies
    );
    let after = third.get("/api/v1/auth/me").await;
    assert_eq!(
        after.status, 401,
        "a logged-out token must not work: {:?}",
        after.body
    );

    let wrong = first
        .post(
            "/api/v1/auth/password",
            json!({ "current_password": "not it at all!", "new_password": "a whole new passphrase here" }),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let weak = first
        .post(
            "/api/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": "password" }),
        )
        .await;
    assert_eq!(weak.status, 422);
    let changed = first
        .post(
            "/api/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": "a whole new passphrase here" }),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["sessions_revoked"], 1);
    assert_eq!(
        first.get("/api/v1/auth/me").await.status,
        200,
        "the changing session stays"
    );
    assert_eq!(
        second.get("/api/v1/auth/me").await.status,
        401,
        "other sessions end"
    );
    assert_eq!(
        login(PASSWORD).await.status,
        401,
        "the old password is gone"
    );
    assert_eq!(login("a whole new passphrase here").await.status, 200);
}

// ---- API keys -----------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_revocable_at_once() {
    let (app, server) = server().await;
    let mut user = ApiClient::new(&server);
    user.sign_up("jane@example.com").await;

    let created = user
        .post("/api/v1/api-keys", json!({ "name": "deploy pipeline" }))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let prefix = created.body["prefix"].as_str().unwrap();
    assert!(
        secret.starts_with("kiln_live_") && secret.len() == 42,
        "{secret}"
    );
    assert!(secret.starts_with(prefix) && prefix.len() == 18, "{prefix}");
    assert!(created.body["last_used_at"].is_null());

    // Only a hash is stored.
    let stored: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT prefix, key_hash FROM api_keys")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, prefix);
    let dump = format!("{stored:?}");
    assert!(
        !dump.contains(&secret[10..]),
        "the secret is stored: {dump}"
    );

    let listed = user.get("/api/v1/api-keys").await;
    assert_eq!(listed.body["keys"][0]["name"], "deploy pipeline");
    assert!(
        listed.body["keys"][0].get("secret").is_none(),
        "{:?}",
        listed.body
    );

    let script = user.with_key(&secret);
    assert_eq!(script.get("/api/v1/domains").await.status, 200);
    let listed = user.get("/api/v1/api-keys").await;
    assert!(
        listed.body["keys"][0]["last_used_at"].is_string(),
        "{:?}",
        listed.body
    );

    // A key cannot manage keys or the account.
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/api-keys"),
        (reqwest::Method::GET, "/api/v1/api-keys"),
        (reqwest::Method::GET, "/api/v1/auth/me"),
    ] {
        let response = script
            .send(method.clone(), path, Some(&json!({ "name": "more" })))
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {:?}", response.body);
    }

    let id = created.body["id"].as_str().unwrap();
    let revoked = user.delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body["revoked_at"].is_string());
    let refused = script.get("/api/v1/domains").await;
    assert_eq!(
        refused.status, 401,
        "a revoked key must stop working at once"
    );
    assert!(
        refused.message().contains("revoked"),
        "{}",
        refused.message()
    );

    for bad in ["Bearer kiln_live_short", "Basic dXNlcjpwYXNz", "Bearer "] {
        let response = ApiClient::new(&server)
            .raw(
                ApiClient::new(&server)
                    .request(reqwest::Method::GET, "/api/v1/domains")
                    .header("authorization", bad),
            )
            .await;
        assert_eq!(response.status, 401, "{bad}");
    }
    let forged = user.with_key("kiln_live_0123456789abcdefABCDEF0123456789");
    assert_eq!(forged.get("/api/v1/domains").await.status, 401);
    assert_eq!(
        ApiClient::new(&server).get("/api/v1/domains").await.status,
        401
    );
}

#[tokio::test]
async fn all_keys_are_revoked_at_once_and_a_password_change_leaves_them_working() {
    let (_app, server) = server().await;
    let mut user = ApiClient::new(&server);
    user.sign_up("jane@example.com").await;
    let mut scripts = Vec::new();
    for name in ["ci", "deploys"] {
        let created = user.post("/api/v1/api-keys", json!({ "name": name })).await;
        scripts.push(user.with_key(created.body["secret"].as_str().unwrap()));
    }

    // A password change ends other sessions, not keys (documented).
    let changed = user
        .post(
            "/api/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": "a whole new password, longer" }),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    for script in &scripts {
        assert_eq!(script.get("/api/v1/domains").await.status, 200);
    }

    // A key cannot revoke keys.
    let by_key = scripts[0]
        .post("/api/v1/api-keys/revoke-all", json!({}))
        .await;
    assert_eq!(by_key.status, 403, "{:?}", by_key.body);

    let revoked = user.post("/api/v1/api-keys/revoke-all", json!({})).await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    let mut names: Vec<&str> = revoked.body["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ci", "deploys"]);
    for script in &scripts {
        assert_eq!(script.get("/api/v1/domains").await.status, 401);
    }
    let listed = user.get("/api/v1/api-keys").await;
    assert!(
        listed.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|key| key["revoked_at"].is_string()),
        "{:?}",
        listed.body
    );
    let audit = user.get("/api/v1/audit").await;
    assert_eq!(
        audit.body["events"][0]["action"], "api_key.revoke_all",
        "{:?}",
        audit.body
    );
    // Nothing left to revoke.
    let again = user.post("/api/v1/api-keys/revoke-all", json!({})).await;
    assert_eq!(
        (again.status, again.body["revoked"].clone()),
        (200, json!([]))
    );
}

// ---- domains ------------------------------------------------------------------------------------

#[tokio::test]
async fn the_platforms_own_names_single_labels_and_public_suffixes_cannot_be_registered() {
    let (app, server) = server_with(|t| {
        t.settings.public_url = "https://Dashboard.Kiln.test:8443/".parse().unwrap();
    })
    .await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;

    for (hostname, code, says) in [
        // The CNAME target (edge.kiln.test) and the dashboard's host, and every name under them.
        (
            CNAME_TARGET,
            "hostname_reserved",
            "this Kiln platform's CNAME target",
        ),
        ("EDGE.Kiln.test.", "hostname_reserved", "CNAME target"),
        ("www.edge.kiln.test", "hostname_reserved", "CNAME target"),
        (
            "dashboard.kiln.test",
            "hostname_reserved",
            "this Kiln platform's dashboard",
        ),
        ("a.b.dashboard.kiln.test", "hostname_reserved", "dashboard"),
        // A label alone names no one's domain.
        ("localhost", "hostname_single_label", "is a single label"),
        ("com", "hostname_single_label", "is a single label"),
        // Public suffixes, ICANN's and private ones.
        ("co.uk", "hostname_public_suffix", "is a public suffix"),
        (
            "github.io",
            "hostname_public_suffix",
            "such as shop.github.io",
        ),
    ] {
        let response = client
            .post(
                "/api/v1/domains",
                json!({ "hostname": hostname, "origin": ORIGIN }),
            )
            .await;
        assert_eq!(response.status, 422, "{hostname}: {:?}", response.body);
        assert_eq!(response.code(), code, "{hostname}: {:?}", response.body);
        assert!(
            response.message().starts_with("hostname: ") && response.message().contains(says),
            "{hostname}: {}",
            response.message()
        );
    }
    assert!(
        app.pg_domains().await.is_empty(),
        "a refused name was stored"
    );
    assert!(
        app.redis_hosts().await.is_empty(),
        "a refused name was published"
    );
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'domain.add'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(audit, 0, "a refused name was audited");

    // Their neighbours and parents are customers' names, as are names under private suffixes.
    for hostname in [
        "kiln.test",
        "xedge.kiln.test",
        "shop.github.io",
        "shop.co.uk",
    ] {
        let domain = client.add_domain(hostname, ORIGIN).await;
        assert_eq!(domain["hostname"], hostname);
    }
    assert_eq!(
        app.redis_hosts().await,
        [
            "kiln.test",
            "shop.co.uk",
            "shop.github.io",
            "xedge.kiln.test"
        ]
    );
}

#[tokio::test]
async fn domains_are_validated_created_listed_changed_and_removed() {
    let (app, server) = server().await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;

    for (hostname, expected) in [
        ("shop.example.com:8080", "port, path or wildcard"),
        ("shop.example.com/blog", "port, path or wildcard"),
        ("*.example.com", "port, path or wildcard"),
        ("127.0.0.1", "IP address"),
        ("", "empty"),
        ("exa mple.com", "not a valid hostname"),
    ] {
        let response = client
            .post(
                "/api/v1/domains",
                json!({ "hostname": hostname, "origin": ORIGIN }),
            )
            .await;
        assert_eq!(response.status, 422, "{hostname}: {:?}", response.body);
        assert!(
            response.message().contains(expected),
            "{hostname}: {}",
            response.message()
        );
    }
    let bad_origin = client
        .post(
            "/api/v1/domains",
            json!({ "hostname": "shop.example.com", "origin": "ftp://x.example.com" }),
        )
        .await;
    assert_eq!(bad_origin.status, 422);
    let private = client
        .post(
            "/api/v1/domains",
            json!({ "hostname": "shop.example.com", "origin": "http://10.1.2.3" }),
        )
        .await;
    assert_eq!(private.status, 422);
    assert!(
        private.message().contains("not a public address"),
        "{}",
        private.message()
    );
    let bad_settings = client
        .post(
            "/api/v1/domains",
            json!({ "hostname": "shop.example.com", "origin": ORIGIN, "settings": { "cache_ttl_secs": 0 } }),
        )
        .await;
    assert_eq!(bad_settings.status, 422);
    assert!(
        bad_settings.message().contains("cache_ttl_secs"),
        "{}",
        bad_settings.message()
    );

    // An internationalised name is stored in punycode.
    let idn = client.add_domain("Bücher.Example", ORIGIN).await;
    assert_eq!(idn["hostname"], "xn--bcher-kva.example");
    let domain = client.add_domain("shop.example.com", ORIGIN).await;
    assert_eq!(domain["verified"], false);
    assert_eq!(domain["verification"]["status"], "pending");
    assert_eq!(domain["verification"]["cname_target"], CNAME_TARGET);
    assert_eq!(
        domain["verification"]["txt_record"]["name"],
        "_kiln-challenge.shop.example.com"
    );
    assert_eq!(
        domain["settings"]["ignored_query_params"],
        json!(["utm_*", "gclid", "fbclid", "msclkid"])
    );
    let id = domain["id"].as_str().unwrap();

    // Published for the gateways, unverified.
    let published = app
        .redis_domain("shop.example.com")
        .await
        .expect("published");
    assert!(!published.verified);

    let listed = client.get("/api/v1/domains").await;
    let hosts: Vec<&str> = listed.body["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["shop.example.com", "xn--bcher-kva.example"]);
    assert_eq!(
        client.get(&format!("/api/v1/domains/{id}")).await.body["id"],
        id
    );

    // A change reaches Redis (and so the gateways) at once, and is audited with before and after.
    let started = Instant::now();
    let changed = client
        .patch(
            &format!("/api/v1/domains/{id}"),
            json!({ "settings": {
                "cache_ttl_secs": 120,
                "device_variants": false,
                "blocking": { "stylesheets": true },
                "bot_families": ["search", "social"],
                "bot_user_agents": ["MyCrawler"],
                "exclude_paths": ["/admin*"]
            } }),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(
        changed.body["settings"]["bot_families"],
        json!(["search", "social"])
    );
    assert_eq!(changed.body["settings"]["cache_ttl_secs"], 120);
    assert_eq!(changed.body["settings"]["blocking"]["stylesheets"], true);
    assert_eq!(
        changed.body["settings"]["blocking"]["images"], true,
        "untouched fields stay"
    );
    let published = app.redis_domain("shop.example.com").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(published.settings.cache_ttl_secs, 120);
    assert!(!published.settings.device_variants);
    assert!(published.settings.blocking.stylesheets);
    assert_eq!(published.settings.bot_user_agents, ["MyCrawler"]);
    assert_eq!(
        published.settings.bot_families,
        [BotFamily::Search, BotFamily::Social].into()
    );
    assert_eq!(published.settings.exclude_paths, ["/admin*"]);
    let (actor, before, after): (String, Value, Value) = sqlx::query_as(
        "SELECT actor, before, after FROM audit_events WHERE action = 'domain.update'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(actor.starts_with("api_key:"), "{actor}");
    assert_eq!(before["settings"]["cache_ttl_secs"], 3600);
    assert_eq!(after["settings"]["cache_ttl_secs"], 120);

    let refused = client
        .patch(
            &format!("/api/v1/domains/{id}"),
            json!({ "settings": { "render_timeout_ms": 5 } }),
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.message().contains("render_timeout_ms"),
        "{}",
        refused.message()
    );
    let unknown_family = client
        .patch(
            &format!("/api/v1/domains/{id}"),
            json!({ "settings": { "bot_families": ["search", "robots"] } }),
        )
        .await;
    assert_eq!(unknown_family.status, 422);
    assert!(
        unknown_family.message().contains("bot_families[1]"),
        "{}",
        unknown_family.message()
    );

    let removed = client.delete(&format!("/api/v1/domains/{id}")).await;
    assert_eq!(removed.status, 204);
    assert!(app.redis_domain("shop.example.com").await.is_none());
    assert_eq!(
        client.get(&format!("/api/v1/domains/{id}")).await.status,
        404
    );
    assert_eq!(
        client.delete(&format!("/api/v1/domains/{id}")).await.status,
        404
    );
}

#[tokio::test]
async fn a_hostname_belongs_to_one_tenant_and_other_tenants_ids_are_not_found() {
    let (app, server) = server().await;
    let alice = ApiClient::account_with_key(&server, "alice@example.com").await;
    let bob = ApiClient::account_with_key(&server, "bob@example.com").await;
    let domain = alice.add_domain("shop.example.com", ORIGIN).await;
    let id = domain["id"].as_str().unwrap();

    let taken = bob
        .post(
            "/api/v1/domains",
            json!({ "hostname": "SHOP.example.com.", "origin": ORIGIN }),
        )
        .await;
    assert_eq!((taken.status, taken.code()), (409, "conflict"));

    assert_eq!(bob.get("/api/v1/domains").await.body["domains"], json!([]));
    for response in [
        bob.get(&format!("/api/v1/domains/{id}")).await,
        bob.patch(
            &format!("/api/v1/domains/{id}"),
            json!({ "settings": { "cache_ttl_secs": 5 } }),
        )
        .await,
        bob.post(&format!("/api/v1/domains/{id}/verify"), json!({}))
            .await,
        bob.delete(&format!("/api/v1/domains/{id}")).await,
        bob.get(&format!("/api/v1/cache?domain_id={id}")).await,
        bob.get(&format!("/api/v1/renders?domain_id={id}")).await,
        bob.get(&format!("/api/v1/usage?domain_id={id}")).await,
        bob.post(
            "/api/v1/cache/purge",
            json!({ "domain_id": id, "all": true }),
        )
        .await,
        bob.post(
            "/api/v1/cache/purge",
            json!({ "domain_id": id, "prefix": "/" }),
        )
        .await,
        bob.post(
            "/api/v1/cache/warm",
            json!({ "domain_id": id, "sitemap_url": "https://shop.example.com/sitemap.xml" }),
        )
        .await,
    ] {
        assert_eq!(response.status, 404, "{:?}", response.body);
        assert_eq!(response.code(), "not_found");
    }
    for response in [
        bob.post(
            "/api/v1/cache/purge",
            json!({ "urls": ["https://shop.example.com/"] }),
        )
        .await,
        bob.post(
            "/api/v1/cache/warm",
            json!({ "urls": ["https://shop.example.com/"] }),
        )
        .await,
        bob.get("/api/v1/render?url=https://shop.example.com/")
            .await,
    ] {
        assert_eq!(response.status, 422, "{:?}", response.body);
        assert!(
            response
                .message()
                .contains("not one of this account's domains"),
            "{}",
            response.message()
        );
    }
    // Alice's domain is untouched.
    let published = app.redis_domain("shop.example.com").await.unwrap();
    assert_eq!(published.settings.cache_ttl_secs, 3600);
    assert_eq!(
        alice.get(&format!("/api/v1/domains/{id}")).await.status,
        200
    );
}

#[tokio::test]
async fn verification_checks_dns_through_the_configured_server() {
    let mut dns = TestDns::start(&[DnsRecord::a(CNAME_TARGET, "127.0.0.1")]);
    let dns_addr = dns.addr();
    let (app, server) = server_with(|app| app.settings.dns_server = Some(dns_addr)).await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;
    let by_txt = client.add_domain("shop.example.com", ORIGIN).await;
    let by_cname = client.add_domain("www.example.org", ORIGIN).await;
    let verify =
        |domain: &Value| format!("/api/v1/domains/{}/verify", domain["id"].as_str().unwrap());

    let pending = client.post(&verify(&by_txt), json!({})).await;
    assert_eq!(pending.status, 200, "{:?}", pending.body);
    assert_eq!(pending.body["verified"], false);
    assert_eq!(pending.body["verification"]["status"], "pending");
    assert!(pending.body["verification"]["checked_at"].is_string());
    let explanation = pending.body["verification"]["last_check"]["explanation"]
        .as_str()
        .unwrap();
    assert!(
        explanation.contains("_kiln-challenge.shop.example.com"),
        "{explanation}"
    );
    assert!(!app.redis_domain("shop.example.com").await.unwrap().verified);

    let token = by_txt["verification"]["txt_record"]["value"]
        .as_str()
        .unwrap();
    dns.set_records(&[
        DnsRecord::a(CNAME_TARGET, "127.0.0.1"),
        DnsRecord::txt("_kiln-challenge.shop.example.com", "unrelated=1"),
        DnsRecord::txt("_kiln-challenge.shop.example.com", token),
        DnsRecord::cname("www.example.org", CNAME_TARGET),
    ]);
    let verified = client.post(&verify(&by_txt), json!({})).await;
    assert_eq!(verified.body["verified"], true, "{:?}", verified.body);
    assert_eq!(verified.body["verification"]["status"], "verified");
    assert!(verified.body["verification"]["verified_at"].is_string());
    assert!(app.redis_domain("shop.example.com").await.unwrap().verified);
    let verified = client.post(&verify(&by_cname), json!({})).await;
    assert_eq!(verified.body["verified"], true, "{:?}", verified.body);
    assert!(app.redis_domain("www.example.org").await.unwrap().verified);

    // Another tenant's token proves nothing for this one.
    let other = ApiClient::account_with_key(&server, "bob@example.com").await;
    let bobs = other.add_domain("bob.example.net", ORIGIN).await;
    dns.set_records(&[
        DnsRecord::a(CNAME_TARGET, "127.0.0.1"),
        DnsRecord::txt("_kiln-challenge.bob.example.net", token),
    ]);
    let refused = other.post(&verify(&bobs), json!({})).await;
    assert_eq!(refused.body["verified"], false);

    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'domain.verify'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(audited, 2);
}

// ---- the cache ----------------------------------------------------------------------------------

async fn store_page(
    app: &TestApp,
    domain: &Value,
    scheme: &str,
    target: &str,
    device: DeviceClass,
) {
    let host = Hostname::parse(domain["hostname"].as_str().unwrap()).unwrap();
    let ignored: Vec<String> =
        serde_json::from_value(domain["settings"]["ignored_query_params"].clone()).unwrap();
    let url = NormalizedUrl::from_request(scheme, &host, target, &ignored).unwrap();
    let key = CacheKey::new(domain["id"].as_str().unwrap(), device, &url);
    let entry = PageEntry {
        html: Bytes::from(format!("<html><body>{target}</body></html>")),
        meta: PageMeta {
            status: 200,
            headers: Vec::new(),
            url: url.to_string(),
            rendered_at: 1_700_000_000_000,
            render_ms: 42,
            expires_at: 0,
            fresh_until: 0,
            encoding: kiln_store::ContentEncoding::Identity,
            length: 0,
            etag: String::new(),
        },
    };
    app.app
        .store
        .pages()
        .put(&key, &entry, 3600, 0)
        .await
        .unwrap();
}

async fn cached_urls(client: &ApiClient, domain: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/cache?domain_id={}&limit=2",
            domain["id"].as_str().unwrap()
        );
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = client.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        for entry in page.body["pages"].as_array().unwrap() {
            assert_eq!(entry["status"], 200);
            assert!(entry["bytes"].as_u64().unwrap() > 0);
            assert!(entry["expires_at"].as_str().unwrap() > entry["rendered_at"].as_str().unwrap());
            urls.push(format!(
                "{} {}",
                entry["url"].as_str().unwrap(),
                entry["device"].as_str().unwrap()
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return urls,
        }
    }
}

#[tokio::test]
async fn purge_removes_exactly_the_named_entries_and_listing_pages_through_the_rest() {
    let (app, server) = server().await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;
    let shop = client.add_domain("shop.example.com", ORIGIN).await;
    let blog = client.add_domain("blog.example.com", ORIGIN).await;
    for (scheme, target, device) in [
        ("https", "/", DeviceClass::Desktop),
        ("https", "/products/1", DeviceClass::Desktop),
        ("https", "/products/1", DeviceClass::Mobile),
        ("http", "/products/1", DeviceClass::Desktop),
        ("https", "/products/2?color=red", DeviceClass::Desktop),
        ("https", "/blog/a", DeviceClass::Desktop),
        ("https", "/blog/b", DeviceClass::Mobile),
        ("https", "/blogroll", DeviceClass::Desktop),
    ] {
        store_page(&app, &shop, scheme, target, device).await;
    }
    store_page(&app, &blog, "https", "/blog/a", DeviceClass::Desktop).await;
    assert_eq!(cached_urls(&client, &shop).await.len(), 8);

    // A URL purge takes every device and both schemes, and matches the way the gateway
    // normalises (tracking parameters ignored, query order irrelevant).
    let purged = client
        .post(
            "/api/v1/cache/purge",
            json!({ "urls": ["https://shop.example.com/products/1?utm_source=mail", "https://shop.example.com/missing"] }),
        )
        .await;
    assert_eq!(purged.status, 200, "{:?}", purged.body);
    assert_eq!(purged.body["purged"], 3);

    let by_prefix = client
        .post(
            "/api/v1/cache/purge",
            json!({ "domain_id": shop["id"], "prefix": "/blog/" }),
        )
        .await;
    assert_eq!(by_prefix.body["purged"], 2, "{:?}", by_prefix.body);
    assert_eq!(
        cached_urls(&client, &shop).await,
        [
            "https://shop.example.com/ desktop",
            "https://shop.example.com/blogroll desktop",
            "https://shop.example.com/products/2?color=red desktop",
        ]
    );
    let all = client
        .post(
            "/api/v1/cache/purge",
            json!({ "domain_id": shop["id"], "all": true }),
        )
        .await;
    assert_eq!(all.body["purged"], 3);
    assert!(cached_urls(&client, &shop).await.is_empty());
    assert_eq!(
        cached_urls(&client, &blog).await.len(),
        1,
        "another domain is untouched"
    );

    let purges: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'cache.purge'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(purges, 3);
}

/// A real origin serving one sitemap of `count` pages under `/products/`, counting its reads.
async fn origin_with_a_sitemap_of(
    host: &str,
    count: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut sitemap = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
"#,
    );
    for n in 0..count {
        sitemap.push_str(&format!(
            "<url><loc>http://{host}/products/{n}</loc></url>\n"
        ));
    }
    sitemap.push_str("</urlset>\n");
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reads);
    let router = axum::Router::new().route(
        "/sitemap.xml",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = sitemap.clone();
            async move { ([("content-type", "application/xml")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (origin, reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_of_a_huge_sitemap_the_domain_excludes_keeps_a_small_record_with_exact_counts() {
    let (_dns, app, server) = server_with_a_cname_for("shop.example.com").await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;
    // 60,000 pages: more than a warm reads (50,000), every one of them on a path the domain
    // never renders.
    let (origin, reads) = origin_with_a_sitemap_of("shop.example.com", 60_000).await;
    let domain = client
        .post(
            "/api/v1/domains",
            json!({
                "hostname": "shop.example.com",
                "origin": origin,
                "settings": { "exclude_paths": ["/products/*"] },
            }),
        )
        .await;
    assert_eq!(domain.status, 201, "{:?}", domain.body);
    let id = domain.body["id"].as_str().unwrap();
    let verified = client
        .post(&format!("/api/v1/domains/{id}/verify"), json!({}))
        .await;
    assert_eq!(verified.body["verified"], true, "{:?}", verified.body);

    let started = client
        .post(
            "/api/v1/cache/warm",
            json!({ "domain_id": id, "sitemap_url": "http://shop.example.com/sitemap.xml" }),
        )
        .await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let path = format!(
        "/api/v1/cache/warm/{}",
        started.body["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let job = client.get(&path).await;
        assert_eq!(job.status, 200, "{:?}", job.body);
        if job.body["state"] != "collecting" {
            break job.body;
        }
        assert!(Instant::now() < deadline, "the sitemap was never read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Nothing to render, and every entry left out is counted: the 50,000 pages read, the place
    // where reading stopped, and the note that the sitemap went beyond what a warm reads.
    assert_eq!(job["state"], "done", "{}", job["error"]);
    assert_eq!(job["total"], 0);
    assert_eq!(job["skipped_total"], 50_000 + 2);
    assert_eq!(job["skipped_truncated"], true);
    // But only the first hundred are listed: the note first, so that it is always seen.
    let listed = job["skipped"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[0]["url"], "http://shop.example.com/sitemap.xml");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the sitemap goes beyond what a warm reads (at most 50000 URLs"),
        "{}",
        listed[0]
    );
    assert!(
        listed[1..]
            .iter()
            .any(|entry| entry["url"] == "http://shop.example.com/products/0"
                && entry["reason"].as_str().unwrap().contains("exclude_paths")),
        "{listed:?}"
    );
    // So the record stays a few kilobytes, in Postgres and in what the API returns (it was 7.3 MB).
    let answered = serde_json::to_vec(&job).unwrap().len();
    assert!(answered < 32 * 1024, "the job's record is {answered} bytes");
    let stored: i32 = sqlx::query_scalar("SELECT pg_column_size(skipped) FROM warm_jobs")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(stored < 32 * 1024, "Postgres holds {stored} bytes of it");
}

// ---- errors -------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_a_4xx_in_the_one_error_shape() {
    let (_app, server) = server().await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;
    let domain = client.add_domain("shop.example.com", ORIGIN).await;
    let domain_id = domain["id"].as_str().unwrap();
    let raw = |method: reqwest::Method, path: &str| client.request(method, path);

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            "malformed JSON",
            raw(reqwest::Method::POST, "/api/v1/domains")
                .header("content-type", "application/json")
                .body("{\"hostname\": "),
            400,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "unknown field",
            raw(reqwest::Method::POST, "/api/v1/domains")
                .json(&json!({ "hostname": "a.example.com", "origin": ORIGIN, "colour": "red" })),
            422,
            "invalid_body",
            "unknown field `colour`",
        ),
        (
            "wrong type",
            raw(reqwest::Method::POST, "/api/v1/domains")
                .json(&json!({ "hostname": 5, "origin": ORIGIN })),
            422,
            "invalid_body",
            "invalid type",
        ),
        (
            "not JSON at all",
            raw(reqwest::Method::POST, "/api/v1/domains").body("hostname=a"),
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        ),
        (
            "oversized body",
            raw(reqwest::Method::POST, "/api/v1/cache/purge")
                .header("content-type", "application/json")
                .body(format!("{{\"urls\": [\"{}\"]}}", "a".repeat(10 * 1024 * 1024))),
            413,
            "body_too_large",
            "larger than",
        ),
        (
            "too many URLs",
            raw(reqwest::Method::POST, "/api/v1/cache/purge").json(&json!({
                "urls": vec!["https://shop.example.com/"; 1001]
            })),
            422,
            "invalid_body",
            "at most 1000",
        ),
        (
            "mixed purge modes",
            raw(reqwest::Method::POST, "/api/v1/cache/purge")
                .json(&json!({ "urls": ["https://shop.example.com/"], "domain_id": domain["id"], "all": true })),
            422,
            "invalid_body",
            "exactly one of",
        ),
        (
            "a malformed URL",
            raw(reqwest::Method::POST, "/api/v1/cache/purge")
                .json(&json!({ "urls": ["https://shop.example.com/", "not a url", "ftp://shop.example.com/x"] })),
            422,
            "invalid_body",
            "urls[1] `not a url`: not an absolute URL",
        ),
        (
            "a bad prefix",
            raw(reqwest::Method::POST, "/api/v1/cache/purge")
                .json(&json!({ "domain_id": domain["id"], "prefix": "blog" })),
            422,
            "invalid_body",
            "must start with `/`",
        ),
        (
            "a bad id in the path",
            raw(reqwest::Method::GET, "/api/v1/domains/not-a-uuid"),
            404,
            "not_found",
            "not a valid id",
        ),
        (
            "a bad query",
            raw(reqwest::Method::GET, "/api/v1/cache?domain_id=nope"),
            400,
            "bad_request",
            "query string",
        ),
        (
            "an unknown endpoint",
            raw(reqwest::Method::GET, "/api/v1/nothing-here"),
            404,
            "not_found",
            "no such API endpoint",
        ),
        (
            "a wrong method",
            raw(reqwest::Method::PUT, "/api/v1/domains"),
            405,
            "method_not_allowed",
            "does not support",
        ),
        (
            "an array where an object belongs",
            raw(reqwest::Method::PATCH, &format!("/api/v1/domains/{domain_id}"))
                .json(&json!([null, null])),
            422,
            "invalid_body",
            "must be a JSON object",
        ),
        (
            "a NUL in a string",
            raw(reqwest::Method::POST, "/api/v1/domains").json(&json!({
                "hostname": "a.example.com", "origin": ORIGIN,
                "settings": { "bot_user_agents": ["Kiln\u{0}Bot"] }
            })),
            422,
            "invalid_body",
            "NUL character",
        ),
        (
            "a control character in a purge prefix",
            raw(reqwest::Method::POST, "/api/v1/cache/purge")
                .json(&json!({ "domain_id": domain["id"], "prefix": "/blog\u{1}" })),
            422,
            "invalid_body",
            "control characters",
        ),
        (
            "an empty number in the query",
            raw(reqwest::Method::GET, &format!("/api/v1/cache?domain_id={domain_id}&limit=")),
            400,
            "bad_request",
            "query string",
        ),
        (
            "an empty date in the query",
            raw(reqwest::Method::GET, "/api/v1/usage?to="),
            400,
            "bad_request",
            "must be a date",
        ),
        (
            "a render log cursor the API never returned",
            raw(reqwest::Method::GET, &format!("/api/v1/renders?domain_id={domain_id}&cursor=%00")),
            400,
            "bad_request",
            "`cursor` is not one this API returned",
        ),
        (
            "warming an unverified domain",
            raw(reqwest::Method::POST, "/api/v1/cache/warm")
                .json(&json!({ "urls": ["https://shop.example.com/"] })),
            409,
            "domain_not_verified",
            "not verified yet",
        ),
    ];
    for (what, request, status, code, message) in cases {
        let response = client.raw(request).await;
        assert_eq!(response.status, status, "{what}: {:?}", response.body);
        assert_eq!(response.code(), code, "{what}: {:?}", response.body);
        assert!(
            response.message().contains(message),
            "{what}: {}",
            response.message()
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let (_app, server) = server().await;
    let document = ApiClient::new(&server).get("/api/v1/openapi.json").await;
    assert_eq!(document.status, 200);
    assert!(document.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/password", "post"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/service-tokens", "post"),
        ("/api/v1/service-tokens", "get"),
        ("/api/v1/service-tokens/{id}", "delete"),
        ("/api/v1/domains", "post"),
        ("/api/v1/domains", "get"),
        ("/api/v1/domains/{id}", "get"),
        ("/api/v1/domains/{id}", "patch"),
        ("/api/v1/domains/{id}", "delete"),
        ("/api/v1/domains/{id}/verify", "post"),
        ("/api/v1/cache/purge", "post"),
        ("/api/v1/cache/warm", "post"),
        ("/api/v1/cache/warm/{id}", "get"),
        ("/api/v1/cache", "get"),
        ("/api/v1/render", "get"),
        ("/api/v1/parity", "post"),
        ("/api/v1/parity", "get"),
        ("/api/v1/parity/{id}", "get"),
        ("/api/v1/parity/{id}/images/{image}", "get"),
        ("/api/v1/renders", "get"),
        ("/api/v1/usage", "get"),
        ("/api/v1/audit", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let schemes = &document.body["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");

    // Every JSON body can be refused as not JSON, too large, not sent as JSON or of the wrong shape.
    let mut with_body = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            for status in ["400", "413", "415", "422"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    assert_eq!(with_body, 10);

    // Every reference resolves.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&document.body, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
        assert!(
            document.body["components"]["schemas"].get(name).is_some(),
            "{target} does not resolve"
        );
    }
}

#[tokio::test]
async fn pending_domains_are_verified_in_the_background() {
    let (_dns, app, server) = server_with_a_cname_for("shop.example.com").await;
    let client = ApiClient::account_with_key(&server, "jane@example.com").await;
    let domain = client.add_domain("shop.example.com", ORIGIN).await;
    assert_eq!(domain["verified"], false);
    let path = format!("/api/v1/domains/{}", domain["id"].as_str().unwrap());
    // The background verifier looks every 15 s; nobody calls /verify here.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let current = client.get(&path).await;
        if current.body["verified"] == true {
            assert_eq!(
                current.body["verification"]["last_check"]["method"],
                "cname"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never verified: {:?}",
            current.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(app.redis_domain("shop.example.com").await.unwrap().verified);
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE action = 'domain.verify'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(actor, "system:verifier");
}

#[tokio::test]
async fn sign_up_and_log_in_are_rate_limited_per_client_address() {
    let (_app, server) = server().await;
    let client = ApiClient::new(&server);
    // Twenty requests at once from one address (whatever they carry), then one every 3 s.
    let mut statuses = Vec::new();
    for attempt in 0..22 {
        let path = if attempt % 2 == 0 {
            "/api/v1/auth/login"
        } else {
            "/api/v1/auth/signup"
        };
        let response = client
            .post(
                path,
                json!({ "email": format!("user{attempt}@example.com"), "password": "x" }),
            )
            .await;
        statuses.push(response.status);
        if response.status == 429 {
            assert_eq!(response.code(), "rate_limited");
            assert!(response.headers.contains_key("retry-after"));
        }
    }
    let first_limited = statuses.iter().position(|s| *s == 429);
    assert!(
        matches!(first_limited, Some(20 | 21)),
        "the 21st request should be refused: {statuses:?}"
    );
    // Other endpoints are not limited by it.
    assert_eq!(client.get("/api/v1/openapi.json").await.status, 200);
}

#[tokio::test]
async fn each_api_key_and_user_has_its_own_request_limit() {
    // Five requests at once, then one a second, per key and per logged-in user.
    let (_app, server) = server_with(|app| {
        app.settings.api_rate_per_second = 1;
        app.settings.api_rate_burst = 5;
    })
    .await;
    let mut user = ApiClient::new(&server);
    user.sign_up("jane@example.com").await;
    let mut keys = Vec::new();
    for name in ["ci", "cron"] {
        let created = user.post("/api/v1/api-keys", json!({ "name": name })).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        keys.push(user.with_key(created.body["secret"].as_str().unwrap()));
    }
    let other_tenant = ApiClient::account_with_key(&server, "other@example.com").await;

    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(keys[0].get("/api/v1/domains").await.status);
    }
    let first_limited = statuses.iter().position(|s| *s == 429);
    assert!(
        matches!(first_limited, Some(5 | 6)),
        "the sixth request at once should be refused: {statuses:?}"
    );
    let limited = keys[0].get("/api/v1/domains").await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    assert!(
        limited.message().contains("this API key"),
        "{}",
        limited.message()
    );
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // The account's other key, the user's session and another tenant are not held back by it.
    assert_eq!(keys[1].get("/api/v1/domains").await.status, 200);
    assert_eq!(user.get("/api/v1/domains").await.status, 200);
    assert_eq!(other_tenant.get("/api/v1/domains").await.status, 200);

    // The key gets a request a second again.
    tokio::time::sleep(Duration::from_millis(1100 * wait)).await;
    assert_eq!(keys[0].get("/api/v1/domains").await.status, 200);

    // A bad key is refused as unauthorized, not counted against anybody.
    let forged = user.with_key("kiln_live_00000000000000000000000000000000");
    assert_eq!(forged.get("/api/v1/domains").await.status, 401);
}

#[tokio::test]
async fn the_audit_log_is_the_accounts_own_and_pages_back_in_time() {
    let (_app, server) = server().await;
    let owner = ApiClient::account_with_key(&server, "owner@example.com").await;
    let other = ApiClient::account_with_key(&server, "other@example.com").await;
    for host in ["a.example.com", "b.example.com", "c.example.com"] {
        let added = owner
            .post(
                "/api/v1/domains",
                json!({ "hostname": host, "origin": ORIGIN }),
            )
            .await;
        assert_eq!(added.status, 201, "{:?}", added.body);
    }

    let first = owner.get("/api/v1/audit?limit=2").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let events = first.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "domain.add");
    assert_eq!(events[0]["target"], "c.example.com");
    assert!(
        events[0]["actor"].as_str().unwrap().starts_with("api_key:"),
        "{events:?}"
    );
    assert_eq!(events[0]["after"]["origin"], ORIGIN);
    let cursor = first.body["next_cursor"].as_i64().expect("more to come");
    let rest = owner
        .get(&format!("/api/v1/audit?limit=100&cursor={cursor}"))
        .await;
    let targets: Vec<&str> = rest.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    // a.example.com, then the key's creation and the sign-up.
    assert_eq!(targets[0], "a.example.com", "{targets:?}");
    assert!(targets.contains(&"owner@example.com"), "{targets:?}");
    assert_eq!(rest.body["next_cursor"], Value::Null);

    // Another account sees none of it.
    let theirs = other.get("/api/v1/audit").await;
    assert!(
        theirs.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["target"].as_str().unwrap().ends_with("example.com")
                || e["target"] == "other@example.com"),
        "{:?}",
        theirs.body
    );
    for bad in ["limit=0", "limit=501", "cursor=0", "cursor=x", "since=1"] {
        let refused = owner.get(&format!("/api/v1/audit?{bad}")).await;
        assert_eq!(refused.status, 400, "{bad}: {:?}", refused.body);
    }
    assert_eq!(
        ApiClient::new(&server).get("/api/v1/audit").await.status,
        401
    );
}
