//! `kiln-acme`'s configuration, read once from `KILN_*` environment variables.

use kiln_core::Hostname;
use kiln_runtime::LogFormat;
use kiln_runtime::env::{ExposeSecret, SecretString, Vars};
use std::path::PathBuf;
use std::time::Duration;

/// The secret that seals private keys in Redis; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// `KILN_REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `KILN_REDIS_PREFIX` (default `kiln:`).
    pub redis_prefix: String,
    /// `KILN_ACME_SECRET`: seals (encrypts and authenticates) every private key Kiln keeps in Redis:
    /// the certificates' and the ACME account's. At least 32 characters; the manager and every edge's
    /// sync need the same one. Required.
    pub secret: Secret,
    /// `KILN_ACME_DIRECTORY_URL`: the ACME server's directory (default Let's Encrypt's production
    /// directory, `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory_url: String,
    /// `KILN_ACME_CONTACT_EMAIL`: the account's contact address (default none).
    pub contact_email: Option<String>,
    /// `KILN_ACME_CA_ROOT`: a PEM file holding the only root trusted for the ACME server's own HTTPS
    /// (a private or test CA such as Pebble's); default: the system's roots.
    pub ca_root: Option<PathBuf>,
    /// `KILN_ACME_RENEW_BEFORE_DAYS`: renew a certificate once it has fewer days left (default 30).
    pub renew_before: Duration,
    /// `KILN_ACME_CHECK_INTERVAL_SECS`: how often the manager looks for certificates to order or
    /// renew, besides every domain change (default 300).
    pub check_interval: Duration,
    /// `KILN_ACME_CERT_DIR`: where `kiln-acme sync` writes the certificates for the edge's nginx
    /// (default `/var/lib/kiln/certs`).
    pub cert_dir: PathBuf,
    /// `KILN_ACME_SYNC_INTERVAL_SECS`: how often `kiln-acme sync` looks for new certificates
    /// (default 10).
    pub sync_interval: Duration,
    /// `KILN_ACME_ADMIN_LISTEN`: where `kiln-acme run` answers `/metrics`, `/healthz` and
    /// `/readyz` (default `127.0.0.1:9103`; `off`: nowhere). `sync` has no admin port.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// `KILN_LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// The platform's own names that need a certificate as customers' domains do: the render
    /// service's host (`KILN_SERVICE_HOST`, as the gateways have it; default `render.localhost`),
    /// unless it is `off` or a `localhost` name, which no public certificate authority signs.
    pub platform_hosts: Vec<Hostname>,
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    /// Builds settings from any variable source; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Self::from_vars(&Vars::new(get))
    }

    fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let secret = vars.required_secret(
            "KILN_ACME_SECRET",
            32,
            "it seals the private keys kept in Redis: at least 32 characters, e.g. the output of \
             `openssl rand -base64 48`",
        )?;
        Ok(Settings {
            redis_url: vars.or("KILN_REDIS_URL", "redis://127.0.0.1:6379")?,
            redis_prefix: vars.or("KILN_REDIS_PREFIX", "kiln:")?,
            secret: Secret(secret),
            directory_url: vars.or("KILN_ACME_DIRECTORY_URL", LETS_ENCRYPT)?,
            contact_email: vars.get("KILN_ACME_CONTACT_EMAIL")?,
            ca_root: vars.get("KILN_ACME_CA_ROOT")?.map(PathBuf::from),
            renew_before: Duration::from_secs(
                vars.number("KILN_ACME_RENEW_BEFORE_DAYS", 30u64, .., "days")?
                    .saturating_mul(24 * 3600),
            ),
            check_interval: Duration::from_secs(
                vars.number("KILN_ACME_CHECK_INTERVAL_SECS", 300u64, .., "seconds")?
                    .max(1),
            ),
            cert_dir: PathBuf::from(vars.or("KILN_ACME_CERT_DIR", "/var/lib/kiln/certs")?),
            sync_interval: Duration::from_secs(
                vars.number("KILN_ACME_SYNC_INTERVAL_SECS", 10u64, .., "seconds")?
                    .max(1),
            ),
            admin_listen: vars.addr_or_off("KILN_ACME_ADMIN_LISTEN", "127.0.0.1:9103")?,
            log_format: vars.log_format()?,
            platform_hosts: vars
                .service_host()?
                .filter(|host| kiln_core::net::localhost_addresses(host.as_str()).is_none())
                .into_iter()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;
    use std::collections::HashMap;
    use std::time::Duration;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn reads_defaults_and_overrides() {
        let secret = ("KILN_ACME_SECRET", "0123456789abcdef0123456789abcdef");
        let defaults = settings(&[secret]).unwrap();
        assert_eq!(defaults.directory_url, super::LETS_ENCRYPT);
        assert_eq!(defaults.renew_before, Duration::from_secs(30 * 86400));
        assert_eq!(defaults.cert_dir.to_str(), Some("/var/lib/kiln/certs"));
        // The default service host is this machine's: no CA would sign it.
        assert!(defaults.platform_hosts.is_empty());
        for (value, expected) in [
            ("render.example.com", vec!["render.example.com"]),
            ("off", vec![]),
            ("render.localhost", vec![]),
        ] {
            let hosts = settings(&[secret, ("KILN_SERVICE_HOST", value)])
                .unwrap()
                .platform_hosts;
            assert_eq!(
                hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
                expected,
                "{value}"
            );
        }
        assert!(settings(&[secret, ("KILN_SERVICE_HOST", "http://x/")]).is_err());
        assert_eq!(
            defaults.admin_listen,
            Some("127.0.0.1:9103".parse().unwrap())
        );
        let off = settings(&[secret, ("KILN_ACME_ADMIN_LISTEN", "off")]).unwrap();
        assert_eq!(off.admin_listen, None);
        assert!(settings(&[secret, ("KILN_ACME_ADMIN_LISTEN", "9103")]).is_err());
        assert!(!format!("{defaults:?}").contains("0123456789abcdef"));

        let set = settings(&[
            secret,
            ("KILN_ACME_RENEW_BEFORE_DAYS", "45"),
            ("KILN_ACME_CONTACT_EMAIL", "ops@example.com"),
            ("KILN_ACME_CHECK_INTERVAL_SECS", "0"),
        ])
        .unwrap();
        assert_eq!(set.renew_before, Duration::from_secs(45 * 86400));
        assert_eq!(set.contact_email.as_deref(), Some("ops@example.com"));
        assert_eq!(set.check_interval, Duration::from_secs(1));

        assert!(settings(&[]).is_err(), "the secret is required");
        assert!(settings(&[("KILN_ACME_SECRET", "short")]).is_err());
        assert!(settings(&[secret, ("KILN_ACME_RENEW_BEFORE_DAYS", "soon")]).is_err());
    }
}
