//! Reading a site's sitemap into the list of page URLs to pre-render ("cache warming").
//!
//! [`parse`] turns one sitemap body (XML `<urlset>` or `<sitemapindex>`, gzip or not, or the
//! protocol's plain-text form) into its `<loc>` entries. [`collect`] starts from the root sitemap,
//! follows index files breadth-first within [`Limits`], and keeps only the page URLs a warm may
//! render: http(s) URLs on the root sitemap's own host.
//!
//! Architecture invariant: this crate does no network IO of its own. The caller supplies a
//! [`Fetch`] implementation, which is where requests are routed to the customer's origin and
//! private addresses are refused; every walk is bounded by [`Limits`] (URLs, files, bytes,
//! depth) whatever the sitemaps say.

mod collect;
mod parse;

pub use collect::{
    Collected, Fetch, FetchError, Limits, SitemapError, SkipReason, Skipped, collect,
};
pub use parse::{Document, ParseError, parse};
