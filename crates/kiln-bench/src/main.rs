//! `kiln-capacity`: the load program of `scripts/bench-capacity.sh`, which measures the unit costs
//! of `docs/capacity.md`. Each subcommand does one thing to a private Redis (or at private
//! gateways) through Kiln's own crates, exactly as the control plane, the workers and the gateways
//! do it, and prints its figures as `key=value` lines for the script to collect.
//!
//! * `publish`: a full publish of N domains (`Directory::publish`, as the dashboard does it), in
//!   place of whatever the directory held: its time, its batches and the largest.
//! * `read-directory`: the gateway's full read of the directory (`Directory::read`), timed.
//! * `put-domain`: one more domain (`Directory::put`, as the dashboard publishes a change).
//! * `pages`: N cached pages written with `Pages::put` (the worker's call: the page, its index
//!   members and expiry, in one script), many in flight at once.
//! * `index`: times the page index of one domain: listing (first and a deep page), counting,
//!   purging a prefix and the whole domain.
//! * `usage`: a day of usage counters (every kind, every hour) for N domains
//!   (`Usage::add_batch`, as gateways send them), then the day read back whole (`Usage::day`, as
//!   the dashboard's copier reads it), timed.
//! * `queue`: pushes N render jobs with `kiln_queue::RenderQueue::push`, as gateways do.
//! * `load`: a fixed, open-loop mixed load at one or more gateways: bots on cached pages, bots on
//!   never-rendered pages (cold renders) and people.

mod fill;
mod load;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kiln-capacity",
    about = "Kiln's capacity benchmark load program"
)]
struct Cli {
    /// Redis to fill or read (`KILN_REDIS_URL`).
    #[arg(long, env = "KILN_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Key prefix (`KILN_REDIS_PREFIX`).
    #[arg(long, env = "KILN_REDIS_PREFIX", default_value = "kiln:")]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publishes COUNT domains `d<n>.capacity.test` in one full publish.
    Publish(fill::PublishArgs),
    /// Reads the whole directory with `Directory::read`, as a gateway's resync does, and times it.
    ReadDirectory(fill::ReadArgs),
    /// Publishes one more domain with `Directory::put`.
    PutDomain(fill::PutDomainArgs),
    /// Writes cached pages with `Pages::put`.
    Pages(fill::PagesArgs),
    /// Times listing, counting and purging one domain's pages.
    Index(fill::IndexArgs),
    /// Pushes render jobs onto the render queue.
    Queue(fill::QueueArgs),
    /// Counts a day of bot traffic for many domains with `Usage::add_batch`, as gateways do, and
    /// times reading it back with `Usage::day`.
    Usage(fill::UsageArgs),
    /// Drives a fixed mixed load at gateways.
    Load(load::LoadArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let redis = fill::Redis {
        url: cli.redis_url,
        prefix: cli.prefix,
    };
    match cli.command {
        Command::Publish(args) => fill::publish(&redis, args).await,
        Command::ReadDirectory(args) => fill::read_directory(&redis, args).await,
        Command::PutDomain(args) => fill::put_domain(&redis, args).await,
        Command::Pages(args) => fill::pages(&redis, args).await,
        Command::Index(args) => fill::index(&redis, args).await,
        Command::Queue(args) => fill::queue(&redis, args).await,
        Command::Usage(args) => fill::usage(&redis, args).await,
        Command::Load(args) => load::run(args).await,
    }
}
