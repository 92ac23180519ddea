//! What a check found in DNS and what it concludes: the verdict, and one sentence for the customer.
//! Pure: [`Verification::from_findings`] judges findings however they were gathered.

use std::fmt;
use std::net::IpAddr;

use kiln_core::Hostname;
use serde::Serialize;

/// How a domain proved that its owner controls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The hostname's CNAME (possibly through a chain) points at the configured CNAME target.
    Cname,
    /// `_kiln-challenge.<host>` has a TXT record holding exactly the domain's token.
    Txt,
    /// Every A/AAAA address of the hostname is an address of the CNAME target: how an apex domain,
    /// which cannot have a CNAME, points at Kiln through a provider's ALIAS or CNAME flattening.
    Address,
}

/// What one DNS question got back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer<T> {
    /// At least one record (never an empty list; see [`Answer::from_records`]).
    Found { records: Vec<T> },
    /// The name exists but has no record of the asked type (NOERROR, empty answer).
    NoRecords,
    /// The name does not exist at all (NXDOMAIN).
    NoSuchName,
    /// There is no usable answer, so nothing is known about the records.
    Failed { failure: LookupFailure },
}

impl<T> Answer<T> {
    /// `Found` with `records`, or `NoRecords` when there are none.
    pub fn from_records(records: Vec<T>) -> Self {
        if records.is_empty() {
            Answer::NoRecords
        } else {
            Answer::Found { records }
        }
    }

    fn failed(failure: &LookupFailure) -> Self {
        Answer::Failed {
            failure: failure.clone(),
        }
    }

    pub fn records(&self) -> &[T] {
        match self {
            Answer::Found { records } => records,
            _ => &[],
        }
    }

    pub fn failure(&self) -> Option<&LookupFailure> {
        match self {
            Answer::Failed { failure } => Some(failure),
            _ => None,
        }
    }

    /// Two answers about one name taken together (its A and its AAAA records): a failure of either
    /// is a failure, because half of a name's addresses cannot show that all of them are Kiln's.
    pub fn merge(self, other: Answer<T>) -> Answer<T> {
        match (self, other) {
            (failed @ Answer::Failed { .. }, _) | (_, failed @ Answer::Failed { .. }) => failed,
            (Answer::Found { mut records }, other) => {
                if let Answer::Found { records: more } = other {
                    records.extend(more);
                }
                Answer::Found { records }
            }
            (_, found @ Answer::Found { .. }) => found,
            (Answer::NoSuchName, _) | (_, Answer::NoSuchName) => Answer::NoSuchName,
            (Answer::NoRecords, Answer::NoRecords) => Answer::NoRecords,
        }
    }
}

/// Why a DNS question got no usable answer. Distinct from "no such record": after a failure the
/// record may well exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LookupFailure {
    /// The DNS server did not answer in time (over UDP, a server that is down looks the same).
    Timeout,
    /// The DNS server answered with an error code, such as SERVFAIL or REFUSED.
    ServerError { code: String },
    /// The DNS server could not be reached (connection refused, no route).
    Unreachable { message: String },
    /// Anything else, such as a malformed answer.
    Other { message: String },
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupFailure::Timeout => f.write_str("the DNS server did not answer in time"),
            LookupFailure::ServerError { code } => write!(f, "the DNS server answered {code}"),
            LookupFailure::Unreachable { message } => {
                write!(f, "the DNS server could not be reached: {message}")
            }
            LookupFailure::Other { message } => f.write_str(message),
        }
    }
}

/// Everything a check asked DNS, and what came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// The names the host's CNAME chain leads through, in order: `Found` with just the target for
    /// `shop.example.com CNAME edge.kiln.example`. Canonical (lowercase, no trailing dot).
    pub cname: Answer<String>,
    /// The TXT values at `_kiln-challenge.<host>`, each record's character-strings joined.
    pub challenge_txt: Answer<String>,
    /// The host's A and AAAA addresses (through a CNAME, if it has one).
    pub host_addresses: Answer<IpAddr>,
    /// The CNAME target's A and AAAA addresses.
    pub target_addresses: Answer<IpAddr>,
}

impl Findings {
    /// Findings where every lookup failed the same way.
    pub fn all_failed(failure: LookupFailure) -> Self {
        Findings {
            cname: Answer::failed(&failure),
            challenge_txt: Answer::failed(&failure),
            host_addresses: Answer::failed(&failure),
            target_addresses: Answer::failed(&failure),
        }
    }
}

/// The outcome of checking one domain: the verdict and the evidence, serialisable for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub host: Hostname,
    pub cname_target: Hostname,
    /// Where the TXT record goes: `_kiln-challenge.<host>`.
    pub challenge_name: String,
    /// The token the TXT record must hold.
    pub token: String,
    /// How the domain proved its ownership; None when it did not.
    pub verified_by: Option<Method>,
    pub findings: Findings,
}

/// The name whose TXT record proves ownership of `host`.
pub fn challenge_name(host: &Hostname) -> String {
    format!("_kiln-challenge.{host}")
}

/// A DNS name as Kiln compares names: lowercase, without the trailing dot of a fully qualified name.
pub fn canonical_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Verification {
    /// Judges `findings` for `host`. The methods are tried in a fixed order (CNAME, TXT, address)
    /// so that the reported method does not depend on which lookup answered first.
    pub fn from_findings(
        host: Hostname,
        cname_target: Hostname,
        token: String,
        findings: Findings,
    ) -> Self {
        let verified_by = decide(cname_target.as_str(), &token, &findings);
        Verification {
            challenge_name: challenge_name(&host),
            host,
            cname_target,
            token,
            verified_by,
            findings,
        }
    }

    pub fn verified(&self) -> bool {
        self.verified_by.is_some()
    }

    /// One sentence for the customer: how the domain is verified, or what DNS shows and what to add.
    pub fn explanation(&self) -> String {
        match self.verified_by {
            Some(method) => self.verified_sentence(method),
            None => self.unverified_sentence(),
        }
    }

    fn verified_sentence(&self, method: Method) -> String {
        let (host, target) = (&self.host, &self.cname_target);
        match method {
            Method::Cname => {
                let chain = self.findings.cname.records();
                if chain.len() <= 1 {
                    format!("{host} is verified: its CNAME points at {target}.")
                } else {
                    format!(
                        "{host} is verified: its CNAME chain ({}) leads to {target}.",
                        chain.join(" → ")
                    )
                }
            }
            Method::Txt => format!(
                "{host} is verified: {} has a TXT record with the domain's token.",
                self.challenge_name
            ),
            Method::Address => {
                let addresses = self.findings.host_addresses.records();
                let list =
                    join_clauses(&addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>());
                if addresses.len() == 1 {
                    format!("{host} is verified: its address {list} is an address of {target}.")
                } else {
                    format!(
                        "{host} is verified: its addresses {list} are all addresses of {target}."
                    )
                }
            }
        }
    }

    fn unverified_sentence(&self) -> String {
        let findings = &self.findings;
        let host = &self.host;
        // When nothing could be asked, say only that: "no record" would send the customer to fix
        // records that may well be right.
        if let (Some(failure), Some(_), Some(_)) = (
            findings.cname.failure(),
            findings.challenge_txt.failure(),
            findings.host_addresses.failure(),
        ) {
            return format!(
                "Looking up the DNS records of {host} failed ({failure}), so Kiln could not check \
                 the domain; try again in a few minutes."
            );
        }
        let mut clauses = vec![self.cname_clause(), self.txt_clause()];
        clauses.extend(self.address_clause());
        let remedy = format!(
            "add a CNAME record pointing at {} (an ALIAS record at a zone apex) or a TXT record at \
             {} with the value {}",
            self.cname_target, self.challenge_name, self.token
        );
        // After a failed lookup the records may be fine already; asking again may be all it takes.
        let remedy = if clauses.iter().any(|c| c.failed) {
            format!("try again in a few minutes or {remedy}")
        } else {
            remedy
        };
        let texts: Vec<String> = clauses.into_iter().map(|c| c.text).collect();
        let sentence = format!("{}; {remedy}.", join_clauses(&texts));
        capitalise_failure_start(sentence)
    }

    fn cname_clause(&self) -> Clause {
        let (host, target) = (&self.host, &self.cname_target);
        match &self.findings.cname {
            Answer::Found { records } if records.len() == 1 => Clause::fact(format!(
                "{host} has a CNAME to {} instead of {target}",
                records[0]
            )),
            Answer::Found { records } => Clause::fact(format!(
                "{host} has a CNAME chain ({}) that does not reach {target}",
                records.join(" → ")
            )),
            Answer::NoRecords => Clause::fact(format!("{host} has no CNAME record")),
            Answer::NoSuchName => Clause::fact(format!("{host} does not exist in DNS")),
            Answer::Failed { failure } => Clause::failure(format!(
                "looking up the CNAME record of {host} failed ({failure})"
            )),
        }
    }

    fn txt_clause(&self) -> Clause {
        let (challenge, token) = (&self.challenge_name, &self.token);
        match &self.findings.challenge_txt {
            Answer::Found { records } if records.len() == 1 => Clause::fact(format!(
                "{challenge} has the TXT record {} instead of {token}",
                quoted(&records[0])
            )),
            Answer::Found { records } => {
                const SHOWN: usize = 3;
                let mut shown: Vec<String> =
                    records.iter().take(SHOWN).map(|v| quoted(v)).collect();
                if records.len() > SHOWN {
                    shown.push(format!("{} more", records.len() - SHOWN));
                }
                Clause::fact(format!(
                    "{challenge} has the TXT records {}, none of which is {token}",
                    join_clauses(&shown)
                ))
            }
            Answer::NoRecords | Answer::NoSuchName => {
                Clause::fact(format!("{challenge} has no TXT record"))
            }
            Answer::Failed { failure } => Clause::failure(format!(
                "looking up the TXT records of {challenge} failed ({failure})"
            )),
        }
    }

    /// What the host's addresses say, when they are worth a word: only for a host without a CNAME
    /// (an apex domain, or one using ALIAS records). With a CNAME, the CNAME clause says it all.
    fn address_clause(&self) -> Option<Clause> {
        let findings = &self.findings;
        if matches!(findings.cname, Answer::Found { .. }) {
            return None;
        }
        let (host, target) = (&self.host, &self.cname_target);
        match (&findings.host_addresses, &findings.target_addresses) {
            (Answer::NoRecords | Answer::NoSuchName, _) => None,
            (Answer::Failed { failure }, _) => Some(Clause::failure(format!(
                "looking up the addresses of {host} failed ({failure})"
            ))),
            (Answer::Found { .. }, Answer::Failed { failure }) => Some(Clause::failure(format!(
                "looking up the addresses of {target} to compare them with {host}'s failed \
                 ({failure})"
            ))),
            (Answer::Found { .. }, Answer::NoRecords | Answer::NoSuchName) => Some(Clause::fact(
                format!("{target} has no addresses to compare with {host}'s"),
            )),
            (Answer::Found { records: ours }, Answer::Found { records: theirs }) => {
                let foreign: Vec<String> = ours
                    .iter()
                    .filter(|a| !theirs.contains(a))
                    .map(IpAddr::to_string)
                    .collect();
                let list = join_clauses(&foreign);
                Some(Clause::fact(if foreign.len() == 1 {
                    format!("{host}'s address {list} is not an address of {target}")
                } else {
                    format!("{host}'s addresses {list} are not addresses of {target}")
                }))
            }
        }
    }
}

/// One part of an explanation, and whether it reports a failed lookup rather than a fact.
struct Clause {
    text: String,
    failed: bool,
}

impl Clause {
    fn fact(text: String) -> Self {
        Clause {
            text,
            failed: false,
        }
    }

    fn failure(text: String) -> Self {
        Clause { text, failed: true }
    }
}

fn decide(target: &str, token: &str, findings: &Findings) -> Option<Method> {
    let target = canonical_name(target);
    if findings
        .cname
        .records()
        .iter()
        .any(|name| canonical_name(name) == target)
    {
        return Some(Method::Cname);
    }
    // An empty token would match an empty TXT record anyone could have; it never proves anything.
    if !token.is_empty() && findings.challenge_txt.records().iter().any(|v| v == token) {
        return Some(Method::Txt);
    }
    // A host without addresses must not pass vacuously (`Found` is never empty when built by
    // `from_records`, but its fields are public).
    if let (Answer::Found { records: ours }, Answer::Found { records: theirs }) =
        (&findings.host_addresses, &findings.target_addresses)
        && !ours.is_empty()
        && ours.iter().all(|a| theirs.contains(a))
    {
        return Some(Method::Address);
    }
    None
}

/// A TXT value as an explanation shows it: quoted, control characters escaped, and cut short, since
/// the record is the customer's and may be long (SPF records, keys).
fn quoted(value: &str) -> String {
    const SHOWN_CHARS: usize = 60;
    if value.chars().count() <= SHOWN_CHARS {
        format!("{value:?}")
    } else {
        let start: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{start:?}…")
    }
}

/// "a", "a and b", "a, b and c".
fn join_clauses(clauses: &[String]) -> String {
    match clauses {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Clauses start with a hostname (kept lowercase) or with "looking up", which starts a sentence
/// capitalised.
fn capitalise_failure_start(sentence: String) -> String {
    match sentence.strip_prefix("looking up") {
        Some(rest) => format!("Looking up{rest}"),
        None => sentence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Hostname {
        Hostname::parse(name).unwrap()
    }

    fn names(names: &[&str]) -> Answer<String> {
        Answer::from_records(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn ips(ips: &[&str]) -> Answer<IpAddr> {
        Answer::from_records(ips.iter().map(|ip| ip.parse().unwrap()).collect())
    }

    fn timeout<T>() -> Answer<T> {
        Answer::Failed {
            failure: LookupFailure::Timeout,
        }
    }

    /// A host that does not exist, and a target with an IPv4 and an IPv6 address.
    fn nothing() -> Findings {
        Findings {
            cname: Answer::NoSuchName,
            challenge_txt: Answer::NoSuchName,
            host_addresses: Answer::NoSuchName,
            target_addresses: ips(&["192.0.2.1", "2001:db8::1"]),
        }
    }

    fn cname(chain: &[&str]) -> Findings {
        Findings {
            cname: names(chain),
            ..nothing()
        }
    }

    fn txt(values: &[&str]) -> Findings {
        Findings {
            challenge_txt: names(values),
            ..nothing()
        }
    }

    /// A host without a CNAME, with these addresses.
    fn apex(addresses: &[&str]) -> Findings {
        Findings {
            cname: Answer::NoRecords,
            host_addresses: ips(addresses),
            ..nothing()
        }
    }

    fn judge(findings: Findings) -> Verification {
        Verification::from_findings(
            host("shop.example.com"),
            host("edge.kiln.example"),
            "kiln-verify-abc".to_owned(),
            findings,
        )
    }

    #[test]
    fn decides_the_method() {
        let both = Findings {
            challenge_txt: names(&["kiln-verify-abc"]),
            ..cname(&["edge.kiln.example"])
        };
        let target_unknown = Findings {
            target_addresses: Answer::NoRecords,
            ..apex(&["192.0.2.1"])
        };
        let target_failed = Findings {
            target_addresses: timeout(),
            ..apex(&["192.0.2.1"])
        };
        let host_failed = Findings {
            host_addresses: timeout(),
            ..apex(&[])
        };
        let empty_found = Findings {
            host_addresses: Answer::Found { records: vec![] },
            ..apex(&[])
        };
        let cases: Vec<(&str, Findings, Option<Method>)> = vec![
            ("nothing", nothing(), None),
            (
                "direct cname",
                cname(&["edge.kiln.example"]),
                Some(Method::Cname),
            ),
            (
                "chain",
                cname(&["cdn.example", "edge.kiln.example"]),
                Some(Method::Cname),
            ),
            (
                "case and dot",
                cname(&["Edge.KILN.example."]),
                Some(Method::Cname),
            ),
            ("wrong cname", cname(&["x.example.net"]), None),
            (
                "cname below the target",
                cname(&["a.edge.kiln.example"]),
                None,
            ),
            ("txt", txt(&["other", "kiln-verify-abc"]), Some(Method::Txt)),
            ("txt with a space", txt(&[" kiln-verify-abc"]), None),
            ("txt prefix", txt(&["kiln-verify-ab"]), None),
            ("txt in other case", txt(&["KILN-VERIFY-ABC"]), None),
            ("cname wins over txt", both, Some(Method::Cname)),
            (
                "all the target's",
                apex(&["2001:db8::1", "192.0.2.1"]),
                Some(Method::Address),
            ),
            (
                "some of the target's",
                apex(&["192.0.2.1"]),
                Some(Method::Address),
            ),
            (
                "one foreign address",
                apex(&["192.0.2.1", "198.51.100.7"]),
                None,
            ),
            ("no host addresses", apex(&[]), None),
            ("an empty list of host addresses", empty_found, None),
            ("target has no addresses", target_unknown, None),
            ("target lookup failed", target_failed, None),
            ("host lookup failed", host_failed, None),
        ];
        for (name, findings, expected) in cases {
            assert_eq!(judge(findings).verified_by, expected, "{name}");
        }
    }

    #[test]
    fn an_empty_token_never_verifies() {
        let verification = Verification::from_findings(
            host("shop.example.com"),
            host("edge.kiln.example"),
            String::new(),
            txt(&[""]),
        );
        assert!(!verification.verified());
    }

    #[test]
    fn canonicalises_names() {
        let cases = [
            ("edge.kiln.example", "edge.kiln.example"),
            ("Edge.Kiln.Example.", "edge.kiln.example"),
            ("EDGE.KILN.EXAMPLE", "edge.kiln.example"),
            ("edge.kiln.example..", "edge.kiln.example."),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_name(input), expected, "{input}");
        }
    }

    #[test]
    fn merges_address_answers() {
        let v4 = || ips(&["192.0.2.1"]);
        let v6 = || ips(&["2001:db8::1"]);
        let cases: Vec<(Answer<IpAddr>, Answer<IpAddr>, Answer<IpAddr>)> = vec![
            (v4(), v6(), ips(&["192.0.2.1", "2001:db8::1"])),
            (v4(), Answer::NoRecords, v4()),
            (Answer::NoRecords, v6(), v6()),
            (v4(), timeout(), timeout()),
            (timeout(), v6(), timeout()),
            (Answer::NoRecords, Answer::NoRecords, Answer::NoRecords),
            (Answer::NoSuchName, Answer::NoRecords, Answer::NoSuchName),
            (Answer::NoRecords, Answer::NoSuchName, Answer::NoSuchName),
            (Answer::NoSuchName, timeout(), timeout()),
        ];
        for (a, b, expected) in cases {
            let label = format!("{a:?} + {b:?}");
            assert_eq!(a.merge(b), expected, "{label}");
        }
    }

    #[test]
    fn explains_in_one_sentence() {
        let remedy = "add a CNAME record pointing at edge.kiln.example (an ALIAS record at a zone \
                      apex) or a TXT record at _kiln-challenge.shop.example.com with the value \
                      kiln-verify-abc.";
        let no_txt = "_kiln-challenge.shop.example.com has no TXT record";
        let no_cname = Findings {
            cname: Answer::NoRecords,
            challenge_txt: Answer::NoSuchName,
            host_addresses: Answer::NoRecords,
            ..nothing()
        };
        let target_unknown = Findings {
            target_addresses: Answer::NoSuchName,
            ..apex(&["198.51.100.7"])
        };
        let cname_timeout = Findings {
            cname: timeout(),
            ..nothing()
        };
        let servfail = Findings::all_failed(LookupFailure::ServerError {
            code: "SERVFAIL".to_owned(),
        });
        let cases: Vec<(Findings, String)> = vec![
            (
                no_cname,
                format!("shop.example.com has no CNAME record and {no_txt}; {remedy}"),
            ),
            (
                nothing(),
                format!("shop.example.com does not exist in DNS and {no_txt}; {remedy}"),
            ),
            (
                cname(&["x.example.net"]),
                format!(
                    "shop.example.com has a CNAME to x.example.net instead of edge.kiln.example \
                     and {no_txt}; {remedy}"
                ),
            ),
            (
                cname(&["a.example", "b.example"]),
                format!(
                    "shop.example.com has a CNAME chain (a.example → b.example) that does not \
                     reach edge.kiln.example and {no_txt}; {remedy}"
                ),
            ),
            (
                txt(&["kiln-verify-old"]),
                format!(
                    "shop.example.com does not exist in DNS and _kiln-challenge.shop.example.com \
                     has the TXT record \"kiln-verify-old\" instead of kiln-verify-abc; {remedy}"
                ),
            ),
            (
                txt(&["a", "b", "c", "d", "e"]),
                format!(
                    "shop.example.com does not exist in DNS and _kiln-challenge.shop.example.com \
                     has the TXT records \"a\", \"b\", \"c\" and 2 more, none of which is \
                     kiln-verify-abc; {remedy}"
                ),
            ),
            (
                apex(&["192.0.2.1", "198.51.100.7"]),
                format!(
                    "shop.example.com has no CNAME record, {no_txt} and shop.example.com's \
                     address 198.51.100.7 is not an address of edge.kiln.example; {remedy}"
                ),
            ),
            (
                apex(&["198.51.100.7", "198.51.100.8"]),
                format!(
                    "shop.example.com has no CNAME record, {no_txt} and shop.example.com's \
                     addresses 198.51.100.7 and 198.51.100.8 are not addresses of \
                     edge.kiln.example; {remedy}"
                ),
            ),
            (
                target_unknown,
                format!(
                    "shop.example.com has no CNAME record, {no_txt} and edge.kiln.example has no \
                     addresses to compare with shop.example.com's; {remedy}"
                ),
            ),
            (
                txt(&[&"v=spf1 include:_spf.example.com ".repeat(4), "new\nline"]),
                format!(
                    "shop.example.com does not exist in DNS and _kiln-challenge.shop.example.com \
                     has the TXT records \"v=spf1 include:_spf.example.com v=spf1 \
                     include:_spf.example.\"… and \"new\\nline\", none of which is \
                     kiln-verify-abc; {remedy}"
                ),
            ),
            (
                cname_timeout,
                format!(
                    "Looking up the CNAME record of shop.example.com failed (the DNS server did \
                     not answer in time) and {no_txt}; try again in a few minutes or {remedy}"
                ),
            ),
            (
                servfail,
                "Looking up the DNS records of shop.example.com failed (the DNS server answered \
                 SERVFAIL), so Kiln could not check the domain; try again in a few minutes."
                    .to_owned(),
            ),
            (
                cname(&["edge.kiln.example"]),
                "shop.example.com is verified: its CNAME points at edge.kiln.example.".to_owned(),
            ),
            (
                cname(&["www.cdn.example", "edge.kiln.example"]),
                "shop.example.com is verified: its CNAME chain (www.cdn.example → \
                 edge.kiln.example) leads to edge.kiln.example."
                    .to_owned(),
            ),
            (
                txt(&["kiln-verify-abc"]),
                "shop.example.com is verified: _kiln-challenge.shop.example.com has a TXT record \
                 with the domain's token."
                    .to_owned(),
            ),
            (
                apex(&["192.0.2.1"]),
                "shop.example.com is verified: its address 192.0.2.1 is an address of \
                 edge.kiln.example."
                    .to_owned(),
            ),
        ];
        for (findings, expected) in cases {
            let label = format!("{findings:?}");
            assert_eq!(judge(findings).explanation(), expected, "{label}");
        }
    }

    #[test]
    fn serialises_for_the_dashboard() {
        let verification = judge(Findings {
            cname: Answer::NoRecords,
            host_addresses: timeout(),
            ..txt(&["kiln-verify-abc"])
        });
        let json = serde_json::to_value(&verification).unwrap();
        assert_eq!(json["host"], "shop.example.com");
        assert_eq!(json["verified_by"], "txt");
        assert_eq!(json["challenge_name"], "_kiln-challenge.shop.example.com");
        assert_eq!(
            json["findings"]["cname"],
            serde_json::json!({"outcome": "no_records"})
        );
        assert_eq!(
            json["findings"]["challenge_txt"],
            serde_json::json!({"outcome": "found", "records": ["kiln-verify-abc"]})
        );
        assert_eq!(
            json["findings"]["host_addresses"],
            serde_json::json!({"outcome": "failed", "failure": {"kind": "timeout"}})
        );
        assert_eq!(
            json["findings"]["target_addresses"],
            serde_json::json!({"outcome": "found", "records": ["192.0.2.1", "2001:db8::1"]})
        );
    }
}
