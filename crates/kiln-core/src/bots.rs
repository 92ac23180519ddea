//! Which User-Agents are bots, and of which family: the same answer the nginx edge gives.
//!
//! Both read one data file, `nginx/bots.map`: nginx includes it inside a `map` block, and this module
//! compiles it into the binary and reads it the way nginx does. Each entry is a pattern and a
//! family:
//!
//! ```text
//! ~*googlebot search;                 # `~*`: a case-insensitive regular expression, found anywhere
//! "~*screaming frog" seo;             # quoted when it holds a space, `;` or `{`
//! ~*^whatsapp/ social;                # anchored with `^`
//! ```
//!
//! As in an nginx `map`, the patterns are tried in the file's order and the first match decides.
//! They are written in the common subset of PCRE (nginx) and the `regex` crate's syntax; the
//! tests compile every one and run a table of real User-Agents through nginx and through this
//! module, which must agree.
//!
//! nginx's PCRE runs without UTF-8 mode: it matches bytes, `~*` folds ASCII case only and `\b` is
//! an ASCII word boundary. The patterns are compiled the same way here (bytes, Unicode off), which
//! also keeps matching fast on any input: with Unicode word boundaries the regex crate's DFA gives
//! up on the first non-ASCII byte, and a User-Agent of 8 KiB of `é` took milliseconds (found by the
//! `user_agent` fuzz target).

use regex::bytes::{RegexBuilder, RegexSet, RegexSetBuilder};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// The data file, as nginx reads it.
pub const BOTS_MAP: &str = include_str!("../../../nginx/bots.map");

/// What kind of client a bot is. Domains choose which families get renders.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BotFamily {
    /// Search engines' crawlers.
    Search,
    /// Social networks' and chat apps' link unfurlers.
    Social,
    /// AI crawlers and AI assistants' fetchers.
    Ai,
    /// SEO tools.
    Seo,
    /// Uptime monitors, validators and other tools.
    Monitoring,
}

impl BotFamily {
    pub const ALL: [BotFamily; 5] = [
        BotFamily::Search,
        BotFamily::Social,
        BotFamily::Ai,
        BotFamily::Seo,
        BotFamily::Monitoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BotFamily::Search => "search",
            BotFamily::Social => "social",
            BotFamily::Ai => "ai",
            BotFamily::Seo => "seo",
            BotFamily::Monitoring => "monitoring",
        }
    }
}

impl fmt::Display for BotFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BotFamily {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BotFamily::ALL
            .into_iter()
            .find(|family| family.as_str() == s)
            .ok_or_else(|| {
                format!("unknown bot family {s:?} (search, social, ai, seo or monitoring)")
            })
    }
}

/// What is wrong with a line of the data file.
#[derive(Debug, thiserror::Error)]
#[error("bots.map line {line}: {message}")]
pub struct BotsMapError {
    pub line: usize,
    pub message: String,
}

/// The classifier built from a data file.
#[derive(Debug)]
pub struct BotClassifier {
    patterns: RegexSet,
    families: Vec<BotFamily>,
    version: String,
}

/// The longest User-Agent looked at: nginx refuses larger headers anyway, and nothing a bot sends
/// is this long.
pub(crate) const MAX_USER_AGENT: usize = 8 * 1024;

impl BotClassifier {
    /// The classifier of the compiled-in `nginx/bots.map`.
    pub fn shared() -> &'static BotClassifier {
        static SHARED: LazyLock<BotClassifier> = LazyLock::new(|| {
            BotClassifier::parse(BOTS_MAP).expect("nginx/bots.map is checked by the tests")
        });
        &SHARED
    }

    /// Reads a data file in the `bots.map` format.
    pub fn parse(text: &str) -> Result<BotClassifier, BotsMapError> {
        let mut patterns = Vec::new();
        let mut families = Vec::new();
        let mut version = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| BotsMapError { line, message };
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some(v) = comment.trim().strip_prefix("version:") {
                    version = Some(v.trim().to_owned());
                }
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            let (key, rest) = split_key(trimmed).map_err(error)?;
            let value = rest
                .trim()
                .strip_suffix(';')
                .ok_or_else(|| error("an entry ends with `;`".into()))?
                .trim();
            let family: BotFamily = value.parse().map_err(error)?;
            let pattern = if let Some(regex) = key.strip_prefix("~*") {
                format!("(?i){regex}")
            } else if let Some(regex) = key.strip_prefix('~') {
                regex.to_owned()
            } else {
                format!("^{}$", regex::escape(key))
            };
            compile(&pattern)
                .map_err(|e| error(format!("the pattern {key:?} does not compile: {e}")))?;
            patterns.push(pattern);
            families.push(family);
        }
        let version = version.ok_or_else(|| BotsMapError {
            line: 1,
            message: "no `# version:` line".into(),
        })?;
        let patterns = RegexSetBuilder::new(&patterns)
            .unicode(false)
            .build()
            .map_err(|e| BotsMapError {
                line: 0,
                message: e.to_string(),
            })?;
        Ok(BotClassifier {
            patterns,
            families,
            version,
        })
    }

    /// The family of the bot `user_agent` belongs to, or `None` for everyone else (people, and
    /// clients deliberately not listed such as curl or headless Chrome). An empty User-Agent is not
    /// a bot's.
    pub fn classify(&self, user_agent: &str) -> Option<BotFamily> {
        let mut end = user_agent.len().min(MAX_USER_AGENT);
        while !user_agent.is_char_boundary(end) {
            end -= 1;
        }
        let first = self
            .patterns
            .matches(&user_agent.as_bytes()[..end])
            .iter()
            .next()?;
        Some(self.families[first])
    }

    /// The data file's `# version:`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many patterns it holds.
    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// The `index`th pattern (as compiled) and its family.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn entry(&self, index: usize) -> (&str, BotFamily) {
        (&self.patterns.patterns()[index], self.families[index])
    }
}

/// Compiles one pattern as nginx's PCRE reads it (see the module's documentation).
pub(crate) fn compile(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    RegexBuilder::new(pattern).unicode(false).build()
}

/// Splits an entry into its key (unquoted) and the rest, as nginx's parser does: a key in double
/// quotes ends at the closing quote, a bare one at the first space.
fn split_key(line: &str) -> Result<(&str, &str), String> {
    if let Some(quoted) = line.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| "a quoted pattern has no closing quote".to_owned())?;
        Ok((&quoted[..end], &quoted[end + 1..]))
    } else {
        let end = line
            .find(char::is_whitespace)
            .ok_or_else(|| "an entry is a pattern, a space and a family".to_owned())?;
        Ok((&line[..end], &line[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_file_reads_and_every_family_is_present() {
        let classifier = BotClassifier::shared();
        assert!(classifier.len() > 150, "{}", classifier.len());
        assert!(!classifier.version().is_empty());
        for family in BotFamily::ALL {
            assert!(
                classifier.families.contains(&family),
                "no pattern of family {family}"
            );
        }
    }

    /// The table of real User-Agents the edge is tested against too.
    pub(crate) fn user_agent_table() -> Vec<(Option<BotFamily>, &'static str)> {
        include_str!("../../../nginx/tests/user-agents.tsv")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (expected, user_agent) = line.split_once('\t').expect("tab-separated");
                let expected = (expected != "-").then(|| expected.parse().unwrap());
                (expected, user_agent)
            })
            .collect()
    }

    #[test]
    fn real_user_agents_get_their_family_and_browsers_none() {
        let table = user_agent_table();
        for family in BotFamily::ALL {
            assert!(
                table.iter().any(|(expected, _)| *expected == Some(family)),
                "the table has no {family} bot"
            );
        }
        assert!(
            table
                .iter()
                .filter(|(expected, _)| expected.is_none())
                .count()
                >= 20
        );
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(expected, user_agent)| {
                let got = BotClassifier::shared().classify(user_agent);
                (got != *expected).then(|| format!("{user_agent}: {got:?}, not {expected:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn the_first_matching_pattern_decides_as_in_nginx() {
        let classifier = BotClassifier::parse(
            "# version: test\n~*examplebot search;\n\"~*example bot\" seo;\n~*bot seo;\nExact/1 monitoring;\n",
        )
        .unwrap();
        assert_eq!(
            classifier.classify("ExampleBot/1.0"),
            Some(BotFamily::Search)
        );
        assert_eq!(classifier.classify("the Example Bot"), Some(BotFamily::Seo));
        assert_eq!(classifier.classify("SomeBot"), Some(BotFamily::Seo));
        assert_eq!(classifier.classify("Exact/1"), Some(BotFamily::Monitoring));
        assert_eq!(classifier.classify("Exact/1 and more"), None);
        assert_eq!(classifier.classify(""), None);
        // As in nginx's PCRE, `\b` is an ASCII word boundary and case folds in ASCII only: the
        // bytes of `é` are not word characters (the Unicode `\b` said they were).
        let words = BotClassifier::parse("# version: test\n~*\\bbot\\b seo;\n").unwrap();
        assert_eq!(words.classify("ébot/1"), Some(BotFamily::Seo));
        assert_eq!(words.classify("BOT"), Some(BotFamily::Seo));
        assert_eq!(words.classify("abot"), None);
        // A User-Agent cut at the limit inside a character is still read.
        let long = format!("{}é examplebot", "a".repeat(MAX_USER_AGENT - 1));
        assert_eq!(classifier.classify(&long), None);
    }

    #[test]
    fn mistakes_in_the_data_file_name_their_line() {
        for (text, wanted) in [
            (
                "# version: 1\n~*a search\n",
                "line 2: an entry ends with `;`",
            ),
            ("# version: 1\n~*a robots;\n", "line 2: unknown bot family"),
            ("# version: 1\n~*(a search;\n", "line 2: the pattern"),
            ("# version: 1\n\"~*a search;\n", "line 2: a quoted pattern"),
            ("~*a search;\n", "no `# version:` line"),
        ] {
            let error = BotClassifier::parse(text).unwrap_err().to_string();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
    }
}
