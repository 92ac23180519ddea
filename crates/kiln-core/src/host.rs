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
        match ::url::Host::parse(host) {
            Ok(::url::Host::Domain(domain)) => {
                let valid = !domain.is_empty()
                    && domain.len() <= 253
                    && domain.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
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
    use super::{Hostname, HostnameError};

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
