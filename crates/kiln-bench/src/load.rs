//! A fixed, open-loop mixed load at gateways: each kind of request is sent at its own steady rate
//! whatever the answers take (so the load does not ease off when Kiln slows down), spread over
//! the gateways in turn, as a load balancer would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/131.0.0.0 Safari/537.36";

#[derive(clap::Args)]
pub struct LoadArgs {
    /// A gateway's base URL (`http://127.0.0.1:3000`); repeat for more.
    #[arg(long = "gateway", required = true)]
    gateways: Vec<String>,
    /// The `Host` asked for.
    #[arg(long, default_value = "demo.localhost")]
    host: String,
    /// Bots asking for cached pages (`/products/1` … `/products/6`), per second.
    #[arg(long, default_value_t = 0.0)]
    bot_rps: f64,
    /// People asking for pages (proxied to the origin), per second.
    #[arg(long, default_value_t = 0.0)]
    person_rps: f64,
    /// Bots asking for never-rendered pages (each a cold render they wait for), per second.
    #[arg(long, default_value_t = 0.0)]
    render_rps: f64,
    /// How long requests are sent for.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Names the cold pages' query (`?<series>=<n>`), so that every run's are new.
    #[arg(long, default_value = "capacity")]
    series: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bot,
    Person,
    Render,
}

struct Answer {
    kind: Kind,
    status: u16,
    cache: String,
    ms: f64,
    finished: Duration,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(150))
        .build()?;
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let mut senders = Vec::new();
    for (kind, rps) in [
        (Kind::Bot, args.bot_rps),
        (Kind::Person, args.person_rps),
        (Kind::Render, args.render_rps),
    ] {
        if rps <= 0.0 {
            continue;
        }
        let (client, answers, gateways, host, series) = (
            client.clone(),
            answers.clone(),
            args.gateways.clone(),
            args.host.clone(),
            args.series.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut requests = Vec::new();
            let mut n: u64 = 0;
            loop {
                let due = started + Duration::from_secs_f64(n as f64 / rps);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let gateway = &gateways[n as usize % gateways.len()];
                let product = n % 6 + 1;
                let (url, agent) = match kind {
                    Kind::Bot => (format!("{gateway}/products/{product}"), GOOGLEBOT),
                    Kind::Person => (format!("{gateway}/products/{product}"), BROWSER),
                    Kind::Render => (
                        format!("{gateway}/products/{product}?{series}={n}"),
                        GOOGLEBOT,
                    ),
                };
                let request = client
                    .get(url)
                    .header("host", host.as_str())
                    .header("user-agent", agent)
                    .header("accept-encoding", "gzip");
                let answers = answers.clone();
                requests.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    let (status, cache) = match request.send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let cache = response
                                .headers()
                                .get("x-kiln-cache")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned();
                            match response.bytes().await {
                                Ok(_) => (status, cache),
                                Err(_) => (0, cache),
                            }
                        }
                        Err(_) => (0, "-".to_owned()),
                    };
                    let answer = Answer {
                        kind,
                        status,
                        cache,
                        ms: sent.elapsed().as_secs_f64() * 1000.0,
                        finished: started.elapsed(),
                    };
                    answers.lock().expect("answers").push(answer);
                }));
                n += 1;
            }
            for request in requests {
                let _ = request.await;
            }
        }));
    }
    for sender in senders {
        sender.await?;
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    println!("seconds={}", args.seconds);
    println!("gateways={}", args.gateways.len());
    for (kind, name) in [
        (Kind::Bot, "bot"),
        (Kind::Person, "person"),
        (Kind::Render, "render"),
    ] {
        let mine: Vec<&Answer> = answers.iter().filter(|a| a.kind == kind).collect();
        if mine.is_empty() {
            continue;
        }
        let ok = mine.iter().filter(|a| a.status == 200).count();
        let hits = mine.iter().filter(|a| a.cache == "HIT").count();
        let misses = mine.iter().filter(|a| a.cache == "MISS").count();
        let mut ms: Vec<f64> = mine.iter().map(|a| a.ms).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        let last = mine.iter().map(|a| a.finished).max().unwrap_or_default();
        println!("{name}_sent={}", mine.len());
        println!("{name}_ok={ok}");
        println!("{name}_hit={hits}");
        println!("{name}_miss={misses}");
        println!("{name}_p50_ms={:.2}", pct(0.5));
        println!("{name}_p99_ms={:.2}", pct(0.99));
        println!("{name}_last_s={:.2}", last.as_secs_f64());
    }
    Ok(())
}
