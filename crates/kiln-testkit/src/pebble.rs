//! Pebble, Let's Encrypt's ACME test server (Debian's `pebble`), for tests of certificate issuance.
//!
//! How the harness runs it, and why:
//! - Its ACME API and management interface listen on free loopback ports over HTTPS, with a
//!   certificate for `127.0.0.1` and `localhost` issued by a CA made here
//!   ([`TestPebble::ca_pem_path`]), which the ACME client under test is told to trust. (Debian
//!   ships no test certificate.)
//! - It validates HTTP-01 challenges on `http_port` of whatever address the name resolves to through
//!   `dns` (a [`crate::dns::TestDns`] resolving the test's domains to 127.0.0.1), so `http_port` is
//!   the edge's HTTP port.
//! - `PEBBLE_VA_NOSLEEP=1`: no random pause before validating; `PEBBLE_WFE_NONCEREJECT=0`: no nonce
//!   rejected at random; `PEBBLE_AUTHZREUSE=0`: every order is validated again, renewals included.
//! - The certificates it issues chain to a root it makes at start, fetched from the management
//!   interface (`/roots/0`); their lifetime is `validity` (Pebble's default is five years).

use crate::{free_port, program, wait_for_port};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestPebble {
    child: Child,
    dir: PathBuf,
    port: u16,
    management_port: u16,
}

impl TestPebble {
    /// Starts Pebble validating HTTP-01 on port `http_port`, resolving names through `dns`, issuing
    /// certificates valid for `validity` (Pebble's default when `None`).
    pub fn start(http_port: u16, dns: SocketAddr, validity: Option<Duration>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kiln-pebble-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("failed to create Pebble's directory");
        let (ca_pem, cert_pem, key_pem) = listener_certificate();
        std::fs::write(dir.join("ca.pem"), ca_pem).expect("write ca.pem");
        std::fs::write(dir.join("cert.pem"), cert_pem).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), key_pem).expect("write key.pem");
        let port = free_port();
        let management_port = free_port();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            // TLS-ALPN-01 is not used; a free port keeps it from colliding with anything.
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(validity) = validity {
            pebble["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config = dir.join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string())
            .expect("write pebble.json");
        let log = std::fs::File::create(dir.join("pebble.log")).expect("create pebble.log");
        let child = Command::new(program("pebble"))
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log's handle"))
            .stderr(log)
            .spawn()
            .expect("failed to start pebble");
        let pebble = TestPebble {
            child,
            dir,
            port,
            management_port,
        };
        wait_for_port(port, Duration::from_secs(15));
        wait_for_port(management_port, Duration::from_secs(15));
        pebble
    }

    /// The ACME directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The management interface's address (HTTPS, same certificate): `/roots/0` is the root the
    /// issued certificates chain to.
    pub fn management_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.management_port))
    }

    /// The PEM file of the CA that issued the API's own HTTPS certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// What Pebble logged so far, for failing tests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for TestPebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, and a certificate it issued for `127.0.0.1` and `localhost` with its key, all PEM.
fn listener_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kiln-testkit pebble CA");
    let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate params");
    let cert = params.signed_by(&key, &issuer).expect("the certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
