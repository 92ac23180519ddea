//! Integration tests for `kiln-sitemap`: `collect` walking sitemaps served by an in-memory fetcher.

mod collect;
mod helpers;
