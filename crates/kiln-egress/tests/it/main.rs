//! The egress proxy against real TCP origins on loopback addresses: 127.0.0.1 is allowed (as an
//! operator's `KILN_ALLOWED_PRIVATE_NETS=127.0.0.1:1-65535@*` would), 127.0.0.2 and every other
//! non-public address is not, Kiln's own endpoints never are, and the refused origins count the connections that must never reach them.

mod helpers;

use bytes::Bytes;
use helpers::{
    ScriptedResolver, TestOrigin, TestProxy, TestTcpOrigin, chromium_dump_dom, dead_port, ip,
    settings, within,
};
use kiln_egress::{EGRESS_HEADER, EgressProxy, EgressSettings, EgressStats};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALLOWED: &str = "127.0.0.1:1-65535@*";

#[tokio::test]
async fn allowed_get_goes_out_in_origin_form_with_its_host_and_without_hop_by_hop_headers() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let response = t
        .client
        .get(origin.url("/echo?q=1&r=two"))
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-from-origin"], "yes");
    assert!(response.headers().get(EGRESS_HEADER).is_none());
    assert!(
        response.headers().get("keep-alive").is_none(),
        "the origin's hop-by-hop headers stay behind too"
    );

    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.uri.to_string(), "/echo?q=1&r=two");
    assert_eq!(seen.headers["host"], origin.addr.to_string());
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    for hop in [
        "x-private",
        "proxy-connection",
        "proxy-authorization",
        "keep-alive",
        "te",
    ] {
        assert!(seen.headers.get(hop).is_none(), "{hop} was forwarded");
    }
    assert_eq!(
        t.proxy.stats(),
        EgressStats {
            allowed: 1,
            refused: 0,
            failed: 0
        }
    );
}

#[tokio::test]
async fn request_and_response_bodies_pass_intact_for_any_method() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ] {
        let response = t
            .client
            .request(method.clone(), origin.url("/echo"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(response.bytes().await.unwrap(), big, "{method}");
    }
    let methods: Vec<_> = origin.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "PUT", "PATCH"]);
    assert!(origin.seen().iter().all(|s| s.body.len() == big.len()));
    assert_eq!(
        origin.connections(),
        1,
        "the upstream connection is kept alive and reused"
    );
}

#[tokio::test]
async fn responses_stream_without_waiting_for_the_whole_body() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let mut response = t.client.get(origin.url("/stream")).send().await.unwrap();
    // The origin sends `second` only once the test has received `first` through the proxy.
    let first = within("the first chunk", response.chunk()).await.unwrap();
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    origin.release.notify_one();
    let second = within("the second chunk", response.chunk()).await.unwrap();
    assert_eq!(second.as_deref(), Some(&b"second"[..]));
}

#[tokio::test]
async fn request_bodies_stream_without_waiting_for_the_whole_body() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let request = t
        .client
        .post(origin.url("/upload"))
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let response = tokio::spawn(request);
    tx.unbounded_send(Ok(Bytes::from_static(b"first"))).unwrap();
    // The second chunk is only written once the origin has received the first through the proxy.
    assert_eq!(origin.next_upload().await, "first");
    tx.unbounded_send(Ok(Bytes::from_static(b"second")))
        .unwrap();
    drop(tx);
    assert_eq!(origin.next_upload().await, "second");
    let response = within("the upload's response", response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "firstsecond");
}

#[tokio::test]
async fn redirects_are_handed_back_not_followed() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let target = TestOrigin::start(ip("127.0.0.2")).await;
    let t = TestProxy::start(ALLOWED).await;
    let response = t.client.get(origin.url("/redirect")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "http://127.0.0.2/elsewhere");
    assert_eq!(target.connections(), 0);
    assert_eq!(t.proxy.stats().refused, 0);
}

#[tokio::test]
async fn http_to_a_loopback_address_outside_the_allow_list_is_refused_with_403() {
    let forbidden = TestOrigin::start(ip("127.0.0.2")).await;
    let t = TestProxy::start(ALLOWED).await;
    let response = t
        .client
        .post(forbidden.url("/echo?token=secret"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[EGRESS_HEADER], "refused");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.text().await.unwrap();
    assert!(
        body.contains(&format!("refused {}", forbidden.addr))
            && body.contains("127.0.0.2 is a loopback address"),
        "{body}"
    );
    assert!(!body.contains("secret"), "the body never repeats the URL");
    assert_eq!(forbidden.connections(), 0);
    assert_eq!(
        t.proxy.stats(),
        EgressStats {
            allowed: 0,
            refused: 1,
            failed: 0
        }
    );
}

#[tokio::test]
async fn every_request_on_a_kept_alive_proxy_connection_is_vetted_on_its_own() {
    let allowed = TestOrigin::start(ip("127.0.0.1")).await;
    let forbidden = TestOrigin::start(ip("127.0.0.2")).await;
    let t = TestProxy::start(ALLOWED).await;
    let mut raw = t.raw().await;
    for (origin, expected) in [(&allowed, 200), (&forbidden, 403), (&allowed, 200)] {
        raw.send(&format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url("/echo"),
            origin.addr
        ))
        .await;
        let response = raw.response().await;
        assert_eq!(response.status, expected, "{}", origin.addr);
    }
    assert_eq!(allowed.seen().len(), 2);
    assert_eq!(forbidden.connections(), 0);
}

#[tokio::test]
async fn kiln_s_own_services_and_the_proxy_itself_are_refused_whatever_is_granted() {
    // Stand-ins for Redis and an admin port, on an address and port the grant opens.
    let redis = TestOrigin::start(ip("127.0.0.1")).await;
    let admin = TestTcpOrigin::start(ip("127.0.0.1")).await;
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let mut settings = settings(ALLOWED);
    settings.policy = settings.policy.with_platform([redis.addr, admin.addr]);
    let t = TestProxy::start_with(settings, None).await;

    let refused = t.client.get(redis.url("/")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.headers()[EGRESS_HEADER], "refused");
    let body = refused.text().await.unwrap();
    assert!(body.contains("one of this Kiln's own services"), "{body}");
    // By name, by mapped address and through a tunnel alike.
    let by_name = format!("http://localhost:{}/", redis.addr.port());
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/", redis.addr.port());
    for url in [by_name, mapped] {
        let response = t.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{url}");
    }
    let mut raw = t.raw().await;
    raw.send(&format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n",
        admin.addr
    ))
    .await;
    assert_eq!(raw.response().await.status, 403);
    // The proxy is one of them too: a page cannot loop requests through it.
    let own = format!("http://{}/", t.proxy.addr());
    assert_eq!(
        t.client.get(&own).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(redis.connections(), 0);
    assert_eq!(admin.connections(), 0);
    // What the grant opens beside them still works.
    let ok = t.client.get(origin.url("/echo")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn endpoints_refused_while_they_live_are_refused_only_then() {
    // Stands for a browser's DevTools port, which the worker adds while the browser lives.
    let devtools = TestOrigin::start(ip("127.0.0.1")).await;
    let refusals = kiln_egress::Refusals::default();
    let mut settings = settings(ALLOWED);
    settings.refusals = refusals.clone();
    let t = TestProxy::start_with(settings, None).await;
    let by_name = format!("http://localhost:{}/json/version", devtools.addr.port());
    let status = |url: String| {
        let client = t.client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    };
    // Refused from before the first request (as the worker does, before any page renders): a
    // kept-alive upstream connection would otherwise serve later requests without a new decision.
    refusals.insert(devtools.addr);
    for url in [devtools.url("/json/version"), by_name.clone()] {
        assert_eq!(status(url.clone()).await, StatusCode::FORBIDDEN, "{url}");
    }
    assert_eq!(devtools.connections(), 0);
    refusals.remove(devtools.addr);
    assert_eq!(status(by_name).await, StatusCode::OK);
    assert_eq!(devtools.seen().len(), 1);
}

#[tokio::test]
async fn connect_tunnels_bytes_both_ways() {
    let echo = TestTcpOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let mut raw = t.raw().await;
    raw.send(&format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n",
        echo.addr
    ))
    .await;
    let head = raw.head().await;
    assert_eq!(head.status, 200);
    // The origin speaks first, then echoes: bytes flow in both directions independently.
    assert_eq!(raw.exactly(6).await, "hello\n");
    raw.send("ping").await;
    assert_eq!(raw.exactly(4).await, "ping");
    let big = "x".repeat(300_000);
    raw.send(&big).await;
    assert_eq!(raw.exactly(big.len()).await, big);
    assert_eq!(echo.connections(), 1);
    assert_eq!(t.proxy.stats().allowed, 1);
}

#[tokio::test]
async fn connect_to_an_address_outside_the_allow_list_is_refused_and_opens_no_tunnel() {
    let forbidden = TestTcpOrigin::start(ip("127.0.0.2")).await;
    let t = TestProxy::start(ALLOWED).await;
    let mut raw = t.raw().await;
    raw.send(&format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n",
        forbidden.addr
    ))
    .await;
    let response = raw.response().await;
    assert_eq!(response.status, 403);
    assert_eq!(response.headers[EGRESS_HEADER], "refused");
    assert!(response.body.contains("127.0.0.2"), "{}", response.body);
    assert_eq!(forbidden.connections(), 0);
    assert_eq!(t.proxy.stats().refused, 1);
}

#[tokio::test]
async fn localhost_is_refused_unless_loopback_is_allowed() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let echo = TestTcpOrigin::start(ip("127.0.0.1")).await;
    let strict = TestProxy::start("").await;
    let url = format!("http://localhost:{}/echo", origin.addr.port());
    let response = strict.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[EGRESS_HEADER], "refused");
    let body = response.text().await.unwrap();
    assert!(
        body.contains("localhost resolves only to loopback addresses"),
        "{body}"
    );
    let mut raw = strict.raw().await;
    raw.send(&format!(
        "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\n\r\n",
        echo.addr.port()
    ))
    .await;
    assert_eq!(raw.response().await.status, 403);
    assert_eq!(origin.connections() + echo.connections(), 0);
    assert_eq!(strict.proxy.stats().refused, 2);

    // With 127.0.0.1/32 allowed, the same name reaches the origin through its allowed address.
    let relaxed = TestProxy::start(ALLOWED).await;
    let response = relaxed.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(origin.seen().len(), 1);
}

#[tokio::test]
async fn ipv6_disguises_of_loopback_are_refused() {
    let forbidden = TestOrigin::start(ip("127.0.0.2")).await;
    let allowed = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let port = forbidden.addr.port();
    for host in ["[::ffff:127.0.0.2]", "[::ffff:7f00:2]", "[::1]", "[::]"] {
        let mut raw = t.raw().await;
        raw.send(&format!(
            "GET http://{host}:{port}/echo HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
        ))
        .await;
        let response = raw.response().await;
        assert_eq!(response.status, 403, "{host}");
        assert_eq!(response.headers[EGRESS_HEADER], "refused", "{host}");

        let mut raw = t.raw().await;
        raw.send(&format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n"))
            .await;
        assert_eq!(raw.response().await.status, 403, "CONNECT {host}");
    }
    assert_eq!(forbidden.connections(), 0);
    assert_eq!(t.proxy.stats().refused, 8);

    // The mapped form of an allowed address is that address: it reaches the 127.0.0.1 origin.
    let mut raw = t.raw().await;
    let port = allowed.addr.port();
    raw.send(&format!(
        "GET http://[::ffff:127.0.0.1]:{port}/echo HTTP/1.1\r\nHost: [::ffff:127.0.0.1]:{port}\r\n\r\n"
    ))
    .await;
    let response = raw.response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-origin"], "127.0.0.1");
}

#[tokio::test]
async fn metadata_and_other_special_addresses_are_refused_without_a_connection_attempt() {
    let t = TestProxy::start(ALLOWED).await;
    let targets = [
        "169.254.169.254:80",
        "100.64.0.1:80",
        "10.0.0.1:80",
        "192.168.1.1:8080",
        "0.0.0.0:80",
        "[fe80::1]:80",
        "[fd00:ec2::254]:80",
    ];
    let started = Instant::now();
    for target in targets {
        let mut raw = t.raw().await;
        raw.send(&format!(
            "GET http://{target}/latest/meta-data/ HTTP/1.1\r\nHost: {target}\r\n\r\n"
        ))
        .await;
        let response = raw.response().await;
        assert_eq!(response.status, 403, "{target}");
        assert_eq!(response.headers[EGRESS_HEADER], "refused", "{target}");

        let mut raw = t.raw().await;
        raw.send(&format!("CONNECT {target} HTTP/1.1\r\n\r\n"))
            .await;
        assert_eq!(raw.response().await.status, 403, "CONNECT {target}");
    }
    let body = {
        let response = t
            .client
            .get("http://169.254.169.254/latest/meta-data/")
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    };
    assert!(body.contains("cloud metadata"), "{body}");
    // Refusals are decided before any connection: nothing failed or timed out, and it was quick.
    assert_eq!(
        t.proxy.stats(),
        EgressStats {
            allowed: 0,
            refused: 2 * targets.len() as u64 + 1,
            failed: 0
        }
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_name_is_resolved_once_and_the_vetted_address_is_the_one_connected() {
    // Both loopback addresses listen on the same port, so only the address decides who answers.
    let allowed = TestOrigin::start(ip("127.0.0.1")).await;
    let port = allowed.addr.port();
    let Ok(forbidden) = TestOrigin::start_at(SocketAddr::new(ip("127.0.0.2"), port)).await else {
        panic!("127.0.0.2:{port} is taken; rerun the test");
    };
    // A rebinding name: the first lookup says 127.0.0.1 (allowed), every later one 127.0.0.2.
    let resolver = Arc::new(
        ScriptedResolver::default().answer("rebind.test", &[&["127.0.0.1"], &["127.0.0.2"]]),
    );
    let t = TestProxy::start_with_resolver(ALLOWED, resolver.clone()).await;
    let url = format!("http://rebind.test:{port}/echo");
    let response = t.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-origin"], "127.0.0.1");
    assert_eq!(
        allowed.seen()[0].headers["host"],
        format!("rebind.test:{port}")
    );
    assert_eq!(
        resolver.lookups("rebind.test"),
        1,
        "no second lookup between check and connect"
    );
    assert_eq!(forbidden.connections(), 0);

    // The next fresh connection looks the name up again, gets 127.0.0.2, and is refused.
    let mut raw = t.raw().await;
    raw.send(&format!("CONNECT rebind.test:{port} HTTP/1.1\r\n\r\n"))
        .await;
    let response = raw.response().await;
    assert_eq!(response.status, 403);
    assert!(
        response.body.contains("rebind.test") && !response.body.contains("127.0.0.2"),
        "a refusal for a name does not reveal what it resolves to: {}",
        response.body
    );
    assert_eq!(resolver.lookups("rebind.test"), 2);
    assert_eq!(forbidden.connections(), 0);
}

#[tokio::test]
async fn only_the_allowed_addresses_of_a_mixed_answer_are_tried() {
    let allowed = TestOrigin::start(ip("127.0.0.1")).await;
    let port = allowed.addr.port();
    let Ok(forbidden) = TestOrigin::start_at(SocketAddr::new(ip("127.0.0.2"), port)).await else {
        panic!("127.0.0.2:{port} is taken; rerun the test");
    };
    let resolver = Arc::new(
        ScriptedResolver::default()
            .answer("mixed.test", &[&["127.0.0.2", "10.0.0.1", "127.0.0.1"]])
            .answer("private.test", &[&["10.0.0.1", "192.168.4.4"]]),
    );
    let t = TestProxy::start_with_resolver(ALLOWED, resolver).await;
    let response = t
        .client
        .get(format!("http://mixed.test:{port}/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-origin"], "127.0.0.1");
    assert_eq!(forbidden.connections(), 0);

    let response = t
        .client
        .get(format!("http://private.test:{port}/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("private.test resolves only to non-public addresses")
            && !body.contains("10.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn names_that_do_not_resolve_get_502() {
    let t = TestProxy::start_with_resolver(ALLOWED, Arc::new(ScriptedResolver::default())).await;
    let response = t.client.get("http://nowhere.test/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[EGRESS_HEADER], "unreachable");
    assert_eq!(
        t.proxy.stats(),
        EgressStats {
            allowed: 0,
            refused: 0,
            failed: 1
        }
    );
}

#[tokio::test]
async fn other_schemes_and_non_proxy_requests_get_400() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let requests = [
        format!(
            "GET ftp://{}/file HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.addr, origin.addr
        ),
        format!(
            "GET https://{}/ HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.addr, origin.addr
        ),
        "GET file://localhost/etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
        format!("GET /echo HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr),
        format!("CONNECT {} HTTP/1.1\r\n\r\n", origin.addr.ip()),
    ];
    for request in &requests {
        let mut raw = t.raw().await;
        raw.send(request).await;
        let response = raw.response().await;
        assert_eq!(response.status, 400, "{request}");
        assert_eq!(response.headers[EGRESS_HEADER], "invalid", "{request}");
    }
    // A target without a host does not even parse as HTTP: hyper answers 400 itself.
    let mut raw = t.raw().await;
    raw.send("GET file:///etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(raw.response().await.status, 400);
    assert_eq!(origin.connections(), 0);
    assert_eq!(t.proxy.stats(), EgressStats::default());
}

#[tokio::test]
async fn a_dead_allowed_port_gets_502_quickly() {
    let t = TestProxy::start(ALLOWED).await;
    let port = dead_port();
    let started = Instant::now();
    let response = t
        .client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[EGRESS_HEADER], "unreachable");
    let mut raw = t.raw().await;
    raw.send(&format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"))
        .await;
    assert_eq!(raw.response().await.status, 502);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        t.proxy.stats(),
        EgressStats {
            allowed: 2,
            refused: 0,
            failed: 2
        }
    );
}

#[tokio::test]
async fn resolution_counts_against_the_connect_timeout() {
    let settings = EgressSettings {
        connect_timeout: Duration::from_millis(300),
        ..settings(ALLOWED)
    };
    let resolver = Arc::new(ScriptedResolver::default().hang("slow.test"));
    let t = TestProxy::start_with(settings, Some(resolver)).await;
    let started = Instant::now();
    let response = t.client.get("http://slow.test/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()[EGRESS_HEADER], "timeout");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(t.proxy.stats().failed, 1);
}

#[tokio::test]
async fn upgrades_in_absolute_form_are_joined() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let mut raw = t.raw().await;
    raw.send(&format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: kiln-echo\r\n\r\n",
        origin.url("/upgrade"),
        origin.addr
    ))
    .await;
    let head = raw.head().await;
    assert_eq!(head.status, 101);
    assert_eq!(head.headers["upgrade"], "kiln-echo");
    raw.send("ping").await;
    assert_eq!(raw.exactly(4).await, "ping");
    raw.send("pong").await;
    assert_eq!(raw.exactly(4).await, "pong");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_open_tunnels() {
    let echo = TestTcpOrigin::start(ip("127.0.0.1")).await;
    let t = TestProxy::start(ALLOWED).await;
    let addr = t.proxy.addr();
    let mut raw = t.raw().await;
    raw.send(&format!("CONNECT {} HTTP/1.1\r\n\r\n", echo.addr))
        .await;
    assert_eq!(raw.head().await.status, 200);
    assert_eq!(raw.exactly(6).await, "hello\n");

    t.proxy.shutdown().await;
    assert!(raw.closes().await, "the open tunnel is closed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let proxy = EgressProxy::start(settings(ALLOWED)).await.unwrap();
    let addr = proxy.addr();
    drop(proxy);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn chromium_is_pointed_at_the_proxy_for_everything_including_loopback() {
    let proxy = EgressProxy::start(EgressSettings::default()).await.unwrap();
    let port = proxy.addr().port();
    assert_ne!(port, 0);
    assert_eq!(proxy.proxy_url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(
        proxy.chromium_args(),
        [
            format!("--proxy-server=http://127.0.0.1:{port}"),
            "--proxy-bypass-list=<-loopback>".to_owned(),
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned(),
        ]
    );

    let public = EgressSettings {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..EgressSettings::default()
    };
    let error = EgressProxy::start(public).await.err().unwrap();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn chromium_sends_every_request_through_the_proxy_and_private_ones_are_refused() {
    let origin = TestOrigin::start(ip("127.0.0.1")).await;
    let forbidden = TestOrigin::start(ip("127.0.0.2")).await;
    let f = forbidden.addr;
    // Every way a page reaches out: a subresource, a frame, fetch, XHR, a redirect hop into the
    // forbidden address, and the cloud metadata service.
    *origin.page.lock().unwrap() = format!(
        r#"<!doctype html><html><body>
<img src="http://{f}/img.png">
<iframe src="http://{f}/frame"></iframe>
<img src="/redirect">
<div id=out>waiting</div>
<script>
  const x = new XMLHttpRequest(); x.open("GET", "http://{f}/xhr"); x.send();
  Promise.allSettled([
    fetch("http://{f}/fetch", {{mode: "no-cors"}}),
    fetch("http://169.254.169.254/latest/meta-data/", {{mode: "no-cors"}}),
  ]).then(() => fetch("/echo?from=script", {{method: "POST", body: "script ran"}}))
    .then(r => r.text())
    .then(text => {{ document.getElementById("out").textContent = text; }});
</script>
</body></html>"#
    );
    let t = TestProxy::start(ALLOWED).await;
    let dom = chromium_dump_dom(&t.proxy.chromium_args(), &origin.url("/page")).await;

    assert!(
        dom.contains("<div id=\"out\">script ran</div>"),
        "the page's script ran to the end and its own fetch went through: {dom}"
    );
    let paths: Vec<String> = origin.seen().iter().map(|s| s.uri.to_string()).collect();
    assert!(paths.contains(&"/page".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/echo?from=script".to_owned()), "{paths:?}");
    assert_eq!(forbidden.connections(), 0, "nothing reached 127.0.0.2");
    let stats = t.proxy.stats();
    assert!(stats.allowed >= 1, "{stats:?}");
    // At least one refusal each for the image, frame, XHR, fetch and redirect hop to 127.0.0.2 and the
    // metadata fetch (Chromium may retry some).
    assert!(stats.refused >= 6, "{stats:?}");
}
