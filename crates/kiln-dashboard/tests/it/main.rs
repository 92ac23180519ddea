//! The dashboard against real Postgres and Redis: domain registration, removal, publishing, the
//! `serve` endpoints and the command line itself. See `helpers.rs` for where the servers come from.

mod activity;
mod api;
mod certificates;
mod directory_publish;
mod helpers;
mod outage;
mod parity;
mod render_stats;
mod secrets;
mod service_tokens;
mod stats;
mod web;

use helpers::{TEST_ACTOR, TestServer, spawn_app, spawn_app_allowing};
use kiln_control::OPERATOR_TENANT_ID;
use kiln_control::directory;
use kiln_control::domains::{self, Added, DomainError};
use kiln_control::origin::OriginError;
use kiln_core::{DomainSettings, Hostname};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test]
async fn add_stores_the_domain_in_postgres_and_publishes_it_to_redis() {
    let t = spawn_app().await;

    let added = t
        .add("Demo.LocalHost", "http://127.0.0.1:5173/")
        .await
        .unwrap();

    let Added::Created(record) = &added else {
        panic!("expected a new registration: {added:?}")
    };
    assert_eq!(record.host.as_str(), "demo.localhost");
    assert_eq!(record.origin, "http://127.0.0.1:5173");
    assert!(record.verified);
    assert_eq!(record.tenant_id, OPERATOR_TENANT_ID);
    assert!(
        record.verification_token.starts_with("kiln-verify-"),
        "{}",
        record.verification_token
    );
    assert_eq!(record.verification_token.len(), "kiln-verify-".len() + 32);

    let rows = t.pg_domains().await;
    assert_eq!(
        rows,
        vec![helpers::PgDomain {
            hostname: "demo.localhost".into(),
            origin: "http://127.0.0.1:5173".into(),
            verified: true,
            tenant_id: OPERATOR_TENANT_ID,
        }]
    );

    let published = t
        .redis_domain("demo.localhost")
        .await
        .expect("the domain is not in Redis");
    assert_eq!(published, record.config());
    assert_eq!(published.host.as_str(), "demo.localhost");
    assert_eq!(published.id, record.id.to_string());
    assert_eq!(published.tenant_id, "00000000-0000-0000-0000-000000000001");
    assert_eq!(published.settings, DomainSettings::default());
    assert_eq!(t.redis_hosts().await, ["demo.localhost"]);

    let audit = t.audit_events().await;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        (TEST_ACTOR, "domain.add")
    );
    assert_eq!(audit[0].target, "demo.localhost");
    assert_eq!(audit[0].tenant_id, Some(OPERATOR_TENANT_ID));
    assert_eq!(audit[0].before, None);
    let after = audit[0].after.as_ref().expect("no after image");
    assert_eq!(after["host"], "demo.localhost");
    assert_eq!(after["origin"], "http://127.0.0.1:5173");
    assert!(
        after.get("verification_token").is_none(),
        "the audit log keeps the token: {after}"
    );
}

#[tokio::test]
async fn settings_flags_reach_postgres_and_redis() {
    let t = spawn_app().await;
    let settings = DomainSettings {
        cache_ttl_secs: 60,
        render_timeout_ms: 5_000,
        bot_wait_ms: 1_500,
        ..Default::default()
    };

    t.add_with(
        "shop.localhost",
        "http://127.0.0.1:8080",
        settings.clone(),
        false,
    )
    .await
    .unwrap();

    let stored: (serde_json::Value,) =
        sqlx::query_as("SELECT settings FROM domains WHERE hostname = 'shop.localhost'")
            .fetch_one(&t.pg)
            .await
            .unwrap();
    assert_eq!(stored.0["cache_ttl_secs"], 60);
    assert_eq!(stored.0["bot_wait_ms"], 1_500);
    assert_eq!(
        t.redis_domain("shop.localhost").await.unwrap().settings,
        settings
    );
}

#[tokio::test]
async fn a_duplicate_is_a_conflict_and_changes_nothing() {
    let t = spawn_app_allowing("127.0.0.0/8:1-65535@*").await;
    t.add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();

    for origin in ["http://127.0.0.1:5173", "http://127.0.0.2:9999"] {
        let error = t.add("DEMO.localhost", origin).await.unwrap_err();
        assert!(
            matches!(&error, DomainError::Conflict(host) if host.as_str() == "demo.localhost"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "demo.localhost is already registered");
    }

    let rows = t.pg_domains().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].origin, "http://127.0.0.1:5173");
    assert_eq!(
        t.audit_events().await.len(),
        1,
        "a refused add must not be audited"
    );
    assert_eq!(
        t.redis_domain("demo.localhost").await.unwrap().origin,
        "http://127.0.0.1:5173"
    );
}

#[tokio::test]
async fn if_not_exists_accepts_an_identical_registration_and_republishes_it() {
    let t = spawn_app_allowing("127.0.0.0/8:1-65535@*").await;
    let first = t
        .add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    t.flush_redis().await;
    assert!(t.redis_hosts().await.is_empty());

    let again = t
        .add_with(
            "demo.localhost",
            "http://127.0.0.1:5173/",
            DomainSettings::default(),
            true,
        )
        .await
        .unwrap();

    assert_eq!(again, Added::AlreadyPresent(first.record().clone()));
    assert_eq!(
        t.redis_domain("demo.localhost").await,
        Some(first.record().config())
    );
    assert_eq!(t.pg_domains().await.len(), 1);
    assert_eq!(t.audit_events().await.len(), 1);

    // A different origin or different settings is not the same registration.
    let error = t
        .add_with(
            "demo.localhost",
            "http://127.0.0.2:5173",
            DomainSettings::default(),
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, DomainError::ConflictDiffers { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("different origin or settings (origin http://127.0.0.1:5173)"),
        "{error}"
    );
    let other_settings = DomainSettings {
        cache_ttl_secs: 5,
        ..Default::default()
    };
    let error = t
        .add_with(
            "demo.localhost",
            "http://127.0.0.1:5173",
            other_settings,
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, DomainError::ConflictDiffers { .. }),
        "{error:?}"
    );
    assert_eq!(t.pg_domains().await[0].origin, "http://127.0.0.1:5173");
}

#[tokio::test]
async fn a_loopback_origin_needs_an_allowed_network() {
    let strict = spawn_app_allowing("").await;
    let error = strict
        .add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            DomainError::Origin(OriginError::NotPublic { address, .. })
                if address.to_string() == "127.0.0.1"
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("grant it with KILN_ALLOWED_PRIVATE_NETS (e.g. 127.0.0.1:5173@"),
        "{error}"
    );
    assert!(strict.pg_domains().await.is_empty());
    assert!(strict.redis_hosts().await.is_empty());

    // Private ranges other than the one allowed stay refused.
    let relaxed = spawn_app_allowing("127.0.0.1:1-65535@*").await;
    let error = relaxed
        .add("lan.localhost", "http://10.0.0.5")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DomainError::Origin(OriginError::NotPublic { .. })),
        "{error:?}"
    );
    let error = relaxed
        .add("meta.localhost", "http://169.254.169.254")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DomainError::Origin(OriginError::NotPublic { .. })),
        "{error:?}"
    );

    relaxed
        .add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    assert_eq!(relaxed.redis_hosts().await, ["demo.localhost"]);
}

#[tokio::test]
async fn an_unresolvable_origin_is_refused() {
    let t = spawn_app().await;
    let error = t
        .add("demo.localhost", "http://no-such-origin.invalid")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DomainError::Origin(OriginError::Unresolvable { .. })),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("origin host `no-such-origin.invalid` cannot be resolved"),
        "{error}"
    );
    assert!(t.pg_domains().await.is_empty());
}

#[tokio::test]
async fn malformed_input_is_refused_by_the_command_line_with_clear_messages() {
    let t = spawn_app().await;
    let cases = [
        (
            ["--host", "demo.localhost", "--origin", "file:///etc/passwd"],
            "only http and https origins are supported",
        ),
        (
            ["--host", "demo.localhost", "--origin", "http://user:pw@x"],
            "credentials are not allowed in an origin",
        ),
        (
            ["--host", "demo.localhost", "--origin", "http://x/path"],
            "has the path `/path`; give only scheme, host and port",
        ),
        (
            [
                "--host",
                "demo.localhost:8080",
                "--origin",
                "http://127.0.0.1",
            ],
            "has a port, path or wildcard",
        ),
        (
            ["--host", "bad host", "--origin", "http://127.0.0.1"],
            "is not a valid hostname",
        ),
    ];
    for (args, expected) in cases {
        let out = t.cli(&[&["domain", "add"][..], &args[..]].concat()).await;
        assert_ne!(out.code, Some(0), "{args:?} was accepted: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    assert!(t.pg_domains().await.is_empty());
    assert!(t.redis_hosts().await.is_empty());
}

#[tokio::test]
async fn the_command_line_refuses_the_platforms_names_single_labels_and_public_suffixes_too() {
    let t = spawn_app().await;
    let env = [
        ("KILN_DATABASE_URL", t.database.url.as_str()),
        ("KILN_CNAME_TARGET", "edge.kiln.example.com"),
        (
            "KILN_DASHBOARD_PUBLIC_URL",
            "https://dashboard.kiln.example.com",
        ),
    ];
    for (host, expected) in [
        (
            "Edge.Kiln.Example.com",
            "error: edge.kiln.example.com is reserved: it is edge.kiln.example.com, this Kiln \
             platform's CNAME target, or a name under it",
        ),
        (
            "www.dashboard.kiln.example.com",
            "error: www.dashboard.kiln.example.com is reserved: it is dashboard.kiln.example.com, \
             this Kiln platform's dashboard",
        ),
        ("localhost", "error: localhost is a single label"),
        ("co.uk", "error: co.uk is a public suffix"),
    ] {
        let args = [
            "domain",
            "add",
            "--host",
            host,
            "--origin",
            "http://127.0.0.1:5173",
        ];
        let out = t.cli_with_env(&args, &env).await;
        assert_eq!(out.code, Some(1), "{host}: {out:?}");
        assert!(out.stderr.starts_with(expected), "{host}: {}", out.stderr);
    }
    assert!(t.pg_domains().await.is_empty());
    assert!(t.redis_hosts().await.is_empty());

    // The operator registers customers' names as before, including under a private suffix.
    let args = [
        "domain",
        "add",
        "--host",
        "shop.github.io",
        "--origin",
        "http://127.0.0.1:5173",
    ];
    let out = t.cli_with_env(&args, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(t.redis_hosts().await, ["shop.github.io"]);
}

#[tokio::test]
async fn remove_deletes_from_postgres_and_redis() {
    let t = spawn_app().await;
    t.add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    t.add("other.localhost", "http://127.0.0.1:5174")
        .await
        .unwrap();

    let removed = t.remove("Demo.Localhost").await.unwrap();

    assert_eq!(removed.host.as_str(), "demo.localhost");
    let rows = t.pg_domains().await;
    assert_eq!(
        rows.iter().map(|r| r.hostname.as_str()).collect::<Vec<_>>(),
        ["other.localhost"]
    );
    assert_eq!(t.redis_domain("demo.localhost").await, None);
    assert_eq!(t.redis_hosts().await, ["other.localhost"]);
    let audit = t.audit_events().await;
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["domain.add", "domain.add", "domain.remove"]
    );
    assert_eq!(audit[2].target, "demo.localhost");
    assert_eq!(
        audit[2].before.as_ref().unwrap()["origin"],
        "http://127.0.0.1:5173"
    );
    assert_eq!(audit[2].after, None);

    let error = t.remove("demo.localhost").await.unwrap_err();
    assert!(
        matches!(&error, DomainError::NotRegistered(host) if host.as_str() == "demo.localhost"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "demo.localhost is not registered");
    assert_eq!(t.audit_events().await.len(), 3);
}

#[tokio::test]
async fn publish_all_repairs_a_flushed_redis_and_withdraws_stale_domains() {
    let t = spawn_app().await;
    let demo = t
        .add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    let shop = t
        .add("shop.localhost", "http://127.0.0.1:5174")
        .await
        .unwrap();
    t.flush_redis().await;
    assert!(t.redis_hosts().await.is_empty());
    // A domain Redis still has but Postgres no longer knows.
    let mut stale = demo.record().config();
    stale.host = Hostname::parse("stale.localhost").unwrap();
    t.app.store.directory().put(&stale).await.unwrap();

    let report = directory::publish_all(&t.app).await.unwrap();

    assert_eq!(report.published, 2);
    assert_eq!(
        report.withdrawn,
        [Hostname::parse("stale.localhost").unwrap()]
    );
    assert_eq!(t.redis_hosts().await, ["demo.localhost", "shop.localhost"]);
    assert_eq!(
        t.redis_domain("demo.localhost").await,
        Some(demo.record().config())
    );
    assert_eq!(
        t.redis_domain("shop.localhost").await,
        Some(shop.record().config())
    );
}

#[tokio::test]
async fn domains_registered_under_names_nobody_may_claim_are_never_published() {
    let t = spawn_app().await;
    let shop = t
        .add("shop.localhost", "http://127.0.0.1:5174")
        .await
        .unwrap();
    // Rows from before the names were reserved: the CNAME target, a name under it, a single
    // label. `add` refuses them now, so they are written straight to Postgres.
    for (i, host) in ["edge.kiln.test", "x.edge.kiln.test", "localhost"]
        .into_iter()
        .enumerate()
    {
        let host = Hostname::parse(host).unwrap();
        t.app
            .db
            .insert_domain(
                &kiln_control::db::NewDomain {
                    id: uuid::Uuid::now_v7(),
                    tenant_id: OPERATOR_TENANT_ID,
                    host: &host,
                    origin: "http://127.0.0.1:5175",
                    verified: true,
                    verification_token: &format!("token-{i}"),
                    settings: &DomainSettings::default(),
                    service_only: false,
                },
                TEST_ACTOR,
            )
            .await
            .unwrap();
        // As an older dashboard would have published it.
        let mut config = shop.record().config();
        config.host = host;
        t.app.store.directory().put(&config).await.unwrap();
    }
    let report = directory::publish_all(&t.app).await.unwrap();
    assert_eq!(report.published, 1);
    assert_eq!(report.withdrawn.len(), 3, "{:?}", report.withdrawn);
    assert_eq!(t.redis_hosts().await, ["shop.localhost"]);
}

#[tokio::test]
async fn a_serving_dashboard_publishes_the_whole_directory_again_once_redis_lost_it() {
    let t = spawn_app().await;
    t.add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    t.add("shop.localhost", "http://127.0.0.1:5174")
        .await
        .unwrap();
    let _server = TestServer::start(&t).await;
    assert!(t.app.store.directory().is_complete().await.unwrap());

    // Redis restarts empty, then one domain is added: a directory of one, not marked complete.
    t.flush_redis().await;
    t.add("new.localhost", "http://127.0.0.1:5175")
        .await
        .unwrap();
    let flushed = Instant::now();
    loop {
        let directory = t.app.store.directory().read().await.unwrap();
        if directory.complete {
            break;
        }
        assert!(
            flushed.elapsed() < Duration::from_secs(10),
            "the directory was not published again: {directory:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        t.redis_hosts().await,
        ["demo.localhost", "new.localhost", "shop.localhost"]
    );
}

#[tokio::test]
async fn serve_answers_health_readiness_and_the_home_page() {
    let mut t = spawn_app().await;
    let server = TestServer::start(&t).await;

    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");

    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "postgres": "ok", "redis": "ok" }));

    // The home page is the web dashboard's: a visitor is sent to log in.
    let home = server.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(
        home.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = home.text().await.unwrap();
    assert!(html.contains("<h1>Log in to Kiln</h1>"), "{html}");

    // The admin port answers the probes and the metrics, which count what the main port served;
    // the main port never shows the metrics.
    let admin = reqwest::Client::new();
    let admin_health = admin
        .get(format!("{}/healthz", server.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_health.status(), StatusCode::OK);
    let admin_ready = admin
        .get(format!("{}/readyz", server.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_ready.status(), StatusCode::OK);
    let metrics_on_main = server.get("/metrics").await;
    assert!(
        !metrics_on_main
            .text()
            .await
            .unwrap()
            .contains("kiln_dashboard_requests"),
        "the metrics must not be served to users"
    );
    assert!(
        server
            .metric(r#"kiln_dashboard_requests_total{area="web",status="2xx"}"#)
            .await
            >= 1.0,
        "the home page"
    );
    assert_eq!(
        server
            .metric(r#"kiln_dashboard_requests_total{area="other",status="2xx"}"#)
            .await,
        2.0,
        "one /healthz and one /readyz on the main port"
    );
    assert_eq!(
        server
            .metric(r#"kiln_build_info{service="dashboard",version="0.0.0"}"#)
            .await,
        1.0
    );
    let text = admin
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    kiln_testkit::assert_serves_documented_metrics(&text, &["Every Kiln service", "Dashboard"]);

    t.redis.stop();
    // The pool notices the dead connection on its next command; allow it a moment, no more.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = server.get_json("/readyz").await;
        if status != StatusCode::OK || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["postgres"], "ok");
    assert!(
        body["redis"].as_str().unwrap().starts_with("failed: "),
        "{body}"
    );

    assert_eq!(
        server.get("/healthz").await.status(),
        StatusCode::OK,
        "liveness must not depend on Redis"
    );
}

#[tokio::test]
async fn serve_republishes_every_domain_when_it_starts() {
    let t = spawn_app().await;
    let demo = t
        .add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    t.flush_redis().await;

    let _server = TestServer::start(&t).await;

    assert_eq!(t.redis_hosts().await, ["demo.localhost"]);
    assert_eq!(
        t.redis_domain("demo.localhost").await,
        Some(demo.record().config())
    );
}

#[tokio::test]
async fn the_command_line_adds_lists_and_removes_domains() {
    let t = spawn_app().await;

    let migrate = t.cli(&["migrate"]).await;
    assert_eq!(migrate.code, Some(0), "{migrate:?}");

    let add = [
        "domain",
        "add",
        "--host",
        "Demo.LocalHost",
        "--origin",
        "http://127.0.0.1:5173",
        "--cache-ttl-secs",
        "120",
        "--bot-rate-per-second",
        "0",
    ];
    let out = t.cli(&add).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .starts_with("registered demo.localhost -> http://127.0.0.1:5173 (id "),
        "{out:?}"
    );
    let published = t.redis_domain("demo.localhost").await.unwrap().settings;
    assert_eq!(published.cache_ttl_secs, 120);
    assert_eq!(published.bot_rate_per_second, 0, "no limit, as asked");
    assert_eq!(published.bot_rate_burst, 10, "the default");

    let out = t.cli(&add).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "error: demo.localhost is already registered"
    );

    let out = t.cli(&[&add[..], &["--if-not-exists"]].concat()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(
            "demo.localhost is already registered -> http://127.0.0.1:5173; republished it"
        ),
        "{out:?}"
    );

    let out = t.cli(&["domain", "list"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["HOST", "ORIGIN", "VERIFIED", "ID"]
    );
    let id = t.pg_domains_ids().await.remove(0);
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "demo.localhost",
            "http://127.0.0.1:5173",
            "true",
            id.as_str()
        ]
    );

    let out = t
        .cli(&["domain", "remove", "--host", "demo.localhost"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("removed demo.localhost"), "{out:?}");
    assert!(t.redis_hosts().await.is_empty());

    let out = t.cli(&["domain", "list"]).await;
    assert_eq!(out.stdout, "no domains registered\n");

    let out = t
        .cli(&["domain", "remove", "--host", "demo.localhost"])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "error: demo.localhost is not registered"
    );
}

#[tokio::test]
async fn the_command_line_publish_repairs_redis() {
    let t = spawn_app().await;
    t.add("demo.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    t.flush_redis().await;

    let out = t.cli(&["publish"]).await;

    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "published 1 domain(s) and 0 service token(s)\n");
    assert_eq!(t.redis_hosts().await, ["demo.localhost"]);
}

#[tokio::test]
async fn the_command_line_needs_a_database_url() {
    let t = spawn_app().await;
    let out = t.cli_with_env(&["domain", "list"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: KILN_DATABASE_URL is not set"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_command_line_creates_accounts_and_gives_them_domains() {
    let test = spawn_app().await;
    let created = test
        .cli_with_input(
            &["account", "add", "--email", "Shop@Example.com"],
            "correct horse battery staple\n",
        )
        .await;
    assert_eq!(created.code, Some(0), "{created:?}");
    assert!(
        created
            .stdout
            .contains("created the account shop@example.com"),
        "{created:?}"
    );

    let again = test
        .cli_with_input(
            &["account", "add", "--email", "shop@example.com"],
            "another strong passphrase\n",
        )
        .await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    let idempotent = test
        .cli_with_input(
            &[
                "account",
                "add",
                "--email",
                "shop@example.com",
                "--if-not-exists",
            ],
            "another strong passphrase\n",
        )
        .await;
    assert_eq!(idempotent.code, Some(0), "{idempotent:?}");
    let weak = test
        .cli_with_input(
            &["account", "add", "--email", "b@example.com"],
            "password\n",
        )
        .await;
    assert_eq!(weak.code, Some(1));
    assert!(weak.stderr.contains("too"), "{weak:?}");

    let owned = test
        .cli(&[
            "domain",
            "add",
            "--host",
            "shop.example.com",
            "--origin",
            "http://127.0.0.1:5173",
            "--owner",
            "shop@example.com",
        ])
        .await;
    assert_eq!(owned.code, Some(0), "{owned:?}");
    let tenant: uuid::Uuid =
        sqlx::query_scalar("SELECT tenant_id FROM users WHERE email = 'shop@example.com'")
            .fetch_one(&test.pg)
            .await
            .unwrap();
    let domain = test.redis_domain("shop.example.com").await.unwrap();
    assert_eq!(domain.tenant_id, tenant.to_string());
    assert!(domain.verified, "the operator vouches for it");

    let unknown = test
        .cli(&[
            "domain",
            "add",
            "--host",
            "other.example.com",
            "--origin",
            "http://127.0.0.1:5173",
            "--owner",
            "nobody@example.com",
        ])
        .await;
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr.contains("no account has the email"),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn an_origin_can_never_be_one_of_kiln_s_own_services() {
    // The widest grant: every port of 127.0.0.1, to every tenant.
    let t = spawn_app().await;
    let postgres_port = url::Url::parse(&t.database.url)
        .unwrap()
        .port_or_known_default()
        .unwrap();
    let redis = format!("http://127.0.0.1:{}", t.redis.port());
    let redis_by_name = format!("http://localhost:{}", t.redis.port());
    let postgres = format!("http://127.0.0.1:{postgres_port}");
    for (host, origin) in [
        ("redis.localhost", &redis),
        ("redis-name.localhost", &redis_by_name),
        ("postgres.localhost", &postgres),
    ] {
        let error = t.add(host, origin).await.unwrap_err();
        assert!(
            matches!(&error, DomainError::Origin(OriginError::Platform { .. })),
            "{origin}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("one of this Kiln's own services"),
            "{error}"
        );
    }
    assert!(t.pg_domains().await.is_empty());
    assert!(t.redis_hosts().await.is_empty());
    // Nor can an existing domain be moved there.
    t.add("shop.localhost", "http://127.0.0.1:5173")
        .await
        .unwrap();
    let record = t
        .app
        .db
        .domain_by_host(&kiln_core::Hostname::parse("shop.localhost").unwrap())
        .await
        .unwrap()
        .unwrap();
    let error = domains::update(
        &t.app,
        &record,
        Some(kiln_control::origin::Origin::parse(&redis).unwrap()),
        record.settings.clone(),
        TEST_ACTOR,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, DomainError::Origin(OriginError::Platform { .. })),
        "{error:?}"
    );
}
