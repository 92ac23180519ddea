//! The DNS side of a check: the questions asked, made afresh on every call through hickory.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{TokioResolver, system_conf};
use kiln_core::Hostname;

use crate::error::VerifyError;
use crate::verification::{
    Answer, Findings, LookupFailure, Verification, canonical_name, challenge_name,
};

/// How far a CNAME chain is followed. Real setups use one or two hops (a CDN's own name, then
/// Kiln's); more is a misconfiguration, and the bound keeps a check's time bounded.
const MAX_CNAME_HOPS: usize = 8;

/// Which DNS server to ask, and how long to wait for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierSettings {
    /// The DNS server (UDP, with TCP for truncated answers); None asks the servers in
    /// `/etc/resolv.conf`.
    pub nameserver: Option<SocketAddr>,
    /// How long one DNS question waits for an answer. An unanswered question is asked once more,
    /// so a check against a dead server takes about twice this.
    pub timeout: Duration,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        VerifierSettings {
            nameserver: None,
            timeout: Duration::from_secs(3),
        }
    }
}

/// Checks domains' DNS. Cheap to clone: clones share the configuration.
#[derive(Clone, Debug)]
pub struct Verifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ResolverConfig,
    options: ResolverOpts,
}

impl Verifier {
    pub fn new(settings: &VerifierSettings) -> Result<Self, VerifyError> {
        let (config, mut options) = resolver_setup(settings)?;
        // A customer who has just added the record must see it verified at once, whatever TTL an
        // earlier answer carried. Each check also builds its own resolver (see `resolver`), so
        // nothing outlives a check even if hickory kept something despite this.
        options.cache_size = 0;
        let verifier = Verifier {
            inner: Arc::new(Inner { config, options }),
        };
        // Build one resolver now so that a configuration hickory rejects fails at start-up, not on
        // every check.
        verifier.resolver().map_err(VerifyError::Resolver)?;
        Ok(verifier)
    }

    /// Checks whether DNS shows that the owner of `host` points it at Kiln (`cname_target`) or
    /// published `token`. Asks the DNS server afresh on every call; never fails, never panics: DNS
    /// trouble is reported in the returned [`Verification`].
    pub async fn check(
        &self,
        host: &Hostname,
        cname_target: &Hostname,
        token: &str,
    ) -> Verification {
        let started = Instant::now();
        let findings = match self.resolver() {
            Ok(resolver) => find(&resolver, host, cname_target).await,
            Err(error) => Findings::all_failed(failure(&error)),
        };
        let verification = Verification::from_findings(
            host.clone(),
            cname_target.clone(),
            token.to_owned(),
            findings,
        );
        tracing::info!(
            verify.host = %host,
            verify.verified_by = ?verification.verified_by,
            verify.duration_ms = started.elapsed().as_millis() as u64,
            "checked domain ownership"
        );
        verification
    }

    /// A resolver with an empty cache: built per check, it cannot serve one check's answers to the
    /// next. Building one allocates but does no IO.
    fn resolver(&self) -> Result<TokioResolver, NetError> {
        TokioResolver::builder_with_config(
            self.inner.config.clone(),
            TokioRuntimeProvider::default(),
        )
        .with_options(self.inner.options.clone())
        .build()
    }
}

/// The servers to ask and how: `settings`' server or those of `/etc/resolv.conf`, its timeout, one
/// retry, and never `/etc/hosts`.
pub(crate) fn resolver_setup(
    settings: &VerifierSettings,
) -> Result<(ResolverConfig, ResolverOpts), VerifyError> {
    if settings.timeout.is_zero() {
        return Err(VerifyError::ZeroTimeout);
    }
    let config = match settings.nameserver {
        Some(addr) => ResolverConfig::from_name_servers(vec![name_server(addr)]),
        None => {
            // Only the servers are taken from resolv.conf: its timeout and attempts are for
            // the system's resolver, and Kiln's settings decide ours.
            let (config, _options) =
                system_conf::read_system_conf().map_err(VerifyError::SystemConfig)?;
            config
        }
    };
    let mut options = ResolverOpts::default();
    options.timeout = settings.timeout;
    // One retry: a lost UDP packet should not fail a check, a dead server should not stall it.
    options.attempts = 1;
    // /etc/hosts on Kiln's machine says nothing about who controls a domain or an address.
    options.use_hosts_file = ResolveHosts::Never;
    Ok((config, options))
}

/// A name server at `addr` over UDP, and TCP for answers too long for UDP.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut connection| {
            connection.port = addr.port();
            connection
        })
        .collect();
    NameServerConfig::new(addr.ip(), true, connections)
}

/// Asks everything a verdict may need, all at once: a check takes as long as its slowest question.
async fn find(resolver: &TokioResolver, host: &Hostname, cname_target: &Hostname) -> Findings {
    let challenge = challenge_name(host);
    let (cname, challenge_txt, host_addresses, target_addresses) = tokio::join!(
        cname_chain(resolver, host.as_str(), cname_target.as_str()),
        txt_values(resolver, &challenge),
        addresses(resolver, host.as_str()),
        addresses(resolver, cname_target.as_str()),
    );
    Findings {
        cname,
        challenge_txt,
        host_addresses,
        target_addresses,
    }
}

/// Follows `host`'s CNAMEs, one question per hop, until the chain ends, reaches `target`, loops or
/// grows too long. Asking hop by hop (rather than reading the chain off an address answer) also
/// works when a name in the chain has no addresses.
async fn cname_chain(resolver: &TokioResolver, host: &str, target: &str) -> Answer<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut current = host.to_owned();
    while chain.len() < MAX_CNAME_HOPS {
        let next = match ask(resolver, &current, RecordType::CNAME).await {
            // A name has at most one CNAME; should a server send several, the first will do.
            Answer::Found { records } => match records.into_iter().next() {
                Some(RData::CNAME(cname)) => canonical_name(&cname.0.to_ascii()),
                _ => break,
            },
            // The end of a chain: the last name has no CNAME (or does not exist).
            Answer::NoRecords | Answer::NoSuchName if !chain.is_empty() => break,
            Answer::NoRecords => return Answer::NoRecords,
            Answer::NoSuchName => return Answer::NoSuchName,
            Answer::Failed { failure } => {
                tracing::debug!(verify.host = host, verify.chain = ?chain, %failure, "a CNAME lookup failed");
                return Answer::Failed { failure };
            }
        };
        let done = next == target || next == host || chain.contains(&next);
        chain.push(next.clone());
        if done {
            break;
        }
        current = next;
    }
    Answer::from_records(chain)
}

/// The TXT values at `name`, each record's character-strings joined (providers split long values,
/// and some split short ones too).
async fn txt_values(resolver: &TokioResolver, name: &str) -> Answer<String> {
    match ask(resolver, name, RecordType::TXT).await {
        Answer::Found { records } => Answer::from_records(
            records
                .into_iter()
                .filter_map(|data| match data {
                    RData::TXT(txt) => {
                        Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned())
                    }
                    _ => None,
                })
                .collect(),
        ),
        other => other.map_empty(),
    }
}

/// The A and AAAA addresses of `name`, through CNAMEs as any client would reach it.
pub(crate) async fn addresses(resolver: &TokioResolver, name: &str) -> Answer<IpAddr> {
    let (v4, v6) = tokio::join!(
        ask(resolver, name, RecordType::A),
        ask(resolver, name, RecordType::AAAA),
    );
    let ip = |data: RData| match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    };
    let keep_ips = |answer: Answer<RData>| match answer {
        Answer::Found { records } => {
            Answer::from_records(records.into_iter().filter_map(ip).collect())
        }
        other => other.map_empty(),
    };
    keep_ips(v4).merge(keep_ips(v6))
}

/// Asks for the `record_type` records of `name` and keeps the data of the records of that type (an
/// answer through a CNAME also holds the CNAMEs).
async fn ask(resolver: &TokioResolver, name: &str, record_type: RecordType) -> Answer<RData> {
    // Fully qualified, so that resolv.conf's search domains are never tried.
    let fqdn = match Name::from_ascii(format!("{name}.")) {
        Ok(fqdn) => fqdn,
        Err(error) => {
            return Answer::Failed {
                failure: LookupFailure::Other {
                    message: format!("{name} is not a valid DNS name: {error}"),
                },
            };
        }
    };
    ask_fqdn(resolver, fqdn, record_type).await
}

/// [`ask`] with a name already fully qualified.
pub(crate) async fn ask_fqdn(
    resolver: &TokioResolver,
    fqdn: Name,
    record_type: RecordType,
) -> Answer<RData> {
    match resolver.lookup(fqdn, record_type).await {
        Ok(lookup) => Answer::from_records(
            lookup
                .answers()
                .iter()
                .filter(|record| record.record_type() == record_type)
                .map(|record| record.data.clone())
                .collect(),
        ),
        Err(error) => answer_from_error(&error),
    }
}

/// What a failed hickory lookup means: "no such record" answers are findings, the rest failures.
fn answer_from_error<T>(error: &NetError) -> Answer<T> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records))
            if no_records.response_code == ResponseCode::NXDomain =>
        {
            Answer::NoSuchName
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => Answer::NoRecords,
        other => Answer::Failed {
            failure: failure(other),
        },
    }
}

fn failure(error: &NetError) -> LookupFailure {
    match error {
        NetError::Timeout => LookupFailure::Timeout,
        NetError::Dns(DnsError::ResponseCode(code)) => LookupFailure::ServerError {
            code: response_code_name(*code),
        },
        NetError::Io(io) => LookupFailure::Unreachable {
            message: io.to_string(),
        },
        NetError::NoConnections => LookupFailure::Unreachable {
            message: "no connection to the DNS server".to_owned(),
        },
        other => LookupFailure::Other {
            message: other.to_string(),
        },
    }
}

/// The mnemonic DNS operators know a response code by (hickory's `Display` spells them out).
fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::NotAuth => "NOTAUTH".to_owned(),
        other => format!("response code {}", u16::from(other)),
    }
}

impl Answer<RData> {
    /// A non-`Found` answer, retyped (it holds no records).
    fn map_empty<T>(self) -> Answer<T> {
        match self {
            Answer::Found { .. } | Answer::NoRecords => Answer::NoRecords,
            Answer::NoSuchName => Answer::NoSuchName,
            Answer::Failed { failure } => Answer::Failed { failure },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use hickory_resolver::net::{DnsError, NetError, NoRecords};
    use hickory_resolver::proto::op::{Query, ResponseCode};

    use super::{answer_from_error, name_server};
    use crate::verification::{Answer, LookupFailure};

    fn no_records(code: ResponseCode) -> NetError {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
            Query::default(),
            code,
        )))
    }

    fn failed(failure: LookupFailure) -> Answer<()> {
        Answer::Failed { failure }
    }

    fn server_error(code: &str) -> Answer<()> {
        failed(LookupFailure::ServerError {
            code: code.to_owned(),
        })
    }

    #[test]
    fn tells_missing_records_from_failed_lookups() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let rcode = |code| NetError::Dns(DnsError::ResponseCode(code));
        let cases: Vec<(NetError, Answer<()>)> = vec![
            (no_records(ResponseCode::NXDomain), Answer::NoSuchName),
            (no_records(ResponseCode::NoError), Answer::NoRecords),
            (NetError::Timeout, failed(LookupFailure::Timeout)),
            (
                io::Error::from(io::ErrorKind::TimedOut).into(),
                failed(LookupFailure::Timeout),
            ),
            (rcode(ResponseCode::ServFail), server_error("SERVFAIL")),
            (rcode(ResponseCode::Refused), server_error("REFUSED")),
            (
                rcode(ResponseCode::Unknown(3841)),
                server_error("response code 3841"),
            ),
            (
                NetError::Io(Arc::new(refused())),
                failed(LookupFailure::Unreachable {
                    message: refused().to_string(),
                }),
            ),
            (
                NetError::Msg("garbled".to_owned()),
                failed(LookupFailure::Other {
                    message: "garbled".to_owned(),
                }),
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(answer_from_error::<()>(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn asks_the_configured_port_over_udp_and_tcp() {
        let config = name_server("127.0.0.1:5353".parse().unwrap());
        assert_eq!(config.ip, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        let connections: Vec<_> = config
            .connections
            .iter()
            .map(|c| (c.protocol.to_protocol().to_string(), c.port))
            .collect();
        assert_eq!(
            connections,
            [("udp".to_owned(), 5353), ("tcp".to_owned(), 5353)]
        );
    }
}
