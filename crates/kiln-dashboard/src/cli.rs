//! The `kiln-dashboard` command line: parses arguments into domain types, calls [`kiln_control::domains`] or
//! starts the HTTP service, and prints results to stdout (logs go to stderr).

use crate::Settings;
use crate::http::Application;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kiln_control::accounts::{self, AccountError, Email};
use kiln_control::db::DomainRecord;
use kiln_control::domains::{self, AddDomain, Added, CLI_ACTOR};
use kiln_control::origin::Origin;
use kiln_control::state::{App, connect_db};
use kiln_core::{DomainSettings, Hostname, ResourceBlocking};

/// Kiln's control plane: keeps domains in Postgres and publishes them to Redis for the gateways.
///
/// Configured through KILN_* environment variables: KILN_DATABASE_URL (required), KILN_REDIS_URL,
/// KILN_QUEUE_REDIS_URL, KILN_REDIS_PREFIX, KILN_ALLOWED_PRIVATE_NETS, KILN_PLATFORM_ADDRS,
/// KILN_DASHBOARD_LISTEN, KILN_SERVICE_HOST, KILN_LOG_FORMAT.
#[derive(Debug, Parser)]
#[command(name = "kiln-dashboard", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations.
    Migrate,
    /// Run the HTTP service on KILN_DASHBOARD_LISTEN; migrates and republishes all domains first.
    Serve,
    /// Republish every domain and service token to Redis and withdraw the domains no longer
    /// registered.
    Publish,
    /// Register, list and remove domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Create customer accounts.
    #[command(subcommand)]
    Account(AccountCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account (a tenant and its user). The password is read from the first line of
    /// standard input, so it never appears in the process list or shell history.
    Add {
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// Succeed if an account with this email exists already (its password is left alone).
        #[arg(long)]
        if_not_exists: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Register a domain for the operator tenant, verified, and publish it.
    Add(Box<AddArgs>),
    /// List every registered domain.
    List,
    /// Remove a domain and withdraw it from the gateways.
    Remove {
        /// The domain's hostname, e.g. shop.example.com.
        #[arg(long, value_parser = Hostname::parse)]
        host: Hostname,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The hostname visitors use, e.g. shop.example.com (no scheme, port or path).
    #[arg(long, value_parser = Hostname::parse)]
    pub host: Hostname,
    /// The server Kiln fetches pages from: http(s)://host[:port], e.g. https://origin.shop.example.com.
    /// It must resolve only to public addresses or to addresses and ports KILN_ALLOWED_PRIVATE_NETS
    /// grants (to the operator's domains by default, or to --owner's tenant), and never to one of
    /// Kiln's own services. Not needed with --service-only.
    #[arg(long, value_parser = Origin::parse, required_unless_present = "service_only")]
    pub origin: Option<Origin>,
    /// The domain is used only through the render service (the customer's own server asks Kiln
    /// for its bots' pages with a service token; no CNAME): its origin is its public site,
    /// https://<host>, which --origin must equal if given.
    #[arg(long)]
    pub service_only: bool,
    /// How long a render is fresh, served from the cache as it is [default: 3600].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_ttl_secs: Option<u64>,
    /// How long after that a render is still served while a background render replaces it; 0
    /// turns that off [default: 604800, a week].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub stale_ttl_secs: Option<u64>,
    /// The longest a render may take in the browser [default: 10000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub render_timeout_ms: Option<u64>,
    /// How long a bot waits for a render on a cache miss [default: 20000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub bot_wait_ms: Option<u64>,
    /// What renders do not download: a comma-separated list of images, media, fonts, stylesheets
    /// and trackers (known analytics, ads and tag-manager hosts), or `none`
    /// [default: images,media,fonts,trackers].
    #[arg(long, value_parser = parse_blocking)]
    pub block: Option<ResourceBlocking>,
    /// Bot requests a second each client address may make; 0: no limit [default: 2]. Verified
    /// crawlers are never limited.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub bot_rate_per_second: Option<u64>,
    /// Bot requests a client address may make at once before that rate applies [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub bot_rate_burst: Option<u64>,
    /// Succeed (and republish) if the same registration already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Give the domain to this account (by email) instead of the operator; it is verified all the
    /// same, since the operator vouches for it.
    #[arg(long)]
    pub owner: Option<String>,
}

impl AddArgs {
    fn settings(&self) -> DomainSettings {
        let defaults = DomainSettings::default();
        DomainSettings {
            cache_ttl_secs: self.cache_ttl_secs.unwrap_or(defaults.cache_ttl_secs),
            stale_ttl_secs: self.stale_ttl_secs.unwrap_or(defaults.stale_ttl_secs),
            render_timeout_ms: self.render_timeout_ms.unwrap_or(defaults.render_timeout_ms),
            bot_wait_ms: self.bot_wait_ms.unwrap_or(defaults.bot_wait_ms),
            blocking: self.block.unwrap_or(defaults.blocking),
            bot_rate_per_second: self
                .bot_rate_per_second
                .unwrap_or(defaults.bot_rate_per_second),
            bot_rate_burst: self.bot_rate_burst.unwrap_or(defaults.bot_rate_burst),
            ..defaults
        }
    }
}

/// Parses `--block`: the kinds of resources renders skip.
fn parse_blocking(list: &str) -> Result<ResourceBlocking, String> {
    let mut blocking = ResourceBlocking {
        images: false,
        media: false,
        fonts: false,
        stylesheets: false,
        trackers: false,
    };
    for kind in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match kind {
            "none" => {}
            "images" => blocking.images = true,
            "media" => blocking.media = true,
            "fonts" => blocking.fonts = true,
            "stylesheets" => blocking.stylesheets = true,
            "trackers" => blocking.trackers = true,
            other => {
                return Err(format!(
                    "`{other}` is not one of images, media, fonts, stylesheets, trackers, none"
                ));
            }
        }
    }
    Ok(blocking)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let db = connect_db(&settings).await?;
            db.migrate()
                .await
                .context("failed to apply the database migrations")?;
            println!("migrations applied");
        }
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Publish => {
            let app = App::connect(&settings).await?;
            let report = kiln_control::directory::publish_all(&app).await?;
            println!(
                "published {} domain(s) and {} service token(s)",
                report.published, report.service_tokens
            );
            for host in &report.withdrawn {
                println!("withdrew {host}, which is no longer registered");
            }
        }
        Command::Domain(DomainCommand::Add(args)) => {
            let app = App::connect(&settings).await?;
            let settings = args.settings();
            let origin = domains::origin_for(&args.host, args.origin, args.service_only)?;
            let mut request = AddDomain::by_operator(args.host, origin, settings);
            request.service_only = args.service_only;
            request.if_not_exists = args.if_not_exists;
            if let Some(owner) = &args.owner {
                let email = Email::parse(owner)?;
                let user = app
                    .db
                    .user_by_email(email.as_str())
                    .await?
                    .with_context(|| format!("no account has the email {email}; create it with `kiln-dashboard account add`"))?;
                request.tenant_id = user.tenant_id;
            }
            match domains::add_domain(&app, request, CLI_ACTOR).await? {
                Added::Created(record) => {
                    println!(
                        "registered {} -> {} (id {})",
                        record.host, record.origin, record.id
                    );
                }
                Added::AlreadyPresent(record) => {
                    println!(
                        "{} is already registered -> {}; republished it",
                        record.host, record.origin
                    );
                }
            }
        }
        Command::Account(AccountCommand::Add {
            email,
            if_not_exists,
        }) => {
            let email = Email::parse(&email)?;
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("failed to read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let app = App::connect(&settings).await?;
            match accounts::sign_up(&app, &email, password).await {
                Ok(user) => println!("created the account {email} (tenant {})", user.tenant_id),
                Err(AccountError::EmailTaken) if if_not_exists => {
                    println!("the account {email} exists already")
                }
                Err(error) => return Err(error.into()),
            }
        }
        Command::Domain(DomainCommand::List) => {
            let db = connect_db(&settings).await?;
            let records = domains::list_domains(&db).await?;
            print!("{}", domain_table(&records));
        }
        Command::Domain(DomainCommand::Remove { host }) => {
            let app = App::connect(&settings).await?;
            let record = domains::remove_domain(&app, &host, CLI_ACTOR).await?;
            println!("removed {} (id {})", record.host, record.id);
        }
    }
    Ok(())
}

/// A plain-text table of domains, one per line, columns padded to their widest cell.
pub fn domain_table(records: &[DomainRecord]) -> String {
    if records.is_empty() {
        return "no domains registered\n".to_owned();
    }
    let rows: Vec<[String; 4]> = records
        .iter()
        .map(|r| {
            [
                r.host.to_string(),
                r.origin.clone(),
                r.verified.to_string(),
                r.id.to_string(),
            ]
        })
        .collect();
    table(["HOST", "ORIGIN", "VERIFIED", "ID"], &rows)
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn add_parses_its_flags() {
        let cli = Cli::try_parse_from([
            "kiln-dashboard",
            "domain",
            "add",
            "--host",
            "Demo.LocalHost",
            "--origin",
            "http://127.0.0.1:5173/",
            "--cache-ttl-secs",
            "60",
            "--if-not-exists",
        ])
        .unwrap();
        let Command::Domain(DomainCommand::Add(args)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.host.as_str(), "demo.localhost");
        assert_eq!(
            args.origin.as_ref().map(Origin::as_str),
            Some("http://127.0.0.1:5173")
        );
        assert!(args.if_not_exists);
        assert!(!args.service_only);
        let settings = args.settings();
        assert_eq!(settings.cache_ttl_secs, 60);
        assert_eq!(
            settings.render_timeout_ms,
            DomainSettings::default().render_timeout_ms
        );
        assert_eq!(settings.bot_wait_ms, DomainSettings::default().bot_wait_ms);
        assert_eq!(settings.blocking, ResourceBlocking::default());
    }

    #[test]
    fn only_a_service_only_domain_may_leave_its_origin_out() {
        let parse = |extra: &[&str]| {
            let args = [
                "kiln-dashboard",
                "domain",
                "add",
                "--host",
                "shop.example.com",
            ];
            Cli::try_parse_from(args.iter().chain(extra))
        };
        assert!(parse(&[]).is_err(), "an origin is required");
        let cli = parse(&["--service-only"]).unwrap();
        let Command::Domain(DomainCommand::Add(args)) = cli.command else {
            panic!("{cli:?}")
        };
        assert!(args.service_only && args.origin.is_none());
    }

    #[test]
    fn what_renders_block_is_a_list() {
        let blocking = parse_blocking("images, stylesheets").unwrap();
        assert!(blocking.images && blocking.stylesheets);
        assert!(!blocking.fonts && !blocking.media && !blocking.trackers);
        let none = parse_blocking("none").unwrap();
        assert!(!none.images && !none.trackers);
        assert!(
            parse_blocking("images,scripts")
                .unwrap_err()
                .contains("`scripts`")
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--host", "shop.com:80", "--origin", "http://o.com"],
                "has a port, path or wildcard",
            ),
            (
                &["--host", "10.0.0.1", "--origin", "http://o.com"],
                "is an IP address",
            ),
            (
                &["--host", "shop.com", "--origin", "file:///etc/passwd"],
                "only http and https",
            ),
            (
                &[
                    "--host",
                    "shop.com",
                    "--origin",
                    "http://o.com",
                    "--bot-wait-ms",
                    "0",
                ],
                "--bot-wait-ms",
            ),
        ];
        for (args, expected) in cases {
            let argv = ["kiln-dashboard", "domain", "add"]
                .iter()
                .chain(args.iter());
            let error = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = [
            ["a.com".to_owned(), "http://x".to_owned()],
            ["longer.example.com".to_owned(), "https://o".to_owned()],
        ];
        assert_eq!(
            table(["HOST", "ORIGIN"], &rows),
            "HOST                ORIGIN\n\
             a.com               http://x\n\
             longer.example.com  https://o\n"
        );
    }
}
