//! Redis losing the domain directory with the control plane running: two gateway processes and the
//! dashboard share one Redis, which restarts empty (no persistence), and the first change after
//! it is a single domain added through the API. The gateways must keep serving every domain they
//! knew, and the dashboard, whose Postgres holds the truth, must publish the whole directory
//! again by itself.

use crate::helpers::*;
use kiln_store::PublishedDirectory;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The domains registered before Redis restarts.
const KNOWN: &[&str] = &["one.pottery.test", "two.pottery.test", "three.pottery.test"];
/// The domain added right after.
const ADDED: &str = "four.pottery.test";
/// How often these gateways re-read the whole directory (30 s by default): often, so that the
/// re-reads that once replaced the directory with the one added domain happen many times here.
const RESYNC: Duration = Duration::from_millis(500);

/// People asking each gateway for each of `hosts` in turn, until stopped: every answer that is
/// not a 200, with when it came (after `since`).
struct People {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
}

impl People {
    fn start(client: &reqwest::Client, gateways: &[u16], hosts: &[&str], since: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for &port in gateways {
            for &host in hosts {
                let (client, stop, host) = (client.clone(), Arc::clone(&stop), host.to_owned());
                tasks.push(tokio::spawn(async move {
                    let (mut answered, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let response = client
                            .get(format!("http://127.0.0.1:{port}/"))
                            .header("host", &host)
                            .header("user-agent", CHROME)
                            .header("x-is-bot", "0")
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match response {
                            Ok(response) if response.status() == StatusCode::OK => answered += 1,
                            Ok(response) => failed.push(format!(
                                "{host} on gateway :{port} at {} ms: {}",
                                since.elapsed().as_millis(),
                                response.status()
                            )),
                            Err(error) => failed.push(format!(
                                "{host} on gateway :{port} at {} ms: {error}",
                                since.elapsed().as_millis()
                            )),
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    (answered, failed)
                }));
            }
        }
        People { stop, tasks }
    }

    /// How many answers came whole, and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut answered, mut failed) = (0, Vec::new());
        for task in self.tasks {
            let (a, f) = task.await.expect("a person's task panicked");
            answered += a;
            failed.extend(f);
        }
        (answered, failed)
    }
}

/// Waits until a person gets a 200 for `host` from the gateway on `port`.
async fn until_served(client: &reqwest::Client, port: u16, host: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .header("user-agent", CHROME)
            .send()
            .await;
        if response.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{host} not served by the gateway on :{port} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_then_one_domain_added_keeps_every_other_domain_served_and_the_directory_comes_back()
 {
    let mut platform = TestPlatform::start().await;
    let tenant = platform.api.tenant("potter@pottery.test").await;
    for host in KNOWN {
        let (status, body) = tenant
            .add_domain(&json!({ "hostname": host, "origin": platform.site.base() }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Two gateway processes, as deployed.
    let client = platform.stack.client.clone();
    let mut gateways = Vec::new();
    let mut ports = Vec::new();
    for i in 0..2 {
        let (port, admin) = (kiln_testkit::free_port(), kiln_testkit::free_port());
        let mut vars = platform.stack.vars.clone();
        vars.insert("KILN_GATEWAY_ADMIN_LISTEN", format!("127.0.0.1:{admin}"));
        vars.insert(
            "KILN_GATEWAY_DIRECTORY_RESYNC_MS",
            RESYNC.as_millis().to_string(),
        );
        gateways.push(TestService::start_gateway(
            &format!("gateway {i}"),
            &vars,
            port,
        ));
        wait_until_ready(&client, admin).await;
        ports.push(port);
    }
    for &port in &ports {
        for host in KNOWN {
            until_served(&client, port, host, Duration::from_secs(10)).await;
        }
    }

    let started = Instant::now();
    let people = People::start(&client, &ports, KNOWN, started);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Back, but empty: no directory in Redis.
    platform.stack.redis.restart();
    let back = started.elapsed();
    // The first change after it: one domain added (it is saved in Postgres even if the dashboard's
    // Redis connection is not back yet, and then published with the rest).
    let (status, body) = tenant
        .add_domain(&json!({ "hostname": ADDED, "origin": platform.site.base() }))
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} {body}"
    );
    let added = started.elapsed();
    for &port in &ports {
        until_served(&client, port, ADDED, Duration::from_secs(15)).await;
    }

    // The directory is whole in Redis again, by itself.
    let every: BTreeSet<String> = KNOWN
        .iter()
        .chain([&ADDED])
        .map(|host| host.to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let restored = loop {
        let directory = platform.store.directory().read().await.unwrap_or_default();
        let hosts: BTreeSet<String> = directory.domains.keys().map(|h| h.to_string()).collect();
        if directory.complete && hosts == every {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // People keep being served across many more full re-reads of the restored directory.
    tokio::time::sleep(RESYNC * 8).await;
    let (answered, failed) = people.finish().await;

    eprintln!(
        "FIGURES redis restarted empty at {} ms, {ADDED} added at {} ms, directory whole again at {:?} ms; people: {answered} answered, {} failed",
        back.as_millis(),
        added.as_millis(),
        restored.map(|at| at.as_millis()),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "people got failures on domains the gateways knew: {failed:#?}"
    );
    assert!(answered > 100, "{answered} answers only");
    let directory: PublishedDirectory = platform.store.directory().read().await.unwrap();
    assert!(
        restored.is_some(),
        "the directory was not whole again in Redis within 15 s: complete {}, hosts {:?}",
        directory.complete,
        directory.domains.keys().collect::<Vec<_>>()
    );
    drop(gateways);
}
