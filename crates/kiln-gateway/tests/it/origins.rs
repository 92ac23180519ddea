//! Where people's requests may be proxied: a tenant's origin is never one of Kiln's own services
//! (Redis, the gateway's listeners, whatever `KILN_PLATFORM_ADDRS` names), whatever
//! `KILN_ALLOWED_PRIVATE_NETS` grants, and a private grant opens only its ports to its tenants.

use crate::helpers::{TestApp, TestOrigin, domain, spawn_app_with};
use kiln_core::DomainSettings;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Publishes a domain of `tenant` at `host` whose origin is `origin`, and waits until the gateway
/// routes it.
async fn publish(gw: &TestApp, host: &str, tenant: &str, origin: String) {
    let mut config = domain(host, 1, DomainSettings::default());
    config.tenant_id = tenant.to_owned();
    config.origin = origin;
    gw.store.directory().put(&config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(gw, host, "/__probe").await.status() == StatusCode::MISDIRECTED_REQUEST {
        assert!(
            Instant::now() < deadline,
            "{host} never reached the directory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(gw: &TestApp, host: &str, path: &str) -> reqwest::Response {
    gw.client
        .get(gw.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap()
}

fn redis_connections(gw: &TestApp) -> u64 {
    let info = gw.redis.cli(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("redis reports its connections")
}

#[tokio::test]
async fn kiln_s_own_services_are_never_origins_whatever_is_granted() {
    // Stands for the dashboard or Postgres: another service of the deployment, named in
    // KILN_PLATFORM_ADDRS.
    let platform_service = TestOrigin::start().await;
    // The test settings grant every port of 127.0.0.1 to every tenant: the widest grant there is.
    let gw = spawn_app_with(
        DomainSettings::default(),
        &[(
            "KILN_PLATFORM_ADDRS",
            format!("localhost:{}", platform_service.port),
        )],
    )
    .await;
    let redis_port = gw.redis.port();
    let targets = [
        ("redis.test", format!("http://127.0.0.1:{redis_port}")),
        (
            "redis-by-name.test",
            format!("http://localhost:{redis_port}"),
        ),
        (
            "redis-mapped.test",
            format!("http://[::ffff:127.0.0.1]:{redis_port}"),
        ),
        ("gateway.test", format!("http://127.0.0.1:{}", gw.port)),
        ("admin.test", format!("http://127.0.0.1:{}", gw.admin_port)),
        (
            "platform.test",
            format!("http://127.0.0.1:{}", platform_service.port),
        ),
    ];
    for (host, origin) in &targets {
        publish(&gw, host, "tenant-1", origin.clone()).await;
    }
    let redis_before = redis_connections(&gw);
    for (host, origin) in &targets {
        for path in ["/", "/metrics", "/readyz"] {
            let response = get(&gw, host, path).await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_GATEWAY,
                "{host} ({origin}) {path}"
            );
            assert_eq!(
                response.headers()["x-kiln-error"],
                "origin-refused",
                "{host} {path}"
            );
            let body = response.text().await.unwrap();
            assert!(!body.contains("kiln_"), "{host}: no metrics leak: {body}");
        }
    }
    assert_eq!(
        redis_connections(&gw),
        redis_before + 1,
        "no connection but redis-cli's own reached Redis on a tenant's behalf"
    );
    assert_eq!(
        platform_service.log.count(),
        0,
        "nothing reached the platform's service"
    );
    // The grant itself still works for a real origin.
    let shop = get(&gw, "shop.test", "/").await;
    assert_eq!(shop.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_private_grant_opens_its_ports_to_its_tenants_only() {
    let granted = TestOrigin::start().await;
    let other_port = TestOrigin::start().await;
    let gw = spawn_app_with(
        DomainSettings::default(),
        &[(
            "KILN_ALLOWED_PRIVATE_NETS",
            format!("127.0.0.1:{}@tenant-7", granted.port),
        )],
    )
    .await;
    let cases = [
        ("granted.test", "tenant-7", granted.port, StatusCode::OK),
        (
            "sign-up.test",
            "tenant-8",
            granted.port,
            StatusCode::BAD_GATEWAY,
        ),
        (
            "other-port.test",
            "tenant-7",
            other_port.port,
            StatusCode::BAD_GATEWAY,
        ),
    ];
    for (host, tenant, port, _) in cases {
        publish(&gw, host, tenant, format!("http://127.0.0.1:{port}")).await;
    }
    // Named origins go through the resolver's check, literal ones through the literal check.
    publish(
        &gw,
        "by-name.test",
        "tenant-8",
        format!("http://localhost:{}", granted.port),
    )
    .await;
    // Publishing probed each domain once; only the granted one's probe arrived.
    assert_eq!(granted.log.count(), 1);
    for (host, _, _, expected) in cases {
        let response = get(&gw, host, "/").await;
        assert_eq!(response.status(), expected, "{host}");
        if expected != StatusCode::OK {
            assert_eq!(
                response.headers()["x-kiln-error"],
                "origin-refused",
                "{host}"
            );
        }
    }
    let by_name = get(&gw, "by-name.test", "/").await;
    assert_eq!(by_name.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(by_name.headers()["x-kiln-error"], "origin-refused");
    assert_eq!(
        granted.log.count(),
        2,
        "only the granted tenant's requests arrived"
    );
    assert_eq!(other_port.log.count(), 0);
    // shop.test (tenant-1, no grant) cannot reach its loopback origin either.
    assert_eq!(
        get(&gw, "shop.test", "/").await.status(),
        StatusCode::BAD_GATEWAY
    );
}
