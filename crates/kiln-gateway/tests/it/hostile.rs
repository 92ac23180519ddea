//! Hostile input, sent as raw bytes over TCP both through the nginx edge (the production path) and
//! straight to the gateway (as if it were exposed): request smuggling, oversized heads and bodies,
//! slow clients, broken targets, odd `Host` spellings, absolute-form targets naming another host and
//! forged forwarding headers. Each case states what it must get on each path; every case also
//! checks that no other tenant's origin saw anything and that nothing reached Redis (no page, lock,
//! queued job or failure marker: any new key fails the case).
//!
//! `cargo nextest run -p kiln-gateway -E 'test(hostile::)' --no-capture` prints the table of cases
//! and what each got (set `KILN_HOSTILE_REPORT=<file>` to also write it there as markdown).

use crate::helpers::{GOOGLEBOT, TestApp, TestOrigin, domain, spawn_app_with};
use kiln_core::DomainSettings;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36";

/// Direct clients come from here: an address that is not one of the gateway's trusted proxies
/// (the edge is 127.0.0.1), as any client of an exposed gateway would be.
const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The gateway's body limit in these tests (the default is 100 MB, as at the edge).
const MAX_BODY_MB: usize = 1;

/// How the gateway is set up for these tests: crawler checks off (no DNS here), a short header
/// timeout, a 1 MB body limit, and only the edge trusted.
fn gateway_vars() -> Vec<(&'static str, String)> {
    vec![
        ("KILN_GATEWAY_VERIFY_CRAWLERS", "false".into()),
        ("KILN_GATEWAY_HEADER_TIMEOUT_MS", "2000".into()),
        ("KILN_GATEWAY_MAX_BODY_MB", MAX_BODY_MB.to_string()),
        ("KILN_TRUSTED_PROXIES", "127.0.0.1/32".into()),
    ]
}

/// What came back on one connection.
struct Exchange {
    /// The status of every response read, in order (a smuggled request would add one).
    statuses: Vec<u16>,
    /// The gateway's `X-Kiln-Error` in the first response, if any.
    kiln_error: Option<String>,
}

/// `bytes` with every `from` replaced by `to`.
fn substitute(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Writes `request` on a fresh connection to `to` (from `from`, if given) and reads until the
/// server closes the connection, or nothing has arrived for a second after a response began, or
/// ten seconds have passed. The request is written from its own task, so a server that answers
/// and closes before the whole body is sent is read all the same.
async fn exchange(to: SocketAddr, from: Option<IpAddr>, request: Vec<u8>) -> Exchange {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(from) = from {
        socket.bind(SocketAddr::new(from, 0)).unwrap();
    }
    let stream = socket.connect(to).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        for chunk in request.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Kept open (not shut down): a server must not need the client's FIN to answer.
        tokio::time::sleep(Duration::from_secs(12)).await;
        drop(writer);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = if received.is_empty() {
            deadline - now
        } else {
            Duration::from_secs(1).min(deadline - now)
        };
        match tokio::time::timeout(wait, reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    writing.abort();
    let text = String::from_utf8_lossy(&received);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let kiln_error = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-kiln-error")
            .then(|| value.trim().to_owned())
    });
    Exchange {
        statuses: statuses(&received),
        kiln_error,
    }
}

/// The status codes of the responses in `bytes`: every line that starts like a status line.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n")
        .filter_map(|line| {
            let rest = line
                .strip_prefix("HTTP/1.1 ")
                .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
            rest.get(..3)?.parse().ok()
        })
        .collect()
}

/// A request: `line`, then `headers` one per line, then `body`.
fn raw(line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    raw_bytes(line.as_bytes(), headers, body)
}

fn raw_bytes(line: &[u8], headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut request = line.to_vec();
    request.extend_from_slice(b"\r\n");
    for header in headers {
        request.extend_from_slice(header.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// A person's GET for `target` on `host`, closing the connection after the answer.
fn person_get(target: &str, host: &str) -> Vec<u8> {
    raw(
        &format!("GET {target} HTTP/1.1"),
        &[
            &format!("Host: {host}"),
            &format!("User-Agent: {BROWSER}"),
            "Connection: close",
        ],
        b"",
    )
}

/// A bot's GET for `target` on `shop.test` (no X-Is-Bot: the edge, or the gateway, classifies it).
fn bot_get(target: &str) -> Vec<u8> {
    raw(
        &format!("GET {target} HTTP/1.1"),
        &[
            "Host: shop.test",
            &format!("User-Agent: {GOOGLEBOT}"),
            "Connection: close",
        ],
        b"",
    )
}

/// What one path (edge or gateway) must answer, and how many requests shop.test's origin must
/// receive whole (status 0: the connection is closed without an answer).
#[derive(Clone, Copy)]
struct Expect {
    status: u16,
    origin: usize,
}

const fn expect(status: u16, origin: usize) -> Expect {
    Expect { status, origin }
}

/// A look at the last request the origin got: why it is wrong, if it is.
type Check = fn(&crate::helpers::Seen) -> Result<(), String>;

struct Case {
    name: &'static str,
    request: Vec<u8>,
    edge: Expect,
    gateway: Expect,
    /// What the origin must (not) have seen of the last request it got, when it got one.
    check: Option<Check>,
}

fn case(name: &'static str, request: Vec<u8>, edge: Expect, gateway: Expect) -> Case {
    Case {
        name,
        request,
        edge,
        gateway,
        check: None,
    }
}

fn cases() -> Vec<Case> {
    let big = "a".repeat(64 * 1024);
    let many: Vec<String> = (0..200).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let mut many_headers: Vec<&str> = vec!["Host: shop.test", "Connection: close"];
    many_headers.extend(many.iter().map(String::as_str));
    let over_limit = vec![b'x'; 2 * MAX_BODY_MB * 1024 * 1024];
    let mut chunked_over_limit = Vec::new();
    for chunk in over_limit.chunks(16 * 1024) {
        chunked_over_limit.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked_over_limit.extend_from_slice(chunk);
        chunked_over_limit.extend_from_slice(b"\r\n");
    }
    chunked_over_limit.extend_from_slice(b"0\r\n\r\n");
    let huge = "Content-Length: 209715200"; // 200 MB declared, a few bytes sent
    let upload = |headers: &[&str], body: &[u8]| {
        let mut all = vec!["Host: shop.test", "Connection: close"];
        all.extend_from_slice(headers);
        raw("POST /upload HTTP/1.1", &all, body)
    };
    // Smuggling: a second request hidden in the first one's body, on a connection kept open. It
    // must never be answered nor reach the origin (`/smuggled` is checked after every case).
    let smuggle = |headers: &[&str], body: &str| {
        let mut all = vec!["Host: shop.test"];
        all.extend_from_slice(headers);
        raw("POST /upload HTTP/1.1", &all, body.as_bytes())
    };
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n";

    vec![
        // --- Request smuggling and framing ---
        case(
            "CL.TE: Content-Length and Transfer-Encoding: chunked",
            smuggle(
                &["Content-Length: 48", "Transfer-Encoding: chunked"],
                &format!("0\r\n\r\n{hidden}"),
            ),
            // nginx refuses the pair. hyper reads the body as chunked (the chunked framing wins,
            // RFC 9112 §6.3) and closes the connection after answering: the hidden request is
            // never read as one.
            expect(400, 0),
            expect(200, 1),
        ),
        case(
            "TE.CL: Transfer-Encoding: chunked then Content-Length",
            smuggle(
                &["Transfer-Encoding: chunked", "Content-Length: 3"],
                &format!("0\r\n\r\n{hidden}"),
            ),
            expect(400, 0),
            expect(200, 1),
        ),
        case(
            "two different Content-Length headers",
            smuggle(&["Content-Length: 5", "Content-Length: 6"], "hello!"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Content-Length list `5, 6`",
            smuggle(&["Content-Length: 5, 6"], "hello!"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Content-Length `+5`",
            upload(&["Content-Length: +5"], b"hello"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Transfer-Encoding: xchunked",
            smuggle(
                &["Transfer-Encoding: xchunked"],
                &format!("0\r\n\r\n{hidden}"),
            ),
            // nginx's answer to a coding it does not know is 501, as RFC 9112 §6.1 says.
            expect(501, 0),
            expect(400, 0),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            smuggle(
                &["Transfer-Encoding: chunked, identity"],
                &format!("0\r\n\r\n{hidden}"),
            ),
            expect(501, 0),
            expect(400, 0),
        ),
        case(
            "`Transfer-Encoding : chunked` (space before the colon)",
            smuggle(
                &["Transfer-Encoding : chunked", "Content-Length: 5"],
                "hello",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Transfer-Encoding in an HTTP/1.0 request",
            raw(
                "POST /upload HTTP/1.0",
                &["Host: shop.test", "Transfer-Encoding: chunked"],
                b"0\r\n\r\n",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Transfer-Encoding `  chunked` (leading spaces: a legal spelling)",
            upload(
                &["Transfer-Encoding:   chunked"],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "Transfer-Encoding `<tab>chunked` (legal, but nginx refuses it)",
            upload(&["Transfer-Encoding:\tchunked"], b"5\r\nhello\r\n0\r\n\r\n"),
            expect(501, 0),
            expect(200, 1),
        ),
        case(
            "chunk size `zz`",
            upload(&["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "chunk size overflowing 64 bits",
            upload(
                &["Transfer-Encoding: chunked"],
                b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "chunk longer than its size",
            upload(&["Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n"),
            expect(400, 0),
            expect(400, 0),
        ),
        // --- Sizes ---
        case(
            "one 64 KB header",
            raw(
                "GET / HTTP/1.1",
                &[
                    "Host: shop.test",
                    "Connection: close",
                    &format!("X-Big: {big}"),
                ],
                b"",
            ),
            expect(400, 0),
            expect(431, 0),
        ),
        case(
            "200 headers",
            raw("GET / HTTP/1.1", &many_headers, b""),
            expect(431, 0),
            expect(431, 0),
        ),
        case(
            "70 KB request target",
            person_get(&format!("/{}", "a".repeat(70 * 1024)), "shop.test"),
            expect(414, 0),
            expect(431, 0),
        ),
        case(
            "POST declaring 200 MB (people path)",
            upload(&[huge], b"hello"),
            expect(413, 0),
            expect(413, 0),
        ),
        case(
            "GET declaring a 200 MB body (bot path)",
            raw(
                "GET /products/huge-@VIA@ HTTP/1.1",
                &[
                    "Host: shop.test",
                    &format!("User-Agent: {GOOGLEBOT}"),
                    "Connection: close",
                    huge,
                ],
                b"hello",
            ),
            expect(413, 0),
            expect(413, 0),
        ),
        case(
            "chunked POST of 2 MB over the gateway's 1 MB limit",
            upload(&["Transfer-Encoding: chunked"], &chunked_over_limit),
            expect(413, 0),
            expect(413, 0),
        ),
        // --- Targets: bytes and escapes ---
        case(
            "raw 0xFF byte in the path",
            raw_bytes(
                b"GET /caf\xff HTTP/1.1",
                &["Host: shop.test", "Connection: close"],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "control byte in the path",
            raw_bytes(
                b"GET /a\x01b HTTP/1.1",
                &["Host: shop.test", "Connection: close"],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "`%zz` in the path (bot)",
            bot_get("/products/%zz-@VIA@"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "`%zz` in the path (person)",
            person_get("/products/%zz", "shop.test"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "lone `%` at the end of the path",
            bot_get("/products/@VIA@%"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "overlong UTF-8 `%c0%af` in the path",
            bot_get("/products/@VIA@%c0%af..%c0%afetc"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "NUL `%00` in the path",
            bot_get("/products/@VIA@%00.html"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "`%zz` in the query (bot)",
            bot_get("/products/@VIA@?q=%zz"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "NUL `%00` in the query (bot)",
            bot_get("/products/@VIA@?q=a%00b"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "`%zz` in the query (person: the origin's to judge)",
            person_get("/search?q=100%zz", "shop.test"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "`//other.test/` path (stays on the tenant's origin)",
            person_get("//other.test/x", "shop.test"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "`OPTIONS *`",
            raw(
                "OPTIONS * HTTP/1.1",
                &["Host: shop.test", "Connection: close"],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "CONNECT other.test:443",
            raw(
                "CONNECT other.test:443 HTTP/1.1",
                &["Host: shop.test", "Connection: close"],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        // --- Host ---
        case(
            "Host with a port",
            person_get("/", "shop.test:8080"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "Host with a trailing dot",
            person_get("/", "shop.test."),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "Host in upper case",
            person_get("/", "SHOP.TEST"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "IDN Host in punycode (xn--bcher-kva.test)",
            person_get("/", "xn--bcher-kva.test"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "IDN Host in Unicode (bücher.test, UTF-8: Host is ASCII)",
            person_get("/", "bücher.test"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "IDN Host in punycode, upper case (XN--BCHER-KVA.TEST)",
            person_get("/", "XN--BCHER-KVA.TEST"),
            expect(200, 1),
            expect(200, 1),
        ),
        case(
            "unknown Host",
            person_get("/", "unknown.example"),
            expect(421, 0),
            expect(421, 0),
        ),
        case(
            "empty Host",
            person_get("/", ""),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "no Host (HTTP/1.1)",
            raw("GET / HTTP/1.1", &["Connection: close"], b""),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "two Host headers",
            raw(
                "GET / HTTP/1.1",
                &["Host: shop.test", "Host: other.test", "Connection: close"],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Host with userinfo (a@shop.test)",
            person_get("/", "a@shop.test"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Host with a path (shop.test/x)",
            person_get("/", "shop.test/x"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "Host an IP address",
            person_get("/", "127.0.0.1"),
            expect(400, 0),
            expect(400, 0),
        ),
        // --- Absolute-form targets ---
        case(
            "absolute-form naming another tenant (GET http://other.test/, Host: shop.test)",
            person_get("http://other.test/", "shop.test"),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "absolute-form naming an outside host (bot)",
            raw(
                "GET http://unknown.example/products/absolute-@VIA@ HTTP/1.1",
                &[
                    "Host: shop.test",
                    &format!("User-Agent: {GOOGLEBOT}"),
                    "Connection: close",
                ],
                b"",
            ),
            expect(400, 0),
            expect(400, 0),
        ),
        case(
            "absolute-form naming the same host",
            person_get("http://SHOP.test:80/", "shop.test"),
            expect(200, 1),
            expect(200, 1),
        ),
        // --- Forged forwarding headers ---
        Case {
            check: Some(|seen| {
                (seen.headers.get("x-forwarded-host").map(|v| v.as_bytes())
                    == Some(b"shop.test".as_slice()))
                .then_some(())
                .ok_or_else(|| format!("X-Forwarded-Host at the origin: {:?}", seen.headers))
            }),
            ..case(
                "X-Forwarded-Host: other.test (ignored)",
                raw(
                    "GET / HTTP/1.1",
                    &[
                        "Host: shop.test",
                        "X-Forwarded-Host: other.test",
                        "Forwarded: host=other.test",
                        "Connection: close",
                    ],
                    b"",
                ),
                expect(200, 1),
                expect(200, 1),
            )
        },
        case(
            "X-Forwarded-Host: shop.test on an unknown Host",
            raw(
                "GET / HTTP/1.1",
                &[
                    "Host: unknown.example",
                    "X-Forwarded-Host: shop.test",
                    "Connection: close",
                ],
                b"",
            ),
            expect(421, 0),
            expect(421, 0),
        ),
        Case {
            check: Some(|seen| {
                seen.headers
                    .get("x-is-bot")
                    .is_none()
                    .then_some(())
                    .ok_or_else(|| "X-Is-Bot reached the origin".to_owned())
            }),
            ..case(
                "a browser forging X-Is-Bot: 1 (served as a person)",
                raw(
                    "GET /products/forged-@VIA@ HTTP/1.1",
                    &[
                        "Host: shop.test",
                        &format!("User-Agent: {BROWSER}"),
                        "X-Is-Bot: 1",
                        "X-Kiln-Bot-Family: search",
                        "Connection: close",
                    ],
                    b"",
                ),
                expect(200, 1),
                expect(200, 1),
            )
        },
    ]
}

/// A gateway with shop.test, the IDN domain bücher.test on the same origin, and the tenant
/// other.test on an origin of its own, plus an edge in front.
struct TestRig {
    gw: TestApp,
    other: TestOrigin,
    edge: kiln_testkit::TestEdge,
}

impl TestRig {
    async fn start() -> TestRig {
        let settings = DomainSettings {
            bot_rate_per_second: 0,
            bot_wait_ms: 500,
            ..DomainSettings::default()
        };
        let gw = spawn_app_with(settings.clone(), &gateway_vars()).await;
        let other = TestOrigin::start().await;
        gw.store
            .directory()
            .put(&domain("other.test", other.port, settings.clone()))
            .await
            .unwrap();
        gw.store
            .directory()
            .put(&domain("bücher.test", gw.origin.port, settings))
            .await
            .unwrap();
        let edge = kiln_testkit::TestEdge::start(SocketAddr::from(([127, 0, 0, 1], gw.port)));
        let rig = TestRig { gw, other, edge };
        // The new domains arrive by event: wait until the gateway routes both.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let other = exchange(rig.gateway(), None, person_get("/", "other.test")).await;
            let idn = exchange(rig.gateway(), None, person_get("/", "xn--bcher-kva.test")).await;
            if other.statuses == [200] && idn.statuses == [200] {
                break;
            }
            assert!(Instant::now() < deadline, "the domains were not published");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rig
    }

    fn gateway(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.gw.port))
    }

    fn edge(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.edge.port()))
    }

    /// Every key in the gateway's Redis.
    fn redis_keys(&self) -> BTreeSet<String> {
        self.gw
            .redis
            .cli(&["--scan"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `request` on one path and says what it got, or why it is wrong.
async fn run(
    rig: &TestRig,
    to: SocketAddr,
    from: Option<IpAddr>,
    case: &Case,
    expected: Expect,
) -> (String, Option<String>) {
    let keys_before = rig.redis_keys();
    let origin_before = rig.gw.origin.log.count();
    let other_before = rig.other.log.count();
    let via = if from.is_some() { "gw" } else { "edge" };
    let exchange = exchange(
        to,
        from,
        substitute(&case.request, b"@VIA@", via.as_bytes()),
    )
    .await;
    // The origin records a request once its body is read; give a request in flight a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let origin = rig.gw.origin.log.count() - origin_before;
    let other = rig.other.log.count() - other_before;
    let new_keys: Vec<_> = rig.redis_keys().difference(&keys_before).cloned().collect();
    let status = exchange.statuses.first().copied().unwrap_or(0);
    let got = match exchange.statuses.as_slice() {
        [] => "closed, no answer".to_owned(),
        [status] => match &exchange.kiln_error {
            Some(code) => format!("{status} `{code}` (origin {origin})"),
            None => format!("{status} (origin {origin})"),
        },
        several => format!("{several:?} (origin {origin})"),
    };
    let mut wrong = Vec::new();
    if exchange.statuses.len() > 1 {
        wrong.push(format!(
            "{} responses on one connection",
            exchange.statuses.len()
        ));
    }
    if status != expected.status {
        wrong.push(format!("status {status}, expected {}", expected.status));
    }
    if origin != expected.origin {
        wrong.push(format!("origin saw {origin}, expected {}", expected.origin));
    }
    if other != 0 {
        wrong.push(format!("other.test's origin saw {other}"));
    }
    if !new_keys.is_empty() {
        wrong.push(format!("new Redis keys {new_keys:?}"));
    }
    if let Some(check) = case.check
        && origin > 0
        && let Err(why) = check(&rig.gw.origin.log.requests().pop().unwrap())
    {
        wrong.push(why);
    }
    let smuggled = rig
        .gw
        .origin
        .log
        .requests()
        .iter()
        .any(|seen| seen.uri.path() == "/smuggled");
    if smuggled {
        wrong.push("the smuggled request reached the origin".to_owned());
    }
    let wrong = (!wrong.is_empty()).then(|| wrong.join("; "));
    (got, wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_clear_answer_and_nothing_is_fetched_or_cached() {
    let rig = TestRig::start().await;
    let mut table = String::from("| case | via edge | direct to gateway |\n| --- | --- | --- |\n");
    let mut failures = Vec::new();
    for case in cases() {
        let (edge, edge_wrong) = run(&rig, rig.edge(), None, &case, case.edge).await;
        let (gateway, gateway_wrong) =
            run(&rig, rig.gateway(), Some(OUTSIDER), &case, case.gateway).await;
        let mark = |got: &str, wrong: &Option<String>| match wrong {
            Some(why) => format!("**{got} — WRONG: {why}**"),
            None => got.to_owned(),
        };
        table.push_str(&format!(
            "| {} | {} | {} |\n",
            case.name.replace('|', "\\|"),
            mark(&edge, &edge_wrong),
            mark(&gateway, &gateway_wrong)
        ));
        if edge_wrong.is_some() || gateway_wrong.is_some() {
            failures.push(case.name);
        }
    }

    // Both still serve, and the checks above can see a render being queued: a real bot's miss
    // leaves keys behind.
    let keys_before = rig.redis_keys();
    for to in [rig.edge(), rig.gateway()] {
        let person = exchange(to, None, person_get("/after", "shop.test")).await;
        assert_eq!(person.statuses, [200], "still serving people");
    }
    let bot = exchange(rig.edge(), None, bot_get("/products/after")).await;
    assert_eq!(bot.statuses, [200], "still serving bots");
    assert!(
        rig.redis_keys().len() > keys_before.len(),
        "a bot's miss must leave keys (lock, queued job), or the key check above proves nothing"
    );
    let ready = rig
        .gw
        .client
        .get(format!("http://127.0.0.1:{}/readyz", rig.gw.admin_port))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    println!("{table}");
    if let Ok(path) = std::env::var("KILN_HOSTILE_REPORT") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(failures.is_empty(), "wrong answers: {failures:#?}\n{table}");
}

/// Sends a request head one byte a second and says how long the server kept the connection.
async fn slowloris(to: SocketAddr, from: Option<IpAddr>) -> Duration {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(from) = from {
        socket.bind(SocketAddr::new(from, 0)).unwrap();
    }
    let mut stream = socket.connect(to).await.unwrap();
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: slow\r\nX-Padding: ";
    let mut bytes = head.iter().chain(std::iter::repeat(&b'a'));
    let mut buffer = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(40) {
        let byte = *bytes.next().unwrap();
        if stream.write_all(&[byte]).await.is_err() {
            return started.elapsed();
        }
        // A closed connection shows as a read of 0 (or an error) within the second.
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_header_timeouts() {
    let rig = TestRig::start().await;
    let origin_before = rig.gw.origin.log.count();
    let (edge, gateway) = tokio::join!(
        slowloris(rig.edge(), None),
        slowloris(rig.gateway(), Some(OUTSIDER))
    );
    println!(
        "slowloris: the edge closed after {:.1} s, the gateway after {:.1} s",
        edge.as_secs_f64(),
        gateway.as_secs_f64()
    );
    // The edge's client_header_timeout is 10 s; the gateway's is 2 s in this test.
    assert!(
        edge < Duration::from_secs(13),
        "the edge kept a slow client {edge:?}"
    );
    assert!(
        gateway < Duration::from_secs(5),
        "the gateway kept a slow client {gateway:?}"
    );
    assert_eq!(
        rig.gw.origin.log.count(),
        origin_before,
        "nothing reached the origin"
    );
}
