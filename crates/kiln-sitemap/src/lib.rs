//! Sitemap reading (work in progress).
