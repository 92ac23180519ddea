//! Which hostnames may be registered as a domain at all, whoever asks (a tenant through the API or
//! the web dashboard, or the operator on the command line): never the platform's own names, a
//! single label, or a public suffix.
//!
//! A domain's hostname decides where gateways send the people and bots who ask for it. A tenant
//! holding the CNAME target (which every customer's DNS points at the edge) or the dashboard's host
//! would be sent their visitors; a tenant holding `com` or `github.io` would claim a name nobody
//! owns. The Public Suffix List comes compiled in (the `psl` crate, republished as the list
//! changes), so the check does no IO; PSL's default rule makes every unlisted top-level label a
//! suffix too (`localhost`, `test`), so `demo.localhost` is a name and `localhost` is not.

use crate::Settings;
use kiln_core::Hostname;

/// Why a hostname may not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostnameRefused {
    #[error(
        "{host} is reserved: it is {platform}, this Kiln platform's {what}, or a name under it; \
         register your own domain's hostname"
    )]
    Reserved {
        host: Hostname,
        platform: Hostname,
        what: PlatformName,
    },
    #[error(
        "{0} is a single label; register a full hostname such as shop.example.com \
         (a label alone names no one's domain)"
    )]
    SingleLabel(Hostname),
    #[error(
        "{0} is a public suffix (on the Public Suffix List): names are registered under it, \
         it belongs to no one; register a hostname under it, such as shop.{0}"
    )]
    PublicSuffix(Hostname),
}

/// Which of the platform's names a reserved hostname is (or is under).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformName {
    /// `KILN_CNAME_TARGET`.
    CnameTarget,
    /// The host of `KILN_DASHBOARD_PUBLIC_URL`.
    Dashboard,
    /// `KILN_SERVICE_HOST`, where customers' servers reach the render service.
    ServiceHost,
}

impl std::fmt::Display for PlatformName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlatformName::CnameTarget => "CNAME target",
            PlatformName::Dashboard => "dashboard",
            PlatformName::ServiceHost => "render service host",
        })
    }
}

/// The rules a hostname must pass to become a domain: the platform's own names (each reserved with
/// every name under it) besides the Public Suffix List.
#[derive(Clone, Debug, Default)]
pub struct HostnamePolicy {
    reserved: Vec<(Hostname, PlatformName)>,
}

impl HostnamePolicy {
    /// The policy for the platform `settings` describe: its CNAME target, the dashboard's public
    /// host (when that is a hostname, not an IP address) and the render service's host are
    /// reserved.
    pub fn from_settings(settings: &Settings) -> Self {
        let dashboard = match settings.public_url.host() {
            Some(url::Host::Domain(host)) => Hostname::parse(host).ok(),
            _ => None,
        };
        let reserved = [
            settings
                .cname_target
                .clone()
                .map(|host| (host, PlatformName::CnameTarget)),
            dashboard.map(|host| (host, PlatformName::Dashboard)),
            settings
                .service_host
                .clone()
                .map(|host| (host, PlatformName::ServiceHost)),
        ];
        HostnamePolicy {
            reserved: reserved.into_iter().flatten().collect(),
        }
    }

    /// Whether `host` may be registered as a domain.
    pub fn check(&self, host: &Hostname) -> Result<(), HostnameRefused> {
        let name = host.as_str();
        for (platform, what) in &self.reserved {
            if is_at_or_under(name, platform.as_str()) {
                return Err(HostnameRefused::Reserved {
                    host: host.clone(),
                    platform: platform.clone(),
                    what: *what,
                });
            }
        }
        if !name.contains('.') {
            return Err(HostnameRefused::SingleLabel(host.clone()));
        }
        if psl::suffix_str(name) == Some(name) {
            return Err(HostnameRefused::PublicSuffix(host.clone()));
        }
        Ok(())
    }
}

/// Whether `name` is `parent` or a name under it (`a.b.parent`), label by label: `xparent` is not.
fn is_at_or_under(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HostnamePolicy {
        HostnamePolicy {
            reserved: vec![
                (
                    Hostname::parse("edge.kiln.example.com").unwrap(),
                    PlatformName::CnameTarget,
                ),
                (
                    Hostname::parse("dashboard.kiln.example.com").unwrap(),
                    PlatformName::Dashboard,
                ),
            ],
        }
    }

    /// What the policy says of `input`: `"ok"`, or the refusal's kind.
    fn check(input: &str, expected: &str) {
        let host = Hostname::parse(input).unwrap();
        let got = match policy().check(&host) {
            Ok(()) => "ok",
            Err(HostnameRefused::Reserved { .. }) => "reserved",
            Err(HostnameRefused::SingleLabel(_)) => "single label",
            Err(HostnameRefused::PublicSuffix(_)) => "public suffix",
        };
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn the_platforms_names_single_labels_and_public_suffixes_are_refused() {
        // The platform's own names and everything under them.
        check("edge.kiln.example.com", "reserved");
        check("EDGE.kiln.example.com.", "reserved");
        check("a.edge.kiln.example.com", "reserved");
        check("x.y.dashboard.kiln.example.com", "reserved");
        check("dashboard.kiln.example.com", "reserved");
        // Neighbours and parents are not the platform's names.
        check("xedge.kiln.example.com", "ok");
        check("edge-kiln.example.com", "ok");
        check("kiln.example.com", "ok");
        check("example.com", "ok");
        // Single labels, listed or not.
        check("localhost", "single label");
        check("com", "single label");
        check("intranet", "single label");
        // Public suffixes: ICANN's, private ones, wildcard rules and internationalised ones.
        check("co.uk", "public suffix");
        check("github.io", "public suffix");
        check("s3.amazonaws.com", "public suffix");
        check("anything.ck", "public suffix");
        check("xn--55qx5d.cn", "public suffix");
        check("公司.cn", "public suffix");
        // Registrable names, including under private suffixes and unlisted top-level labels.
        check("shop.example.com", "ok");
        check("example.co.uk", "ok");
        check("foo.github.io", "ok");
        check("www.ck", "ok");
        check("demo.localhost", "ok");
        check("shop.test", "ok");
        check("bücher.de", "ok");
    }

    #[test]
    fn the_settings_name_the_cname_target_and_the_dashboards_host() {
        let mut settings = Settings::from_lookup(|name| match name {
            "KILN_DATABASE_URL" => Some("postgres://db/kiln".into()),
            "KILN_CNAME_TARGET" => Some("Edge.Kiln.Example.com".into()),
            "KILN_DASHBOARD_PUBLIC_URL" => Some("https://Dash.Kiln.Example.com:8443/app".into()),
            _ => None,
        })
        .unwrap();
        let policy = HostnamePolicy::from_settings(&settings);
        let refused = |host: &str| policy.check(&Hostname::parse(host).unwrap()).unwrap_err();
        assert_eq!(
            refused("edge.kiln.example.com").to_string(),
            "edge.kiln.example.com is reserved: it is edge.kiln.example.com, this Kiln platform's \
             CNAME target, or a name under it; register your own domain's hostname"
        );
        assert!(matches!(
            refused("www.dash.kiln.example.com"),
            HostnameRefused::Reserved {
                what: PlatformName::Dashboard,
                ..
            }
        ));

        assert!(matches!(
            refused("render.localhost"),
            HostnameRefused::Reserved {
                what: PlatformName::ServiceHost,
                ..
            }
        ));

        // A dashboard reached by IP address reserves no hostname.
        settings.public_url = "http://127.0.0.1:3001".parse().unwrap();
        settings.cname_target = None;
        let policy = HostnamePolicy::from_settings(&settings);
        assert_eq!(
            policy.reserved,
            [(
                settings.service_host.clone().unwrap(),
                PlatformName::ServiceHost
            )]
        );
        assert_eq!(
            policy.check(&Hostname::parse("github.io").unwrap()),
            Err(HostnameRefused::PublicSuffix(
                Hostname::parse("github.io").unwrap()
            ))
        );
    }
}
