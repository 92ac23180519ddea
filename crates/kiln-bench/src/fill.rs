//! Filling Redis as the control plane, workers and gateways do, and timing the page index.

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use kiln_core::job::RenderPurpose;
use kiln_core::{
    CacheKey, DeviceClass, DomainConfig, DomainSettings, Hostname, NormalizedUrl, RenderJob,
    RenderVia, ResourceBlocking,
};
use kiln_queue::{QueueSettings, RenderQueue};
use kiln_store::{ContentEncoding, PageEntry, PageMeta, Store, StoreSettings};
use std::time::{Duration, Instant};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

pub struct Redis {
    pub url: String,
    pub prefix: String,
}

impl Redis {
    async fn store(&self, pool_size: usize) -> anyhow::Result<Store> {
        let mut settings = StoreSettings::new(self.url.clone(), self.prefix.clone());
        // A batch job, not a request path: patient commands, several connections.
        settings.command_timeout = Duration::from_secs(60);
        settings.pool_size = pool_size;
        Store::connect(settings)
            .await
            .context("connecting to Redis")
    }
}

/// The id of the `n`th benchmark domain: a UUID, as the dashboard's are.
fn domain_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn domain(n: u64, host: &str, origin: &str) -> anyhow::Result<DomainConfig> {
    Ok(DomainConfig {
        id: domain_id(n),
        // A few hundred tenants, as a platform with many customers has.
        tenant_id: format!("00000000-0000-4000-9000-{:012}", n % 500),
        host: Hostname::parse(host).with_context(|| format!("hostname {host}"))?,
        origin: origin.to_owned(),
        verified: true,
        settings: DomainSettings {
            // Load generators come from few addresses: no per-address bot limit.
            bot_rate_per_second: 0,
            bot_wait_ms: 120_000,
            render_timeout_ms: 30_000,
            ..DomainSettings::default()
        },
        service_only: false,
    })
}

fn host_of(n: u64) -> String {
    format!("d{n}.capacity.test")
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// How many domains (`d0.capacity.test` …).
    #[arg(long)]
    count: u64,
    /// Every domain's origin.
    #[arg(long)]
    origin: String,
    /// Besides, domains `HOST` published with ids from 1,000,000,000 on (e.g. the demo's host).
    #[arg(long = "extra-host")]
    extra_hosts: Vec<String>,
}

pub async fn publish(redis: &Redis, args: PublishArgs) -> anyhow::Result<()> {
    let store = redis.store(1).await?;
    let mut domains = Vec::with_capacity(args.count as usize + args.extra_hosts.len());
    for n in 0..args.count {
        domains.push(domain(n, &host_of(n), &args.origin)?);
    }
    for (i, host) in args.extra_hosts.iter().enumerate() {
        domains.push(domain(1_000_000_000 + i as u64, host, &args.origin)?);
    }
    let started = Instant::now();
    let published = store.directory().publish(&domains).await?;
    println!("publish_domains={}", domains.len());
    println!("publish_ms={}", started.elapsed().as_millis());
    println!("publish_batches={}", published.batches);
    println!("publish_batch_domains={}", kiln_store::PUBLISH_BATCH);
    println!(
        "publish_largest_batch_bytes={}",
        published.largest_batch_bytes
    );
    println!("publish_dropped={}", published.dropped.len());
    Ok(())
}

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Timed reads (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub async fn read_directory(redis: &Redis, args: ReadArgs) -> anyhow::Result<()> {
    let store = redis.store(1).await?;
    let directory = store.directory();
    let (ms, read) = median_ms(args.runs, || directory.read()).await?;
    println!("read_domains={}", read.domains.len());
    println!("read_ms={ms:.0}");
    Ok(())
}

#[derive(clap::Args)]
pub struct PutDomainArgs {
    #[arg(long)]
    host: String,
    #[arg(long)]
    origin: String,
    /// The domain's number (its id is derived from it).
    #[arg(long, default_value_t = 2_000_000_000)]
    number: u64,
}

pub async fn put_domain(redis: &Redis, args: PutDomainArgs) -> anyhow::Result<()> {
    let store = redis.store(1).await?;
    store
        .directory()
        .put(&domain(args.number, &args.host, &args.origin)?)
        .await?;
    Ok(())
}

#[derive(clap::Args)]
pub struct PagesArgs {
    /// The rendered HTML every page holds (uncompressed, as the worker has it).
    #[arg(long)]
    html: std::path::PathBuf,
    /// Pages in all.
    #[arg(long)]
    total: u64,
    /// Of which this many on domain 0 (the big one).
    #[arg(long)]
    big_domain_pages: u64,
    /// The other pages spread evenly over this many more domains (1 …).
    #[arg(long, default_value_t = 900)]
    domains: u64,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// The domains' default fresh and stale windows.
    #[arg(long, default_value_t = 3600)]
    fresh_secs: u64,
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    stale_secs: u64,
}

/// The page as the worker hands it to `Pages::put`; compressed here once, since `put` stores an
/// entry that is already compressed as it is (what it would make of this HTML, byte for byte).
fn entry_for(html: &[u8], gz: &Bytes, url: String) -> PageEntry {
    use sha2::Digest;
    PageEntry {
        html: gz.clone(),
        meta: PageMeta {
            status: 200,
            headers: vec![(
                "content-type".to_owned(),
                "text/html; charset=utf-8".to_owned(),
            )],
            url,
            rendered_at: kiln_core::unix_millis_now(),
            render_ms: 780,
            expires_at: 0,
            fresh_until: 0,
            encoding: ContentEncoding::Gzip,
            length: html.len() as u64,
            etag: hex::encode(&sha2::Sha256::digest(html)[..8]),
        },
    }
}

fn gzip(html: &[u8]) -> anyhow::Result<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(html)?;
    Ok(Bytes::from(encoder.finish()?))
}

/// The `i`th page's path on its domain: `/p/000042`, so that `/p/01` covers 10,000 pages.
fn page_path(i: u64) -> String {
    format!("/p/{i:06}")
}

pub async fn pages(redis: &Redis, args: PagesArgs) -> anyhow::Result<()> {
    let html = std::fs::read(&args.html).with_context(|| format!("reading {:?}", args.html))?;
    let gz = gzip(&html)?;
    println!("page_bytes={}", html.len());
    println!("page_gzip_bytes={}", gz.len());
    let store = redis.store(8).await?;
    let pages = store.pages();
    let others = args.total.saturating_sub(args.big_domain_pages);
    let per_other = others.div_ceil(args.domains.max(1));
    let started = Instant::now();
    let writes = futures::stream::iter(0..args.total).map(|i| {
        let (n, page) = if i < args.big_domain_pages {
            (0, i)
        } else {
            let j = i - args.big_domain_pages;
            (1 + j / per_other, j % per_other)
        };
        let url = format!("https://{}{}", host_of(n), page_path(page));
        let key = CacheKey::new(
            &domain_id(n),
            DeviceClass::Desktop,
            &NormalizedUrl::from_stored(url.clone()),
        );
        let entry = entry_for(&html, &gz, url);
        let pages = pages.clone();
        let (fresh, stale) = (args.fresh_secs, args.stale_secs);
        async move { pages.put(&key, &entry, fresh, stale).await }
    });
    let mut writes = writes.buffer_unordered(args.concurrency);
    let mut done = 0u64;
    while let Some(result) = writes.next().await {
        result?;
        done += 1;
        if done.is_multiple_of(100_000) {
            eprintln!(
                "  {done} pages written, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("pages_written={done}");
    println!("pages_seconds={seconds:.1}");
    println!("pages_per_second={:.0}", done as f64 / seconds);
    Ok(())
}

#[derive(clap::Args)]
pub struct IndexArgs {
    /// The domain's number (0: the big one of `pages`).
    #[arg(long, default_value_t = 0)]
    domain: u64,
    /// Timed runs of each read (the median is printed).
    #[arg(long, default_value_t = 9)]
    runs: usize,
}

/// Median of `runs` timings of `f`, in milliseconds.
async fn median_ms<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kiln_store::Result<T>>,
{
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let value = f().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        last = Some(value);
    }
    times.sort_by(f64::total_cmp);
    let value = last.context("no run")?;
    Ok((times[times.len() / 2], value))
}

pub async fn index(redis: &Redis, args: IndexArgs) -> anyhow::Result<()> {
    let store = redis.store(1).await?;
    let pages = store.pages();
    let id = domain_id(args.domain);
    let now = kiln_core::unix_millis_now();

    let (ms, count) = median_ms(args.runs, || pages.count(&id, now)).await?;
    println!("count_pages={count}");
    println!("count_ms={ms:.2}");

    // The dashboard's page of the list: 50 entries (its default), first and deep in the index.
    let (ms, first) = median_ms(args.runs, || pages.list(&id, "", None, 50)).await?;
    println!("list_first_pages={}", first.pages.len());
    println!("list_first_ms={ms:.2}");
    let middle = hex::encode(page_path(count / 2));
    let (ms, deep) = median_ms(args.runs, || pages.list(&id, "", Some(&middle), 50)).await?;
    println!("list_deep_pages={}", deep.pages.len());
    println!(
        "list_deep_first_url={}",
        deep.pages.first().map_or("", |p| p.url.as_str())
    );
    println!("list_deep_ms={ms:.2}");
    let (ms, full) = median_ms(args.runs, || pages.list(&id, "", Some(&middle), 1000)).await?;
    println!("list_deep_1000_pages={}", full.pages.len());
    println!("list_deep_1000_ms={ms:.2}");
    let (ms, prefixed) = median_ms(args.runs, || pages.list(&id, "/p/05", None, 50)).await?;
    println!("list_prefix_pages={}", prefixed.pages.len());
    println!("list_prefix_ms={ms:.2}");

    let started = Instant::now();
    let purged = pages.purge_prefix(&id, "/p/01").await?;
    println!("purge_prefix_pages={purged}");
    println!(
        "purge_prefix_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );

    let started = Instant::now();
    let purged = pages.purge_domain(&id).await?;
    println!("purge_domain_pages={purged}");
    println!(
        "purge_domain_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct QueueArgs {
    /// Jobs to push.
    #[arg(long)]
    jobs: u64,
}

pub async fn queue(redis: &Redis, args: QueueArgs) -> anyhow::Result<()> {
    let settings = QueueSettings::new(
        redis.url.clone(),
        redis.prefix.clone(),
        Duration::from_secs(10),
    );
    let queue = RenderQueue::connect(&settings).await?;
    let started = Instant::now();
    for i in 0..args.jobs {
        let n = i % 1000;
        let url = format!("https://{}/products/{i}?ref=capacity", host_of(n));
        let page_url = NormalizedUrl::from_stored(url.clone());
        let job = RenderJob {
            key: CacheKey::new(&domain_id(n), DeviceClass::Desktop, &page_url),
            tenant_id: format!("00000000-0000-4000-9000-{:012}", n % 500),
            page_url,
            render_url: format!("https://origin.d{n}.capacity.test/products/{i}?ref=capacity"),
            device: DeviceClass::Desktop,
            cache_ttl_secs: 3600,
            stale_ttl_secs: 7 * 24 * 3600,
            render_timeout_ms: 10_000,
            enqueued_at: kiln_core::unix_millis_now(),
            request_id: Some(format!("0193b7c2-capacity-{i:012}")),
            blocking: ResourceBlocking::default(),
            purpose: RenderPurpose::Bot,
            user_agent: Some(GOOGLEBOT.to_owned()),
            via: RenderVia::Edge,
        };
        queue.push(job).await?;
    }
    println!("queue_jobs={}", args.jobs);
    println!("queue_push_ms={}", started.elapsed().as_millis());
    Ok(())
}

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Domains counted.
    #[arg(long)]
    domains: u64,
    /// The UTC day counted (`YYYY-MM-DD`).
    #[arg(long, default_value = "2026-01-01")]
    day: String,
    /// Timed reads of the whole day (`Usage::day`, the dashboard's copier's read; the median is
    /// printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Domains in one batch: about what a busy gateway sends in a second.
const USAGE_BATCH_DOMAINS: usize = 10_000;

/// A whole day of a busy domain's counters: every kind in every hour, as gateways and workers add
/// them (numbered batches, `Usage::add_batch`). Then the day read back whole, as the dashboard's
/// copier reads it every few seconds, on a connection with the store's default command timeout
/// (500 ms), which no command of the read may take.
pub async fn usage(redis: &Redis, args: UsageArgs) -> anyhow::Result<()> {
    use kiln_store::{UsageBatch, UsageHour, UsageKind};
    use std::collections::BTreeMap;
    let store = redis.store(4).await?;
    let usage = store.usage();
    let started = Instant::now();
    let ids: Vec<String> = (0..args.domains).map(domain_id).collect();
    let mut seq = 0;
    for hour in 0..24u8 {
        let at = UsageHour::new(&args.day, hour).context("hour")?;
        for chunk in ids.chunks(USAGE_BATCH_DOMAINS) {
            let counts: Vec<(String, UsageKind, u64)> = chunk
                .iter()
                .zip(0u64..)
                .flat_map(|(id, n)| {
                    UsageKind::ALL
                        .into_iter()
                        .map(move |kind| (id.clone(), kind, 1 + n % 7))
                })
                .collect();
            seq += 1;
            let batch = UsageBatch {
                writer: "kiln-capacity".to_owned(),
                seq,
                hours: BTreeMap::from([(at.clone(), counts)]),
            };
            usage.add_batch(&batch).await?;
        }
    }
    println!("usage_domains={}", args.domains);
    println!("usage_ms={}", started.elapsed().as_millis());

    let reader = Store::connect(StoreSettings::new(redis.url.clone(), redis.prefix.clone()))
        .await
        .context("connecting to Redis")?
        .usage();
    let (ms, day) = median_ms(args.runs, || reader.day(&args.day)).await?;
    anyhow::ensure!(
        day.totals.len() as u64 == args.domains,
        "the day's read found {} domains of {}",
        day.totals.len(),
        args.domains
    );
    println!("usage_read_domains={}", day.totals.len());
    println!("usage_read_ms={ms:.0}");
    Ok(())
}
