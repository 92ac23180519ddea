//! A domain's request rules in matching form: which paths are rendered for bots, and which extra
//! User-Agents count as bots. Built once per published domain, consulted on every request.
//!
//! Path patterns are deliberately tiny globs: `*` matches any run of characters (including `/`) and
//! every other character is literal. That is all customers need (`/blog/*`, `*.pdf`, `/admin*`), and
//! a general glob crate would make `?`, `[`, `{` and `\` special in text customers expect to be
//! literal, and compile up to 200 patterns into a regex set per domain. A `*`-only glob is matched by
//! placing its literal pieces leftmost-first, which is linear in the path and cannot backtrack
//! (no ReDoS from customer input).

use crate::DomainSettings;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// What a browser escapes in a path: controls, non-ASCII, and the few printable characters a path
/// cannot carry as they are.
const NOT_IN_PATHS: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');

/// One compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// The literal pieces between the `*`s: `/blog/*.html` is `["/blog/", ".html"]`, so a pattern
    /// without any `*` has one piece and `*` alone has two empty ones.
    pieces: Vec<String>,
}

impl PathPattern {
    /// Compiles `pattern`. Request paths arrive percent-encoded, so characters that cannot appear
    /// in one as they are (`/café/*`) are encoded the way browsers encode them (`/caf%C3%A9/*`).
    pub fn new(pattern: &str) -> Self {
        PathPattern {
            pieces: pattern
                .split('*')
                .map(|piece| utf8_percent_encode(piece, NOT_IN_PATHS).to_string())
                .collect(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("split yields one piece");
        let Some(mut remaining) = path.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No `*`: the pattern is the whole path.
            return remaining.is_empty();
        };
        // Leftmost placement of each middle piece leaves the most room for the ones after it, so
        // if any placement matches, this one does.
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

/// Which request paths a domain renders for bots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathRules {
    include: Vec<PathPattern>,
    exclude: Vec<PathPattern>,
}

impl PathRules {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        let compile = |patterns: &[String]| patterns.iter().map(|p| PathPattern::new(p)).collect();
        PathRules {
            include: compile(include),
            exclude: compile(exclude),
        }
    }

    /// Whether a bot's request for `path` (no query) is rendered: it matches an include pattern, or
    /// there are none, and it matches no exclude pattern.
    pub fn renders(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(path)))
            && !self.exclude.iter().any(|p| p.matches(path))
    }
}

/// A domain's own bot User-Agent patterns: case-insensitive substrings. Substrings rather than
/// regular expressions, because the patterns come from customers and run on every person's request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotAgents {
    /// Lower-cased once here, so a request lower-cases only its own User-Agent.
    patterns: Vec<String>,
}

impl BotAgents {
    pub fn new(patterns: &[String]) -> Self {
        BotAgents {
            // An empty pattern would match every person; validation refuses it, and so does this,
            // in case an unvalidated record was published.
            patterns: patterns
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn matches(&self, user_agent: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let user_agent = user_agent.to_ascii_lowercase();
        self.patterns
            .iter()
            .any(|p| user_agent.contains(p.as_str()))
    }
}

impl DomainSettings {
    /// The path rules in matching form; build once per domain, not per request.
    pub fn path_rules(&self) -> PathRules {
        PathRules::new(&self.include_paths, &self.exclude_paths)
    }

    /// The extra bot patterns in matching form; build once per domain, not per request.
    pub fn bot_agents(&self) -> BotAgents {
        BotAgents::new(&self.bot_user_agents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        #[track_caller]
        fn check(pattern: &str, path: &str, expected: bool) {
            assert_eq!(
                PathPattern::new(pattern).matches(path),
                expected,
                "{pattern:?} against {path:?}"
            );
        }
        check("/blog/*", "/blog/", true);
        check("/blog/*", "/blog/a/b/c", true);
        check("/blog/*", "/blog", false);
        check("/blog/*", "/blogger/x", false);
        check("*.pdf", "/docs/a.pdf", true);
        check("*.pdf", "/docs/a.pdf/view", false);
        check("*.pdf", "/docs/a.PDF", false);
        check("/admin*", "/admin", true);
        check("/admin*", "/administrator/x", true);
        check("/admin*", "/x/admin", false);
        check("/about", "/about", true);
        check("/about", "/about/", false);
        check("/about", "/", false);
        check("*", "/", true);
        check("*", "/anything/at/all", true);
        check("/a/*/c", "/a/b/c", true);
        check("/a/*/c", "/a/b/x/c", true);
        check("/a/*/c", "/a/c", false);
        check("/a*b*c", "/abc", true);
        check("/a*b*c", "/a-c-b", false);
        check("/a*b*c", "/axbyc", true);
        check("*/p/*/edit", "/shop/p/42/edit", true);
        check("*/p/*/edit", "/shop/p/42/view", false);
        // Overlapping pieces: the suffix must not reuse characters the prefix consumed.
        check("/ab*ba", "/aba", false);
        check("/ab*ba", "/abba", true);
        check("**", "/x", true);
        // Everything but `*` is literal.
        check("/search?q", "/search?q", true);
        check("/a?c", "/abc", false);
        check("/[id]", "/[id]", true);
        check("/[id]", "/i", false);
        check("/{a,b}", "/a", false);
        check("/caf%C3%A9/*", "/caf%C3%A9/menu", true);
        check("/café/*", "/caf%C3%A9/menu", true);
        check("/a b", "/a%20b", true);
    }

    #[test]
    fn path_rules_combine_include_and_exclude() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        #[track_caller]
        fn check(rules: &PathRules, path: &str, expected: bool) {
            assert_eq!(rules.renders(path), expected, "{path:?} with {rules:?}");
        }
        let everything = PathRules::new(&[], &[]);
        check(&everything, "/", true);
        check(&everything, "/any/page", true);

        let excluding = PathRules::new(&[], &strings(&["/admin*", "*.pdf"]));
        check(&excluding, "/products/1", true);
        check(&excluding, "/admin", false);
        check(&excluding, "/admin/users", false);
        check(&excluding, "/files/a.pdf", false);

        let including = PathRules::new(&strings(&["/blog/*", "/"]), &strings(&["/blog/drafts/*"]));
        check(&including, "/", true);
        check(&including, "/blog/post", true);
        check(&including, "/blog/drafts/x", false);
        check(&including, "/shop", false);
    }

    #[test]
    fn bot_agents_match_case_insensitive_substrings() {
        let agents = BotAgents::new(&["MyCrawler".to_owned(), "screaming frog".to_owned()]);
        #[track_caller]
        fn check(agents: &BotAgents, ua: &str, expected: bool) {
            assert_eq!(agents.matches(ua), expected, "{ua:?}");
        }
        check(&agents, "Mozilla/5.0 (compatible; MyCrawler/1.0)", true);
        check(&agents, "mozilla/5.0 mycrawler", true);
        check(&agents, "Screaming Frog SEO Spider/19.0", true);
        check(
            &agents,
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0",
            false,
        );
        check(&agents, "", false);
        check(&agents, "My Crawler", false);
        // Regular-expression syntax is literal text.
        let literal = BotAgents::new(&["a.b".to_owned()]);
        check(&literal, "axb", false);
        check(&literal, "xa.bx", true);
        // Nothing, or only empty patterns, matches nobody.
        check(&BotAgents::new(&[]), "anything", false);
        check(&BotAgents::new(&[String::new()]), "anything", false);
    }
}
