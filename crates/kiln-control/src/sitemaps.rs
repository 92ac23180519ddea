//! Fetching a domain's sitemaps for cache warming, from the domain's origin and nowhere else.
//!
//! A sitemap URL names the public host (`https://shop.example.com/sitemap.xml`); the request goes
//! to the same path on the domain's registered origin, like a render would. Every address the
//! origin resolves to is checked when connecting (public, or granted to the domain's tenant at the
//! origin's port by `KILN_ALLOWED_PRIVATE_NETS`, and never one of Kiln's own services), since DNS may
//! have changed since the domain was registered; redirects are not followed.
//!
//! The client is `kiln_origin`'s, the gateway's origin client, with its default settings.

use crate::db::DomainRecord;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, Limited};
use kiln_core::EgressPolicy;
use kiln_origin::{ClientSettings, OriginHttp};
use kiln_sitemap::{Fetch, FetchError};
use std::time::Duration;
use url::Url;

/// How long one sitemap file may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("Kiln/", env!("CARGO_PKG_VERSION"), " (sitemap reader)");

/// What sitemap fetches may reach. Cheap to clone.
#[derive(Clone)]
pub struct SitemapFetcher {
    policy: EgressPolicy,
}

impl SitemapFetcher {
    /// `policy`: `KILN_ALLOWED_PRIVATE_NETS` with Kiln's own endpoints.
    pub fn new(policy: EgressPolicy) -> anyhow::Result<Self> {
        Ok(SitemapFetcher { policy })
    }

    /// A fetcher that reads `domain`'s sitemaps from its origin, with a client of its own: its
    /// resolver keeps the addresses the domain's tenant may reach at the origin's port.
    pub fn for_domain(&self, domain: &DomainRecord) -> DomainFetcher {
        let tenant = domain.tenant_id.to_string();
        let tenant = self.policy.has_own_grants(&tenant).then_some(tenant);
        let policy = self.policy.for_tenant(tenant.as_deref());
        let port = Url::parse(&domain.origin)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(80);
        DomainFetcher {
            client: kiln_origin::client(policy, port, &ClientSettings::default()),
            host: domain.host.to_string(),
            origin: domain.origin.clone(),
        }
    }
}

pub struct DomainFetcher {
    client: OriginHttp<Empty<Bytes>>,
    host: String,
    origin: String,
}

impl DomainFetcher {
    async fn get(&self, url: &Url, max_bytes: usize) -> Result<Bytes, FetchError> {
        if url.host_str() != Some(self.host.as_str()) {
            return Err(FetchError::new(format!("{url} is not on {}", self.host)));
        }
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let origin_url = format!("{}{target}", self.origin.trim_end_matches('/'));
        let request = Request::get(origin_url.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::new())
            .map_err(|e| FetchError::with_source("the request could not be built", e))?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, async {
            let response = self.client.request(request).await.map_err(|e| {
                let what = if kiln_origin::is_refusal(&e) {
                    "the origin's address is not one Kiln may reach (see KILN_ALLOWED_PRIVATE_NETS)"
                } else {
                    "the origin did not answer"
                };
                FetchError::with_source(what, e)
            })?;
            let status = response.status();
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                return Err(FetchError::new(format!(
                    "the origin redirects it ({status}) to {to}; give the final sitemap URL"
                )));
            }
            if !status.is_success() {
                return Err(FetchError::new(format!("the origin answered {status}")));
            }
            Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::new(format!("it is larger than {max_bytes} bytes"))
                    } else {
                        FetchError::with_source("reading it failed", e)
                    }
                })
        })
        .await
        .map_err(|_| {
            FetchError::new(format!(
                "the origin did not send it within {} s",
                FETCH_TIMEOUT.as_secs()
            ))
        })??;
        Ok(response)
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
