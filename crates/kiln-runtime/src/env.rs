//! The one reader of Kiln's `KILN_*` variables: every program's `Settings::from_lookup` reads its
//! configuration through [`Vars`], so that every program treats a blank value as unset, trims what it
//! reads, and reports a bad value in one shape, ``KILN_X `value` is not …, e.g. …``.
//!
//! Hand-written on purpose. `envy` and `figment` were considered and rejected: both go through
//! serde, whose errors carry the field parser's words (at best "invalid digit found in string while
//! parsing value `x` provided by PORT"), never what the variable takes with an example, and neither
//! counts a blank value as unset. `envconfig`'s errors name the variable alone. What Kiln needs is
//! a few typed reads over a lookup function (the process environment, or a table in tests), which
//! is what this is.

use crate::LogFormat;
use kiln_core::{EgressPolicy, Hostname};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

/// An error a lookup or a parser gives, kept as the source of a [`VarError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type Lookup<'a> = Box<dyn Fn(&str) -> Result<Option<String>, BoxError> + 'a>;

/// Typed reads of variables through a lookup function: the process environment
/// ([`Vars::from_env`]) or, in tests, a table ([`Vars::new`]).
///
/// A value is trimmed, and a blank one counts as unset, so `KILN_REDIS_URL=` in an env file means
/// "use the default". The one exception is a secret, taken as written (see [`Vars::secret`]).
/// The render service's host name when `KILN_SERVICE_HOST` is not set: `*.localhost` resolves to
/// this machine everywhere, which suits the local stack.
pub const DEFAULT_SERVICE_HOST: &str = "render.localhost";

pub struct Vars<'a> {
    lookup: Lookup<'a>,
}

impl std::fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars(..)")
    }
}

/// Why a variable could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VarError {
    /// A required variable is unset (or blank).
    #[error("{name} is not set; {hint}")]
    Missing { name: String, hint: String },
    /// The value is not what the variable takes; `source` is the parser's own error, if any.
    #[error("{name} `{value}` is not {expected}")]
    Invalid {
        name: String,
        value: String,
        /// What would do, with an example: "a whole number of milliseconds, e.g. 500".
        expected: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A secret shorter than it must be. The value itself is never part of the message.
    #[error(
        "{name} is too short ({length} characters); use at least {min}, e.g. the output of \
         `openssl rand -base64 48`"
    )]
    ShortSecret {
        name: String,
        length: usize,
        min: usize,
    },
    /// The lookup itself failed: a value in the environment that is not UTF-8, say.
    #[error("{name} cannot be read")]
    Unreadable {
        name: String,
        #[source]
        source: BoxError,
    },
}

impl VarError {
    /// `name`'s `value` is not `expected` (what would do, with an example): for a check a program
    /// makes itself after reading a value, so that it reads like the others.
    pub fn invalid(name: &str, value: &str, expected: impl Into<String>) -> Self {
        VarError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
            source: None,
        }
    }

    fn invalid_because(
        name: &str,
        value: &str,
        expected: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        VarError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
            source: Some(source.into()),
        }
    }
}

impl<'a> Vars<'a> {
    /// Reads variables through `lookup`, which returns a variable's value if it is set.
    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Vars {
            lookup: Box::new(move |name| Ok(lookup(name))),
        }
    }

    /// Reads variables through a lookup that may fail; its error becomes the source of a
    /// [`VarError::Unreadable`].
    pub fn try_new<E: Into<BoxError>>(
        lookup: impl Fn(&str) -> Result<Option<String>, E> + 'a,
    ) -> Self {
        Vars {
            lookup: Box::new(move |name| lookup(name).map_err(Into::into)),
        }
    }

    /// The value as the lookup gives it, `None` when unset or blank.
    fn raw(&self, name: &str) -> Result<Option<String>, VarError> {
        let value = (self.lookup)(name).map_err(|source| VarError::Unreadable {
            name: name.to_owned(),
            source,
        })?;
        Ok(value.filter(|value| !value.trim().is_empty()))
    }

    /// The value, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Result<Option<String>, VarError> {
        Ok(self.raw(name)?.map(|value| value.trim().to_owned()))
    }

    /// The value, or `default` when unset.
    pub fn or(&self, name: &str, default: &str) -> Result<String, VarError> {
        Ok(self.get(name)?.unwrap_or_else(|| default.to_owned()))
    }

    /// The value; unset is an error that says `hint` (what the variable is for, with an example).
    pub fn required(&self, name: &str, hint: &str) -> Result<String, VarError> {
        self.get(name)?.ok_or_else(|| VarError::Missing {
            name: name.to_owned(),
            hint: hint.to_owned(),
        })
    }

    /// The comma-separated entries of the value, each trimmed, blank ones left out; none when unset.
    pub fn list(&self, name: &str) -> Result<Vec<String>, VarError> {
        Ok(self
            .get(name)?
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A secret of at least `min_chars` characters (surrounding blanks aside); `None` when unset.
    ///
    /// Unlike every other value it is kept as written, surrounding blanks included: a key derived
    /// from it (kiln-acme's seal) must stay the same bytes it always was, and a secret file mounted
    /// into the environment often ends with a newline.
    pub fn secret(&self, name: &str, min_chars: usize) -> Result<Option<SecretString>, VarError> {
        let Some(value) = self.raw(name)? else {
            return Ok(None);
        };
        let length = value.trim().chars().count();
        if length < min_chars {
            return Err(VarError::ShortSecret {
                name: name.to_owned(),
                length,
                min: min_chars,
            });
        }
        Ok(Some(SecretString::from(value)))
    }

    /// A secret as [`Vars::secret`] reads it; unset is an error that says `hint`.
    pub fn required_secret(
        &self,
        name: &str,
        min_chars: usize,
        hint: &str,
    ) -> Result<SecretString, VarError> {
        self.secret(name, min_chars)?
            .ok_or_else(|| VarError::Missing {
                name: name.to_owned(),
                hint: hint.to_owned(),
            })
    }

    /// The value parsed as a `T`; `None` when unset. A value that does not parse is reported as
    /// not `expected` ("an IP address and port, e.g. 127.0.0.1:53"), with the parser's error as
    /// the source.
    pub fn parse<T>(&self, name: &str, expected: &str) -> Result<Option<T>, VarError>
    where
        T: FromStr,
        T::Err: Into<BoxError>,
    {
        self.parse_with(name, expected, str::parse)
    }

    /// The value read by `parse`; `None` when unset. A failure is reported as with
    /// [`Vars::parse`].
    pub fn parse_with<T, E: Into<BoxError>>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, VarError> {
        let Some(value) = self.get(name)? else {
            return Ok(None);
        };
        parse(&value)
            .map(Some)
            .map_err(|error| VarError::invalid_because(name, &value, expected, error))
    }

    /// A whole number in `range`, or `default` when unset. `unit` names what is counted, with any
    /// note ("renders (0: no limit)"; empty for none); the message adds the range and the default as
    /// its example: "a whole number of renders (0: no limit), e.g. 16".
    pub fn number<T>(
        &self,
        name: &str,
        default: T,
        range: impl RangeBounds<T>,
        unit: &str,
    ) -> Result<T, VarError>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Into<BoxError>,
    {
        let Some(value) = self.get(name)? else {
            return Ok(default);
        };
        let expected = || {
            let of = if unit.is_empty() {
                String::new()
            } else {
                format!(" of {unit}")
            };
            let bounds = match (range.start_bound(), range.end_bound()) {
                (Bound::Included(low), Bound::Included(high)) => {
                    format!(" between {low} and {high}")
                }
                (Bound::Included(low), Bound::Unbounded) => format!(" (at least {low})"),
                (Bound::Unbounded, Bound::Included(high)) => format!(" (at most {high})"),
                _ => String::new(),
            };
            format!("a whole number{of}{bounds}, e.g. {default}")
        };
        match value.parse::<T>() {
            Ok(number) if range.contains(&number) => Ok(number),
            Ok(_) => Err(VarError::invalid(name, &value, expected())),
            Err(error) => Err(VarError::invalid_because(name, &value, expected(), error)),
        }
    }

    /// A whole number of milliseconds in `range`, or `default_ms` when unset: the unit of most of
    /// Kiln's durations. (The few in seconds or days are a [`Vars::number`] of them.)
    pub fn duration_ms(
        &self,
        name: &str,
        default_ms: u64,
        range: impl RangeBounds<u64>,
    ) -> Result<Duration, VarError> {
        self.number(name, default_ms, range, "milliseconds")
            .map(Duration::from_millis)
    }

    /// An on/off switch: `on`, `true` or `1`, or `off`, `false` or `0`; `default` when unset.
    pub fn switch(&self, name: &str, default: bool) -> Result<bool, VarError> {
        match self.get(name)?.as_deref() {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(other) => Err(VarError::invalid(
                name,
                other,
                "a switch: `on`, `true` or `1`, or `off`, `false` or `0`",
            )),
        }
    }

    /// A socket address (`ip:port`), or `default` when unset.
    pub fn addr(&self, name: &str, default: &str) -> Result<SocketAddr, VarError> {
        let value = self.or(name, default)?;
        value.parse().map_err(|error| {
            VarError::invalid_because(
                name,
                &value,
                format!("an IP address and port, e.g. {default}"),
                error,
            )
        })
    }

    /// A socket address as [`Vars::addr`] reads it, or `off` for none.
    pub fn addr_or_off(&self, name: &str, default: &str) -> Result<Option<SocketAddr>, VarError> {
        let value = self.or(name, default)?;
        if value == "off" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|error| {
            VarError::invalid_because(
                name,
                &value,
                format!("an IP address and port, or `off`, e.g. {default}"),
                error,
            )
        })
    }

    /// `KILN_ALLOWED_PRIVATE_NETS`, read alike by every program whose traffic reaches origins: the
    /// `NET[:PORTS][@SCOPE]` grants of [`EgressPolicy::parse`] (none when unset).
    pub fn allowed_private_nets(&self) -> Result<EgressPolicy, VarError> {
        let grants = self.parse_with(
            "KILN_ALLOWED_PRIVATE_NETS",
            "a list of NET[:PORTS][@SCOPE] grants, e.g. 10.0.0.5:8080, 10.1.0.0/16:80-443@*",
            EgressPolicy::parse,
        )?;
        Ok(grants.unwrap_or_default())
    }

    /// `KILN_LOG_FORMAT`, read alike by every program: `pretty` (when unset) or `json`.
    /// `KILN_SERVICE_HOST`: the render service's host name (default [`DEFAULT_SERVICE_HOST`]), or
    /// none when it is `off`. The gateways answer it, the dashboard shows and reserves it, and
    /// kiln-acme certifies it: one reading for all three, so that they agree.
    pub fn service_host(&self) -> Result<Option<Hostname>, VarError> {
        const NAME: &str = "KILN_SERVICE_HOST";
        let value = self.or(NAME, DEFAULT_SERVICE_HOST)?;
        if value == "off" {
            return Ok(None);
        }
        Hostname::parse(&value).map(Some).map_err(|error| {
            VarError::invalid_because(
                NAME,
                &value,
                "a host name, e.g. render.example.com, or `off`",
                error,
            )
        })
    }

    pub fn log_format(&self) -> Result<LogFormat, VarError> {
        const NAME: &str = "KILN_LOG_FORMAT";
        match self.get(NAME)? {
            None => Ok(LogFormat::Pretty),
            // `LogFormat`'s own error says just this, variable included, so it is not kept as a
            // source: the message would say it twice.
            Some(value) => value
                .parse()
                .map_err(|_| VarError::invalid(NAME, &value, "`pretty` or `json`")),
        }
    }
}

impl Vars<'static> {
    /// Reads the process environment. A value that is not UTF-8 is an error, not "unset".
    pub fn from_env() -> Self {
        Vars::try_new(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(error) => Err(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    /// Variables read from a table.
    fn vars<'a>(table: &'a [(&'a str, &'a str)]) -> Vars<'a> {
        Vars::new(move |name| {
            table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// What `read` gives for `X` set to each value (`None`: unset), as `Ok(debug)` or the error's
    /// message with its sources, as a program's `anyhow` report shows it.
    #[track_caller]
    fn check<T: std::fmt::Debug>(
        read: impl Fn(&Vars) -> Result<T, VarError>,
        cases: &[(Option<&str>, Result<&str, &str>)],
    ) {
        check_var("X", read, cases);
    }

    /// [`check`] for a variable named `name`.
    #[track_caller]
    fn check_var<T: std::fmt::Debug>(
        name: &str,
        read: impl Fn(&Vars) -> Result<T, VarError>,
        cases: &[(Option<&str>, Result<&str, &str>)],
    ) {
        for (value, expected) in cases {
            let table: Vec<(&str, &str)> = value.iter().map(|v| (name, *v)).collect();
            let found = read(&vars(&table))
                .map(|v| format!("{v:?}"))
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)));
            let found = found.as_ref().map(String::as_str).map_err(String::as_str);
            assert_eq!(found, *expected, "{name}={value:?}");
        }
    }

    #[test]
    fn strings_are_trimmed_and_blank_is_unset() {
        check(
            |v| v.get("X"),
            &[
                (None, Ok("None")),
                (Some(""), Ok("None")),
                (Some(" \t\n"), Ok("None")),
                (Some(" a b "), Ok("Some(\"a b\")")),
            ],
        );
        check(
            |v| v.or("X", "kiln:"),
            &[
                (None, Ok("\"kiln:\"")),
                (Some("  "), Ok("\"kiln:\"")),
                (Some(" t1: "), Ok("\"t1:\"")),
            ],
        );
        check(
            |v| v.required("X", "point it at the database, e.g. postgres://db/kiln"),
            &[
                (Some("postgres://db"), Ok("\"postgres://db\"")),
                (
                    Some(" "),
                    Err("X is not set; point it at the database, e.g. postgres://db/kiln"),
                ),
                (
                    None,
                    Err("X is not set; point it at the database, e.g. postgres://db/kiln"),
                ),
            ],
        );
        check(
            |v| v.list("X"),
            &[
                (None, Ok("[]")),
                (Some(" , "), Ok("[]")),
                (Some("a=1, b=2,,c"), Ok("[\"a=1\", \"b=2\", \"c\"]")),
            ],
        );
    }

    #[test]
    fn numbers_and_durations_say_what_would_do() {
        check(
            |v| v.number("X", 16u32, .., "renders (0: no limit)"),
            &[
                (None, Ok("16")),
                (Some(" 0 "), Ok("0")),
                (
                    Some("lots"),
                    Err(
                        "X `lots` is not a whole number of renders (0: no limit), e.g. 16: \
                         invalid digit found in string",
                    ),
                ),
                (
                    Some("-1"),
                    Err(
                        "X `-1` is not a whole number of renders (0: no limit), e.g. 16: \
                         invalid digit found in string",
                    ),
                ),
            ],
        );
        check(
            |v| v.number("X", 100u32, 1..=1_000_000, ""),
            &[
                (Some("1"), Ok("1")),
                (Some("1000000"), Ok("1000000")),
                (
                    Some("0"),
                    Err("X `0` is not a whole number between 1 and 1000000, e.g. 100"),
                ),
                (
                    Some("1000001"),
                    Err("X `1000001` is not a whole number between 1 and 1000000, e.g. 100"),
                ),
            ],
        );
        check(
            |v| v.number("X", 1usize, 1.., "browsers"),
            &[(
                Some("0"),
                Err("X `0` is not a whole number of browsers (at least 1), e.g. 1"),
            )],
        );
        check(
            |v| v.duration_ms("X", 500, ..),
            &[
                (None, Ok("500ms")),
                (Some("0"), Ok("0ns")),
                (Some("75"), Ok("75ms")),
                (
                    Some("fast"),
                    Err("X `fast` is not a whole number of milliseconds, e.g. 500: \
                         invalid digit found in string"),
                ),
            ],
        );
        check(
            |v| v.duration_ms("X", 50, 1..),
            &[(
                Some("0"),
                Err("X `0` is not a whole number of milliseconds (at least 1), e.g. 50"),
            )],
        );
        check(
            |v| v.number("X", 1800u64, 60..=86_400, "seconds"),
            &[
                (None, Ok("1800")),
                (Some("60"), Ok("60")),
                (
                    Some("59"),
                    Err("X `59` is not a whole number of seconds between 60 and 86400, e.g. 1800"),
                ),
            ],
        );
    }

    #[test]
    fn switches_addresses_and_parsed_values() {
        check(
            |v| v.switch("X", true),
            &[
                (None, Ok("true")),
                (Some("off"), Ok("false")),
                (Some(" false "), Ok("false")),
                (Some("0"), Ok("false")),
                (Some("on"), Ok("true")),
                (Some("1"), Ok("true")),
                (
                    Some("yes"),
                    Err("X `yes` is not a switch: `on`, `true` or `1`, or `off`, `false` or `0`"),
                ),
            ],
        );
        check(
            |v| v.addr("X", "127.0.0.1:3000"),
            &[
                (None, Ok("127.0.0.1:3000")),
                (Some("[::1]:80"), Ok("[::1]:80")),
                (
                    Some("localhost"),
                    Err(
                        "X `localhost` is not an IP address and port, e.g. 127.0.0.1:3000: \
                         invalid socket address syntax",
                    ),
                ),
            ],
        );
        check(
            |v| v.addr_or_off("X", "127.0.0.1:9103"),
            &[
                (Some(" off "), Ok("None")),
                (
                    Some("OFF"),
                    Err(
                        "X `OFF` is not an IP address and port, or `off`, e.g. 127.0.0.1:9103: invalid socket address syntax",
                    ),
                ),
                (Some("[::]:0"), Ok("Some([::]:0)")),
                (None, Ok("Some(127.0.0.1:9103)")),
                (
                    Some("9103"),
                    Err(
                        "X `9103` is not an IP address and port, or `off`, e.g. 127.0.0.1:9103: \
                         invalid socket address syntax",
                    ),
                ),
            ],
        );
        check(
            |v| v.parse::<SocketAddr>("X", "an IP address and port, e.g. 127.0.0.1:53"),
            &[
                (None, Ok("None")),
                (Some("10.0.0.2:53"), Ok("Some(10.0.0.2:53)")),
                (
                    Some("dns"),
                    Err("X `dns` is not an IP address and port, e.g. 127.0.0.1:53: \
                         invalid socket address syntax"),
                ),
            ],
        );
        check(
            |v| {
                v.parse_with("X", "a word of two letters, e.g. ab", |value| {
                    if value.len() == 2 {
                        Ok(value.to_uppercase())
                    } else {
                        Err(format!("{} letters", value.len()))
                    }
                })
            },
            &[
                (Some("ab"), Ok("Some(\"AB\")")),
                (
                    Some("abc"),
                    Err("X `abc` is not a word of two letters, e.g. ab: 3 letters"),
                ),
            ],
        );
    }

    #[test]
    fn secrets_are_kept_as_written_and_never_shown() {
        check(
            |v| {
                v.secret("X", 4)
                    .map(|s| s.map(|s| s.expose_secret().to_owned()))
            },
            &[
                (None, Ok("None")),
                (Some("  "), Ok("None")),
                (Some(" abcd\n"), Ok("Some(\" abcd\\n\")")),
                (
                    Some(" abc "),
                    Err(
                        "X is too short (3 characters); use at least 4, e.g. the output of \
                         `openssl rand -base64 48`",
                    ),
                ),
            ],
        );
        check(
            |v| v.required_secret("X", 4, "it seals the keys").map(|_| ()),
            &[
                (Some("abcd"), Ok("()")),
                (None, Err("X is not set; it seals the keys")),
            ],
        );
    }

    #[test]
    fn the_log_format_is_read_alike_everywhere() {
        check_var(
            "KILN_LOG_FORMAT",
            |v| v.log_format(),
            &[
                (None, Ok("Pretty")),
                (Some(" "), Ok("Pretty")),
                (Some(" json "), Ok("Json")),
                (
                    Some("xml"),
                    Err("KILN_LOG_FORMAT `xml` is not `pretty` or `json`"),
                ),
            ],
        );
    }

    #[test]
    fn the_allowed_private_nets_are_grants() {
        check_var(
            "KILN_ALLOWED_PRIVATE_NETS",
            |v| {
                v.allowed_private_nets().map(|policy| {
                    let t1 = policy.for_tenant(Some("t-1"));
                    ["10.1.2.3:80", "127.0.0.1:5173", "127.0.0.1:5174"]
                        .map(|addr| t1.permits(addr.parse().unwrap()))
                })
            },
            &[
                (None, Ok("[false, false, false]")),
                (
                    Some("10.0.0.0/8@*, 127.0.0.1:5173@t-1"),
                    Ok("[true, true, false]"),
                ),
                (
                    Some("lan"),
                    Err(
                        "KILN_ALLOWED_PRIVATE_NETS `lan` is not a list of NET[:PORTS][@SCOPE] grants, e.g. 10.0.0.5:8080, \
                         10.1.0.0/16:80-443@*: `lan` is not NET[:PORTS][@SCOPE], such as \
                         127.0.0.1:5173, 10.0.0.0/8:80-443@* or [fd00::/8]:8080@<tenant id>",
                    ),
                ),
            ],
        );
    }

    #[test]
    fn a_lookup_that_fails_names_the_variable_and_keeps_its_error() {
        let vars = Vars::try_new(|name| {
            if name == "X" {
                Err("not valid UTF-8")
            } else {
                Ok(None)
            }
        });
        let error = vars.or("X", "default").unwrap_err();
        assert_eq!(error.to_string(), "X cannot be read");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("not valid UTF-8")
        );
        assert_eq!(vars.or("Y", "default").unwrap(), "default");
    }

    #[test]
    fn a_program_s_own_check_reads_like_the_others() {
        let error = VarError::invalid(
            "KILN_REDIS_URL",
            "http://cache",
            "a redis:// URL, e.g. redis://127.0.0.1:6379",
        );
        assert_eq!(
            error.to_string(),
            "KILN_REDIS_URL `http://cache` is not a redis:// URL, e.g. redis://127.0.0.1:6379"
        );
    }
}
