//! TLS for customer domains, end to end: `kiln-acme`'s manager orders certificates from Pebble (the
//! ACME test server), which validates HTTP-01 through the real nginx edge and gateway at the address
//! a private dnsmasq gives the domain (127.0.0.1); the edge's sync writes them where nginx reads
//! them, and nginx serves each domain over HTTPS with its own certificate, checked by a TLS client
//! that trusts only Pebble's issuing root.

use kiln_acme::{CertSync, Manager, ManagerSettings, Sealer, Secret};
use kiln_core::{DomainConfig, DomainSettings, Hostname};
use kiln_store::{CertificateState, Store, StoreSettings};
use kiln_testkit::dns::{DnsRecord, TestDns};
use kiln_testkit::pebble::TestPebble;
use kiln_testkit::{TestEdge, TestRedis};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const SHOP: &str = "shop.acme.test";
const LATE: &str = "late.acme.test";
const UNVERIFIED: &str = "unverified.acme.test";
/// The render service's host: a name of the platform's own, not a customer's domain.
const SERVICE: &str = "render.acme.test";
const SECRET: &str = "e2e-acme-secret-0123456789abcdefghijklmnop";
const DAY: Duration = Duration::from_secs(86_400);

/// Redis, an origin, a gateway, the edge, dnsmasq and Pebble, and a manager and sync on them.
struct TestAcmeStack {
    store: Store,
    edge: TestEdge,
    pebble: TestPebble,
    manager: Manager,
    sync: CertSync,
    origin_port: u16,
    _dns: TestDns,
    redis: TestRedis,
    /// The Redis key prefix of the stack's services.
    prefix: String,
    _stops: Vec<oneshot::Sender<()>>,
}

impl TestAcmeStack {
    /// Pebble issues certificates valid for `validity` (its default, five years, when `None`); the
    /// manager renews them `renew_before` ahead of expiry.
    async fn start(validity: Option<Duration>, renew_before: Duration) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let redis = TestRedis::start();
        let prefix = kiln_testkit::unique_prefix();
        let store = Store::connect(StoreSettings::new(redis.url(), &prefix))
            .await
            .expect("redis");
        let mut stops = Vec::new();

        // The customers' origin: says which scheme the edge told it the client used.
        let origin = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
            let proto = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            format!("origin page, proto={proto}")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin_port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(async move {
            axum::serve(listener, origin)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });

        let vars = std::collections::HashMap::from([
            ("KILN_GATEWAY_LISTEN", "127.0.0.1:0".to_owned()),
            ("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
            ("KILN_REDIS_URL", redis.url()),
            ("KILN_REDIS_PREFIX", prefix.clone()),
            (
                "KILN_ALLOWED_PRIVATE_NETS",
                "127.0.0.1:1-65535@*".to_owned(),
            ),
            ("KILN_GATEWAY_VERIFY_CRAWLERS", "false".to_owned()),
        ]);
        let gateway = kiln_gateway::Application::build(
            kiln_gateway::Settings::from_lookup(|name| vars.get(name).cloned()).unwrap(),
        )
        .await
        .expect("gateway");
        let gateway_addr = SocketAddr::from(([127, 0, 0, 1], gateway.port()));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(gateway.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let edge = TestEdge::start(gateway_addr);

        let dns = TestDns::start(
            &[SHOP, LATE, UNVERIFIED, SERVICE].map(|host| DnsRecord::a(host, "127.0.0.1")),
        );
        let pebble = TestPebble::start(edge.port(), dns.addr(), validity);
        let sealer = || Sealer::new(&Secret::new(SECRET));
        let manager = Manager::new(
            &store,
            sealer(),
            ManagerSettings {
                directory_url: pebble.directory_url(),
                contact_email: Some("ops@kiln.test".to_owned()),
                ca_root: Some(pebble.ca_pem_path()),
                renew_before,
                check_interval: Duration::from_secs(3600),
                platform_hosts: Vec::new(),
            },
        );
        let sync = CertSync::new(&store, sealer(), edge.cert_dir());
        // As the dashboard does when it starts: the whole directory published (none yet), so that
        // it is complete and the domains published one by one below are all there is.
        store.directory().publish(&[]).await.unwrap();
        TestAcmeStack {
            store,
            edge,
            pebble,
            manager,
            sync,
            origin_port,
            _dns: dns,
            redis,
            prefix,
            _stops: stops,
        }
    }

    /// The certificate manager as `kiln-acme run` runs it (`kiln_acme::Application`), on the
    /// stack's Redis and Pebble with the settings of the stack's own manager (renewing 30 days
    /// ahead) and an admin port on a free port, once that port says it is ready. It runs until
    /// the returned sender is used or dropped.
    async fn spawn_manager(
        &self,
    ) -> (
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let vars = std::collections::HashMap::from([
            ("KILN_REDIS_URL", self.redis.url()),
            ("KILN_REDIS_PREFIX", self.prefix.clone()),
            ("KILN_ACME_SECRET", SECRET.to_owned()),
            ("KILN_ACME_DIRECTORY_URL", self.pebble.directory_url()),
            ("KILN_ACME_CONTACT_EMAIL", "ops@kiln.test".to_owned()),
            (
                "KILN_ACME_CA_ROOT",
                self.pebble.ca_pem_path().display().to_string(),
            ),
            ("KILN_ACME_RENEW_BEFORE_DAYS", "30".to_owned()),
            ("KILN_ACME_CHECK_INTERVAL_SECS", "3600".to_owned()),
            ("KILN_ACME_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
        ]);
        let app = kiln_acme::Application::build(
            kiln_acme::Settings::from_lookup(|name| vars.get(name).cloned()).unwrap(),
        )
        .await
        .expect("the certificate manager");
        let admin_port = app.admin_port().expect("an admin port");
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        kiln_testkit::wait_until_ready(&client, admin_port, Duration::from_secs(10)).await;
        (stop, running)
    }

    /// Publishes `host` as the dashboard does.
    async fn publish(&self, host: &str, verified: bool) {
        self.store
            .directory()
            .put(&self.config(host, verified))
            .await
            .unwrap();
    }

    /// `host` as the dashboard publishes it, with the stack's origin.
    fn config(&self, host: &str, verified: bool) -> DomainConfig {
        DomainConfig {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: "tenant-acme".into(),
            host: Hostname::parse(host).unwrap(),
            origin: format!("http://127.0.0.1:{}", self.origin_port),
            verified,
            settings: DomainSettings::default(),
            service_only: false,
        }
    }

    /// The root Pebble's certificates chain to, from its management interface.
    async fn issuing_root(&self) -> CertificateDer<'static> {
        let ca = std::fs::read(self.pebble.ca_pem_path()).unwrap();
        let (_, response) = https_get(
            self.pebble.management_addr(),
            "127.0.0.1",
            &pem_certs(&ca),
            "127.0.0.1",
            "/roots/0",
        )
        .await
        .expect("Pebble's root");
        let pem = response.split_once("\r\n\r\n").unwrap().1;
        pem_certs(pem.as_bytes()).remove(0)
    }

    fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.edge.tls_port()))
    }

    /// A plain-HTTP GET through the edge.
    async fn http_get(&self, host: &str, path: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap()
            .get(self.edge.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap()
    }
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A GET over TLS to `addr`, naming `server_name` in the handshake and trusting only `roots`.
/// Returns the certificate the server presented (DER) and the raw response.
async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    roots: &[CertificateDer<'static>],
    host: &str,
    path: &str,
) -> Result<(Vec<u8>, String), String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln-e2e\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // nginx may close without a TLS close_notify; what was read by then is the response.
    let _ = tls.read_to_end(&mut response).await;
    Ok((presented, String::from_utf8_lossy(&response).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_domain_gets_a_certificate_from_pebble_and_the_edge_serves_it_over_https() {
    let mut stack = TestAcmeStack::start(None, 30 * DAY).await;
    stack.publish(SHOP, true).await;
    stack.publish(UNVERIFIED, false).await;

    let report = stack.manager.run_once().await.expect("a pass");
    assert_eq!(report.issued, [SHOP], "{report:?}\n{}", stack.pebble.log());
    // The manager's metrics count the order and the certificate now held.
    let metrics = stack.manager.metrics().scrape().await;
    for line in [
        "kiln_acme_orders_total{result=\"issued\"} 1",
        "kiln_acme_orders_total{result=\"failed\"} 0",
        "kiln_acme_certificates 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    kiln_testkit::assert_serves_documented_metrics(
        &metrics,
        &[
            "Every Kiln service",
            "Certificate manager (`kiln-acme run`)",
        ],
    );
    assert!(report.failed.is_empty(), "{report:?}");
    // Pebble fetched the challenge's answer over HTTP from the edge, at the address DNS gave it.
    let fetched = format!(
        "Attempting to validate w/ HTTP: http://{SHOP}:{}/.well-known/acme-challenge/",
        stack.edge.port()
    );
    assert!(
        stack.pebble.log().contains(&fetched),
        "{}",
        stack.pebble.log()
    );
    let shop = Hostname::parse(SHOP).unwrap();
    let record = stack
        .store
        .certificates()
        .get(&shop)
        .await
        .unwrap()
        .expect("stored");
    assert!(
        !record.sealed_key.contains("PRIVATE KEY"),
        "the key is sealed"
    );
    assert!(!record.chain_pem.contains("PRIVATE KEY"));
    let status = stack
        .store
        .certificates()
        .status(&shop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, CertificateState::Issued);
    assert_eq!(status.not_after, Some(record.not_after));
    let unverified = Hostname::parse(UNVERIFIED).unwrap();
    assert!(
        stack
            .store
            .certificates()
            .get(&unverified)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        stack
            .store
            .certificates()
            .status(&unverified)
            .await
            .unwrap()
            .is_none()
    );

    let synced = stack.sync.sync_once().await.unwrap();
    assert_eq!(synced.written, [SHOP]);
    let file = stack.edge.cert_dir().join(format!("{SHOP}.pem"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(stack.edge.cert_dir().join("_default.pem").exists());
    assert!(
        !stack
            .edge
            .cert_dir()
            .join(format!("{UNVERIFIED}.pem"))
            .exists()
    );

    // The edge serves the domain over HTTPS with that certificate, which chains to Pebble's root.
    let root = stack.issuing_root().await;
    let (presented, response) = https_get(
        stack.tls_addr(),
        SHOP,
        std::slice::from_ref(&root),
        SHOP,
        "/products/3",
    )
    .await
    .expect("a verified TLS connection");
    let leaf = kiln_acme::cert::der_info(&presented).unwrap();
    assert_eq!(leaf.dns_names, [SHOP]);
    assert_eq!(leaf.fingerprint, record.fingerprint);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("origin page, proto=https"), "{response}");

    // No certificate for a domain that is not verified: its handshake fails.
    let refused = https_get(stack.tls_addr(), UNVERIFIED, &[root], UNVERIFIED, "/").await;
    assert!(refused.is_err(), "{refused:?}");

    // Over HTTP, the domain with a certificate is redirected to HTTPS, except ACME challenges;
    // the one without is served over HTTP as before.
    let redirected = stack.http_get(SHOP, "/products/3?colour=red").await;
    assert_eq!(redirected.status(), reqwest::StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        redirected.headers()["location"],
        format!(
            "https://{SHOP}:{}/products/3?colour=red",
            stack.edge.tls_port()
        )
        .as_str()
    );
    let challenge = stack
        .http_get(SHOP, "/.well-known/acme-challenge/unknown-token")
        .await;
    assert_eq!(challenge.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(challenge.headers().get("location").is_none());
    let plain = stack.http_get(UNVERIFIED, "/products/3").await;
    assert_eq!(plain.status(), reqwest::StatusCode::OK);
    assert_eq!(plain.text().await.unwrap(), "origin page, proto=http");

    // Five years left: nothing to renew, nothing rewritten.
    let again = stack.manager.run_once().await.unwrap();
    assert!(
        again.issued.is_empty() && again.failed.is_empty(),
        "{again:?}"
    );
    assert_eq!(stack.sync.sync_once().await.unwrap(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_services_host_gets_a_certificate_though_no_domain_names_it() {
    let mut stack = TestAcmeStack::start(None, 30 * DAY).await;
    let manager = Manager::new(
        &stack.store,
        Sealer::new(&Secret::new(SECRET)),
        ManagerSettings {
            directory_url: stack.pebble.directory_url(),
            contact_email: None,
            ca_root: Some(stack.pebble.ca_pem_path()),
            renew_before: 30 * DAY,
            check_interval: Duration::from_secs(3600),
            platform_hosts: vec![Hostname::parse(SERVICE).unwrap()],
        },
    );
    let report = manager.run_once().await.expect("a pass");
    assert_eq!(
        report.issued,
        [SERVICE],
        "{report:?}\n{}",
        stack.pebble.log()
    );
    // It is no customer's domain, and yet never withdrawn as one no longer verified.
    let again = manager.run_once().await.expect("a pass");
    assert_eq!(again, Default::default());

    let root = stack.issuing_root().await;
    stack.sync.sync_once().await.unwrap();
    let (presented, _) = https_get(stack.tls_addr(), SERVICE, &[root], SERVICE, "/")
        .await
        .unwrap();
    let record = stack
        .store
        .certificates()
        .get(&Hostname::parse(SERVICE).unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        kiln_acme::cert::der_info(&presented).unwrap().fingerprint,
        record.fingerprint
    );
}

#[tokio::test]
async fn a_certificate_near_expiry_is_renewed_and_the_edge_serves_the_new_one() {
    // Pebble issues one-hour certificates: inside a one-day renewal window from the start.
    let mut stack = TestAcmeStack::start(Some(Duration::from_secs(3600)), DAY).await;
    stack.publish(SHOP, true).await;
    let shop = Hostname::parse(SHOP).unwrap();
    let root = stack.issuing_root().await;

    let first = stack.manager.run_once().await.unwrap();
    assert_eq!(first.issued, [SHOP], "{first:?}\n{}", stack.pebble.log());
    let old = stack
        .store
        .certificates()
        .get(&shop)
        .await
        .unwrap()
        .unwrap();
    let lifetime = old.not_after - old.issued_at;
    assert!((3000..=3700).contains(&lifetime), "{lifetime}");
    stack.sync.sync_once().await.unwrap();
    let (presented, _) = https_get(
        stack.tls_addr(),
        SHOP,
        std::slice::from_ref(&root),
        SHOP,
        "/",
    )
    .await
    .unwrap();
    assert_eq!(
        kiln_acme::cert::der_info(&presented).unwrap().fingerprint,
        old.fingerprint
    );

    // A manager whose window is shorter than what is left leaves it alone.
    let patient = Manager::new(
        &stack.store,
        Sealer::new(&Secret::new(SECRET)),
        ManagerSettings {
            directory_url: stack.pebble.directory_url(),
            contact_email: None,
            ca_root: Some(stack.pebble.ca_pem_path()),
            renew_before: Duration::from_secs(600),
            check_interval: Duration::from_secs(3600),
            platform_hosts: Vec::new(),
        },
    );
    assert_eq!(patient.run_once().await.unwrap(), Default::default());

    let renewed = stack.manager.run_once().await.unwrap();
    assert_eq!(renewed.issued, [SHOP], "{renewed:?}");
    let new = stack
        .store
        .certificates()
        .get(&shop)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new.fingerprint, old.fingerprint);
    assert!(new.not_after >= old.not_after);
    assert_eq!(stack.sync.sync_once().await.unwrap().written, [SHOP]);
    let (presented, response) = https_get(stack.tls_addr(), SHOP, &[root], SHOP, "/")
        .await
        .unwrap();
    assert_eq!(
        kiln_acme::cert::der_info(&presented).unwrap().fingerprint,
        new.fingerprint
    );
    assert!(response.contains("origin page, proto=https"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_manager_certifies_a_domain_once_verified_and_withdraws_it_once_removed() {
    let mut stack = TestAcmeStack::start(None, 30 * DAY).await;
    stack.publish(SHOP, true).await;
    stack.publish(LATE, false).await;
    let (stop, running) = stack.spawn_manager().await;
    let late = Hostname::parse(LATE).unwrap();
    // The first pass certifies the verified domain only; the check interval is an hour, so only
    // the verification's announcement can bring the other's certificate.
    let shop = Hostname::parse(SHOP).unwrap();
    let started = Instant::now();
    while stack
        .store
        .certificates()
        .get(&shop)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            stack.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        stack
            .store
            .certificates()
            .get(&late)
            .await
            .unwrap()
            .is_none()
    );

    let verified_at = Instant::now();
    stack.publish(LATE, true).await;
    let record = loop {
        if let Some(record) = stack.store.certificates().get(&late).await.unwrap() {
            break record;
        }
        assert!(
            verified_at.elapsed() < Duration::from_secs(30),
            "no certificate 30 s after verification\n{}",
            stack.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "certificate stored {:?} after the domain was verified",
        verified_at.elapsed()
    );
    stack.sync.sync_once().await.unwrap();
    let root = stack.issuing_root().await;
    let (presented, _) = https_get(
        stack.tls_addr(),
        LATE,
        std::slice::from_ref(&root),
        LATE,
        "/",
    )
    .await
    .unwrap();
    assert_eq!(
        kiln_acme::cert::der_info(&presented).unwrap().fingerprint,
        record.fingerprint
    );

    // Removed: the certificate is withdrawn, the edge's copy deleted, HTTPS and the redirect end.
    stack.store.directory().remove(&late).await.unwrap();
    let removed_at = Instant::now();
    while stack
        .store
        .certificates()
        .get(&late)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            removed_at.elapsed() < Duration::from_secs(10),
            "not withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stack
            .store
            .certificates()
            .status(&late)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(stack.sync.sync_once().await.unwrap().removed, [LATE]);
    assert!(
        https_get(stack.tls_addr(), LATE, &[root], LATE, "/")
            .await
            .is_err()
    );
    let http = stack.http_get(LATE, "/").await;
    assert!(http.headers().get("location").is_none());

    // Redis losing every certificate (a restart without persistence) looks like this to the
    // edge: nothing is deleted, and what it has keeps being served.
    stack.store.certificates().remove(SHOP).await.unwrap();
    assert_eq!(stack.sync.sync_once().await.unwrap(), Default::default());
    assert!(stack.edge.cert_dir().join(format!("{SHOP}.pem")).exists());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the manager stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_redis_lost_withdraws_no_certificate_and_the_edge_keeps_its_copies() {
    let mut stack = TestAcmeStack::start(None, 30 * DAY).await;
    stack.publish(SHOP, true).await;
    let report = stack.manager.run_once().await.expect("a pass");
    assert_eq!(report.issued, [SHOP], "{report:?}\n{}", stack.pebble.log());
    assert_eq!(stack.sync.sync_once().await.unwrap().written, [SHOP]);
    let shop_file = stack.edge.cert_dir().join(format!("{SHOP}.pem"));

    // Redis loses the directory (evicted, say; the certificates stay), and one domain is published
    // before the dashboard publishes the whole directory again: a directory without SHOP, not
    // marked complete. SHOP keeps its certificate.
    stack
        .redis
        .cli(&["DEL", &format!("{}domains", stack.prefix)]);
    stack.publish(LATE, true).await;
    let report = stack.manager.run_once().await.expect("a pass");
    assert_eq!(report.issued, [LATE], "{report:?}");
    assert!(report.withdrawn.is_empty(), "{report:?}");
    let shop = Hostname::parse(SHOP).unwrap();
    assert!(
        stack
            .store
            .certificates()
            .get(&shop)
            .await
            .unwrap()
            .is_some()
    );

    // The certificates' index loses SHOP too (as a Redis that lost everything would, once LATE is
    // certified again): the edge keeps SHOP's file.
    stack.store.certificates().remove(SHOP).await.unwrap();
    let synced = stack.sync.sync_once().await.unwrap();
    assert_eq!(synced.written, [LATE]);
    assert!(synced.removed.is_empty(), "{synced:?}");
    assert!(shop_file.exists());

    // The whole directory published again: SHOP's file stays until its certificate is ordered
    // anew, which the next pass does.
    stack
        .store
        .directory()
        .publish(&[stack.config(SHOP, true), stack.config(LATE, true)])
        .await
        .unwrap();
    assert_eq!(stack.sync.sync_once().await.unwrap(), Default::default());
    assert!(shop_file.exists());
    let report = stack.manager.run_once().await.expect("a pass");
    assert_eq!(report.issued, [SHOP], "{report:?}");

    // From a complete directory a removal is a removal: certificate and file go.
    stack.store.directory().remove(&shop).await.unwrap();
    let report = stack.manager.run_once().await.expect("a pass");
    assert_eq!(report.withdrawn, [SHOP], "{report:?}");
    assert_eq!(stack.sync.sync_once().await.unwrap().removed, [SHOP]);
    assert!(!shop_file.exists());
}
