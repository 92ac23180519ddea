//! Hostnames as Kiln stores and compares them: lowercase ASCII (IDN converted to punycode), no port,
//! no trailing dot.

use serde::{Deserialize, Serialize};

/// A validated DNS hostname in its canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostnameError {
    #[error("the hostname is empty")]
    Empty,
    #[error("`{0}` is not a valid hostname")]
    Invalid(String),
    #[error("`{0}` is an IP address; a domain needs a hostname")]
    IpAddress(String),
    #[error("`{0}` has a port, path or wildcard; give the bare hostname")]
    NotBare(String),
}

impl Hostname {
    /// Parses a hostname as an operator or customer types it: no port, path or wildcard allowed.
    pub fn parse(input: &str) -> Result<Self, HostnameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(HostnameError::Empty);
        }
        if trimmed.contains([':', '/', '*', '@', '?', '#']) {
            return Err(HostnameError::NotBare(trimmed.to_owned()));
        }
        Self::canonical(trimmed)
    }

    /// Parses the value of an HTTP `Host` header: the port, if any, is ignored.
    pub fn from_host_header(value: &str) -> Result<Self, HostnameError> {
        let value = value.trim();
        if value.starts_with('[') {
            return Err(HostnameError::IpAddress(value.to_owned()));
        }
        let host = match value.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => value,
        };
        if host.is_empty() {
            return Err(HostnameError::Empty);
        }
        if host.contains([':', '/', '*', '@', '?', '#']) {
            return Err(HostnameError::Invalid(value.to_owned()));
        }
        Self::canonical(host)
    }

    fn canonical(host: &str) -> Result<Self, HostnameError> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if is_canonical_name(host) {
            // What the parser would give back unchanged: every request's Host header is one.
            return Ok(Hostname(host.to_owned()));
        }
        Self::parsed(host)
    }

    /// The canonical form of `host` (without a trailing dot), by way of the URL parser.
    fn parsed(host: &str) -> Result<Self, HostnameError> {
        match ::url::Host::parse(host) {
            Ok(::url::Host::Domain(domain)) => {
                let valid = !domain.is_empty() && is_valid_name(&domain);
                if valid {
                    Ok(Hostname(domain.to_ascii_lowercase()))
                } else {
                    Err(HostnameError::Invalid(host.to_owned()))
                }
            }
            Ok(_) => Err(HostnameError::IpAddress(host.to_owned())),
            Err(_) => Err(HostnameError::Invalid(host.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `host` is a valid name already in its canonical form, so that the URL parser (IDNA
/// mapping, IPv4 detection) would return it as it is: lowercase ASCII labels of letters, digits,
/// `-` and `_`, none an IDNA label (`xn--`), and a last label starting with a letter (so never an
/// address such as `10.0.0.1` or `0x7f.1`). The unit tests check it against the parser.
fn is_canonical_name(host: &str) -> bool {
    is_valid_name(host)
        && host.split('.').all(|label| {
            !label.starts_with("xn--") && !label.bytes().any(|b| b.is_ascii_uppercase())
        })
        && host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_lowercase()))
}

/// Whether a name (as the parser gives it, or as the fast path takes it) has the shape of a DNS
/// name: at most 253 bytes, labels of 1–63 letters, digits, `-` and `_`, none starting or ending
/// with `-`.
fn is_valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl TryFrom<String> for Hostname {
    type Error = HostnameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Hostname::parse(&value)
    }
}

impl From<Hostname> for String {
    fn from(value: Hostname) -> Self {
        value.0
    }
}

impl std::fmt::Display for Hostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// A name taken as it is must be what the parser would have made of it.
        #[test]
        fn canonical_names_are_what_the_parser_gives(
            host in proptest::prop_oneof![
                "[a-z0-9_-]{1,6}(\\.[a-z0-9x_-]{1,6}){0,3}",
                "(xn--[a-z0-9]{1,6}\\.)?[a-zA-Z0-9._-]{1,12}",
                "[0-9]{1,3}(\\.[0-9x]{1,3}){0,3}",
            ],
        ) {
            if is_canonical_name(&host) {
                proptest::prop_assert_eq!(Ok(Hostname(host.clone())), Hostname::parsed(&host));
            }
        }
    }

    #[test]
    fn plain_names_are_canonical_and_others_are_not() {
        for host in ["shop.example.com", "a", "a_b.c-d.io", "x1.y2.z"] {
            assert!(is_canonical_name(host), "{host}");
        }
        for host in [
            "Shop.example.com",
            "10.0.0.1",
            "1.0x7f",
            "xn--caf-dma.fr",
            "a..b",
            "-a.b",
            "a.b-",
            "a.1",
            "caf\u{e9}.fr",
            "",
        ] {
            assert!(!is_canonical_name(host), "{host}");
        }
    }

    use super::{Hostname, HostnameError, is_canonical_name};

    #[test]
    fn parses_host_headers() {
        let cases: &[(&str, Option<&str>)] = &[
            ("demo.localhost", Some("demo.localhost")),
            ("Demo.LocalHost:8080", Some("demo.localhost")),
            ("example.com.", Some("example.com")),
            ("EXAMPLE.com.:443", Some("example.com")),
            ("bücher.de", Some("xn--bcher-kva.de")),
            ("127.0.0.1:8080", None),
            ("[::1]:8080", None),
            ("", None),
            (":8080", None),
            ("a b.com", None),
            ("evil.com/path", None),
            ("-bad.com", None),
            ("user@host.com", None),
        ];
        for (input, expected) in cases {
            let got = Hostname::from_host_header(input).ok();
            assert_eq!(got.as_ref().map(Hostname::as_str), *expected, "{input:?}");
        }
    }

    #[test]
    fn operator_input_must_be_bare() {
        assert_eq!(
            Hostname::parse("shop.example.com").unwrap().as_str(),
            "shop.example.com"
        );
        assert!(matches!(
            Hostname::parse("shop.example.com:80"),
            Err(HostnameError::NotBare(_))
        ));
        assert!(matches!(
            Hostname::parse("*.example.com"),
            Err(HostnameError::NotBare(_))
        ));
        assert!(matches!(
            Hostname::parse("10.0.0.1"),
            Err(HostnameError::IpAddress(_))
        ));
        assert!(matches!(Hostname::parse("  "), Err(HostnameError::Empty)));
    }
}
