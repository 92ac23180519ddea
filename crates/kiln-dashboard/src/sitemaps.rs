//! Fetching a domain's sitemaps for cache warming, from the domain's origin and nowhere else.
//!
//! A sitemap URL names the public host (`https://shop.example.com/sitemap.xml`); the request goes
//! to the same path on the domain's registered origin, like a render would. Every address the
//! origin resolves to is checked when connecting (public, or in `KILN_ALLOWED_PRIVATE_NETS`), since
//! DNS may have changed since the domain was registered; redirects are not followed.

use crate::db::DomainRecord;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use kiln_core::AllowedNets;
use kiln_sitemap::{Fetch, FetchError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long one sitemap file may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for sitemaps. Cheap to clone.
#[derive(Clone)]
pub struct SitemapFetcher {
    client: reqwest::Client,
    allowed: AllowedNets,
}

impl SitemapFetcher {
    pub fn new(allowed: AllowedNets) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider; use ring, as the gateway does. Installing
        // twice is harmless (the first wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: allowed.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!(
                "Kiln/",
                env!("CARGO_PKG_VERSION"),
                " (sitemap reader)"
            ))
            .build()?;
        Ok(SitemapFetcher { client, allowed })
    }

    /// A fetcher that reads `domain`'s sitemaps from its origin.
    pub fn for_domain(&self, domain: &DomainRecord) -> DomainFetcher {
        DomainFetcher {
            fetcher: self.clone(),
            host: domain.host.to_string(),
            origin: domain.origin.clone(),
        }
    }
}

pub struct DomainFetcher {
    fetcher: SitemapFetcher,
    host: String,
    origin: String,
}

impl DomainFetcher {
    async fn get(&self, url: &Url, max_bytes: usize) -> Result<Bytes, FetchError> {
        if url.host_str() != Some(self.host.as_str()) {
            return Err(FetchError(format!("{url} is not on {}", self.host)));
        }
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let origin_url = format!("{}{target}", self.origin.trim_end_matches('/'));
        let parsed = Url::parse(&origin_url).map_err(|e| FetchError(e.to_string()))?;
        // An IP-literal origin never reaches the resolver, so it is checked here.
        if let Some(url::Host::Ipv4(ip)) = parsed.host() {
            self.check_ip(IpAddr::V4(ip))?;
        }
        if let Some(url::Host::Ipv6(ip)) = parsed.host() {
            self.check_ip(IpAddr::V6(ip))?;
        }
        let response = self.fetcher.client.get(parsed).send().await.map_err(|e| {
            FetchError(format!(
                "the origin did not answer: {}",
                crate::http::error_chain(&e)
            ))
        })?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(FetchError(format!(
                "the origin redirects it ({status}) to {to}; give the final sitemap URL"
            )));
        }
        if !status.is_success() {
            return Err(FetchError(format!("the origin answered {status}")));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError(format!("reading the body failed: {e}")))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError(format!("it is larger than {max_bytes} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), FetchError> {
        if self.fetcher.allowed.permits(ip) {
            Ok(())
        } else {
            Err(FetchError(format!(
                "the origin's address {ip} is not public (see KILN_ALLOWED_PRIVATE_NETS)"
            )))
        }
    }
}

impl Fetch for DomainFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a Url,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(self.get(url, max_bytes))
    }
}

/// Resolves with the system resolver and refuses the name if any address is not allowed: a
/// hostname that resolves partly to an internal address is treated as hostile, not filtered.
struct GuardedResolver {
    allowed: AllowedNets,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allowed.permits(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, which is not a public address (see KILN_ALLOWED_PRIVATE_NETS)",
                    bad.ip()
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
