//! DNS servers for tests of code that asks DNS questions (domain verification): a real `dnsmasq`
//! serving the records a test gives it, and a broken server that answers everything with SERVFAIL.
//!
//! How the harness drives dnsmasq (2.90, Debian's `dnsmasq-base`), and why:
//! - It runs in the foreground (`--keep-in-foreground`) on 127.0.0.1 and a port free for both UDP
//!   and TCP, reads only its own config file (`--conf-file`, so `/etc/dnsmasq.conf` is never read),
//!   and neither `/etc/resolv.conf` nor `/etc/hosts`. `--pid-file=` writes no pid file, so nothing
//!   outside the harness's temporary directory is touched. Started as root, dnsmasq reads its config
//!   and binds, then drops to `nobody` by itself.
//! - `--local=/#/` makes every name local: a name the test did not define gets NXDOMAIN, and a
//!   defined name asked for another type gets an empty NOERROR answer, as from a real authoritative
//!   server. Without it dnsmasq, having no upstream, answers REFUSED, which looks like a failure.
//! - `--local-ttl=300` gives every answer a five-minute TTL (dnsmasq's default is 0), so a client
//!   that caches would keep stale answers across [`TestDns::set_records`] and a test can see it.
//! - Records: [`DnsRecord::A`] is a `host-record` (A or AAAA, several per name add up),
//!   [`DnsRecord::Cname`] a `cname`, the TXT kinds a `txt-record`. dnsmasq answers a CNAME whether
//!   or not it knows the target: a CNAME question gets the CNAME, an address question gets the
//!   CNAME followed by the target's addresses if it has any, and the CNAME alone (NOERROR) if not.
//!   Chains of CNAMEs are followed in address answers. dnsmasq refuses to start on a CNAME loop.
//! - Names are answered lowercase whatever case the test wrote them in, and a trailing dot is
//!   accepted, so the harness passes names through as given.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{free_port, program};

/// One record for [`TestDns`] to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsRecord {
    /// An A record, or an AAAA record when `ip` is IPv6.
    A { name: String, ip: IpAddr },
    /// `name` is an alias of `target`; `target` need not have records of its own.
    Cname { name: String, target: String },
    /// A TXT record of one character-string.
    Txt { name: String, value: String },
    /// A TXT record of several character-strings, as DNS providers store values longer than 255
    /// bytes (and some store shorter ones too); readers are meant to join them.
    SplitTxt { name: String, strings: Vec<String> },
    /// A PTR record: the reverse DNS name of `ip`. (An [`DnsRecord::A`] record makes one too, for
    /// its address: dnsmasq's `host-record` serves both directions.)
    Ptr { ip: IpAddr, name: String },
}

impl DnsRecord {
    /// An A or AAAA record; panics if `ip` is not an IP address.
    pub fn a(name: &str, ip: &str) -> Self {
        DnsRecord::A {
            name: name.to_owned(),
            ip: ip
                .parse()
                .unwrap_or_else(|_| panic!("`{ip}` is not an IP address")),
        }
    }

    /// A PTR record naming `ip` `name`; panics if `ip` is not an IP address.
    pub fn ptr(ip: &str, name: &str) -> Self {
        DnsRecord::Ptr {
            ip: ip
                .parse()
                .unwrap_or_else(|_| panic!("`{ip}` is not an IP address")),
            name: name.to_owned(),
        }
    }

    pub fn cname(name: &str, target: &str) -> Self {
        DnsRecord::Cname {
            name: name.to_owned(),
            target: target.to_owned(),
        }
    }

    pub fn txt(name: &str, value: &str) -> Self {
        DnsRecord::Txt {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    pub fn split_txt(name: &str, strings: &[&str]) -> Self {
        DnsRecord::SplitTxt {
            name: name.to_owned(),
            strings: strings.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The record as one line of a dnsmasq config file.
    fn config_line(&self) -> String {
        match self {
            DnsRecord::A { name, ip } => format!("host-record={},{ip}", config_name(name)),
            DnsRecord::Cname { name, target } => {
                format!("cname={},{}", config_name(name), config_name(target))
            }
            DnsRecord::Txt { name, value } => {
                format!("txt-record={},{}", config_name(name), quoted(value))
            }
            DnsRecord::Ptr { ip, name } => {
                format!("ptr-record={},{}", reverse_name(*ip), config_name(name))
            }
            DnsRecord::SplitTxt { name, strings } => {
                assert!(
                    !strings.is_empty(),
                    "a TXT record needs at least one string"
                );
                let strings: Vec<String> = strings.iter().map(|s| quoted(s)).collect();
                format!("txt-record={},{}", config_name(name), strings.join(","))
            }
        }
    }
}

/// The name an address's PTR record has: `4.3.2.1.in-addr.arpa` for 1.2.3.4, nibbles under
/// `ip6.arpa` for IPv6.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            name + "ip6.arpa"
        }
    }
}

/// A name as dnsmasq's config syntax takes it: commas separate fields and there is no escaping
/// outside quotes, so a name that needs either is a mistake in the test.
fn config_name(name: &str) -> &str {
    assert!(
        !name.is_empty() && !name.contains([',', '"', '#', ' ', '\t', '\n', '\r']),
        "`{name}` cannot be written in a dnsmasq config file"
    );
    name
}

/// A TXT character-string in dnsmasq's config syntax: quoted, so that commas and `#` are part of the
/// value, with backslash escapes for quotes and backslashes (dnsmasq's config reader undoes them).
fn quoted(value: &str) -> String {
    assert!(
        value.len() <= 255 && !value.contains(['\n', '\r']),
        "a TXT character-string holds at most 255 bytes and no line breaks"
    );
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A private dnsmasq answering only for the records it was given. Stopped when dropped.
pub struct TestDns {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TestDns {
    /// Starts dnsmasq on a free port serving `records`; returns once it answers queries.
    pub fn start(records: &[DnsRecord]) -> Self {
        let dir = std::env::temp_dir().join(format!("kiln-dns-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("failed to create dnsmasq's directory");
        let mut server = TestDns {
            port: 0,
            dir,
            child: None,
        };
        server.write_config(records);
        // A port is only free when asked: if another process takes it first, try another.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_udp_and_tcp_port();
            match server.spawn() {
                Ok(child) => {
                    server.child = Some(child);
                    return server;
                }
                Err(error) => last_error = error,
            }
        }
        panic!("dnsmasq did not start on any of five free ports: {last_error}");
    }

    /// Where the server listens, for UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Replaces every record: restarts dnsmasq on the same port with `records` and returns once the
    /// new process answers. (dnsmasq re-reads only hosts files on SIGHUP, not its CNAME and TXT
    /// options, so a restart is the way to change them.)
    pub fn set_records(&mut self, records: &[DnsRecord]) {
        self.stop();
        self.write_config(records);
        // The port was free a moment ago, but another test may grab it as an ephemeral port in
        // between; such a socket is usually short-lived, so keep trying for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(error) if Instant::now() >= deadline => {
                    panic!("dnsmasq did not restart on port {}: {error}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Kills the server, as an outage would: queries to [`TestDns::addr`] go unanswered until
    /// [`TestDns::set_records`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("records.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    fn write_config(&self, records: &[DnsRecord]) {
        let mut config = String::new();
        for record in records {
            writeln!(config, "{}", record.config_line()).expect("writing to a String");
        }
        std::fs::write(self.config_path(), config).expect("failed to write dnsmasq's config");
    }

    /// Starts dnsmasq on `self.port` and waits until it answers a query. On failure (the port was
    /// taken, a bad record) returns what dnsmasq said.
    fn spawn(&self) -> Result<Child, String> {
        let log = std::fs::File::create(self.log_path()).expect("failed to create dnsmasq's log");
        let mut child = Command::new(program("dnsmasq"))
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", self.config_path().display()))
            .args([
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--log-facility=-",
                "--local=/#/",
                "--local-ttl=300",
            ])
            .arg(format!("--port={}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("failed to start dnsmasq");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if answers_queries(self.addr()) {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("dnsmasq exited ({status}): {}", log.trim()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "dnsmasq did not answer on {} within 10 s",
            self.addr()
        ))
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free on 127.0.0.1 for TCP and for UDP (the two are separate namespaces, and DNS needs both).
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..20 {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("found no port on 127.0.0.1 free for both TCP and UDP")
}

/// Whether a DNS server at `addr` answers a UDP query (with anything, NXDOMAIN included).
fn answers_queries(addr: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let id = u16::from_be_bytes(
        uuid::Uuid::new_v4().as_bytes()[..2]
            .try_into()
            .expect("two bytes"),
    );
    let query = query_packet(id, "ready.kiln-testkit.invalid");
    if socket.connect(addr).is_err()
        || socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_err()
        || socket.send(&query).is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    // Over a connected socket, "nobody listens" comes back at once as ConnectionRefused.
    match socket.recv(&mut buf) {
        Ok(len) => len >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0,
        Err(_) => false,
    }
}

/// A standard recursive query for the A record of `name`.
fn query_packet(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + name.len() + 6);
    packet.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query with recursion desired; one question, no other records.
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(u8::try_from(label.len()).expect("a DNS label is at most 63 bytes"));
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    // QTYPE A, QCLASS IN.
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet
}

/// A DNS server, over UDP, that answers every question with SERVFAIL, as a resolver does when the
/// domain's own servers are broken. dnsmasq cannot be made to answer SERVFAIL (with an unreachable
/// upstream it stays silent), hence this small hand-written one. Stopped when dropped.
pub struct TestServfailDns {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServfailDns {
    pub fn start() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("no free UDP port");
        let addr = socket.local_addr().expect("the socket's address");
        // The read timeout is how often the thread notices it should stop.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("failed to set a read timeout");
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stopping = stopping.clone();
            move || serve_servfail(&socket, &stopping)
        });
        TestServfailDns {
            addr,
            stopping,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TestServfailDns {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_servfail(socket: &UdpSocket, stopping: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stopping.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                if let Some(reply) = servfail_reply(&buf[..len]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// The SERVFAIL answer to `query`: its header and question, with the response bit and code set and
/// no records. None if `query` is not a DNS query with one question.
fn servfail_reply(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // The question is the name's labels up to the root label, then type and class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
    }
    end += 4;
    let mut reply = query.get(..end)?.to_vec();
    // QR set, opcode and RD kept; RA set, RCODE 2 (SERVFAIL); no answer, authority or additional.
    reply[2] = 0x80 | (query[2] & 0x79);
    reply[3] = 0x80 | 2;
    reply[6..12].fill(0);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::{DnsRecord, quoted, servfail_reply};

    #[test]
    fn writes_records_as_dnsmasq_config() {
        let cases = [
            (
                DnsRecord::a("edge.kiln.example", "10.0.0.1"),
                "host-record=edge.kiln.example,10.0.0.1",
            ),
            (
                DnsRecord::a("edge.kiln.example", "fd00::1"),
                "host-record=edge.kiln.example,fd00::1",
            ),
            (
                DnsRecord::cname("Shop.example.com.", "edge.kiln.example"),
                "cname=Shop.example.com.,edge.kiln.example",
            ),
            (
                DnsRecord::txt("_c.example", "a, b # c"),
                r#"txt-record=_c.example,"a, b # c""#,
            ),
            (
                DnsRecord::txt("_c.example", r#"say "hi" \o/"#),
                r#"txt-record=_c.example,"say \"hi\" \\o/""#,
            ),
            (
                DnsRecord::split_txt("_c.example", &["kiln-", "verify"]),
                r#"txt-record=_c.example,"kiln-","verify""#,
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(record.config_line(), expected, "{record:?}");
        }
    }

    #[test]
    #[should_panic(expected = "at most 255 bytes")]
    fn refuses_overlong_character_strings() {
        quoted(&"x".repeat(256));
    }

    #[test]
    fn answers_servfail_with_the_question() {
        // id 0xabcd, RD, one question for "a.b" A IN, plus one additional byte run (EDNS).
        let query = [
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 1, b'b', 0, 0, 1, 0, 1, 0, 0,
            41,
        ];
        let reply = servfail_reply(&query).expect("a reply");
        assert_eq!(
            reply,
            [
                0xab, 0xcd, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 1, b'b', 0, 0, 1, 0, 1
            ]
        );
        assert_eq!(servfail_reply(&query[..10]), None, "too short");
        assert_eq!(servfail_reply(&reply), None, "a response, not a query");
    }
}
