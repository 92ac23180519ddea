//! The render queues: gateways (and the dashboard) push [`RenderJob`]s, workers consume them.
//!
//! Three queues, so that cache warming never starves bots: [`QueueKind::Render`] (`<prefix>render`)
//! takes bots' renders and previews, [`QueueKind::Warm`] (`<prefix>warm`) takes warm jobs and
//! [`QueueKind::Parity`] (`<prefix>parity`) parity checks, background work like warming. A worker
//! runs one consumer per queue, each with its own concurrency, so however long the warm queue
//! grows, it only ever occupies the warm consumer's few slots. Within the warm queue, tenants take
//! turns: see [`fair`].
//!
//! Architecture invariant: this is the only crate that knows apalis. The queue's name is always set
//! explicitly (apalis defaults to the job type's Rust path, so a rename would silently move the queue),
//! and its Redis keys live under the deployment prefix.
//!
//! Delivery: apalis-redis polls a list; an empty poll would leave a new job waiting for the next
//! poll. Workers therefore also subscribe to a wake-up channel and poll at once when it fires, with a
//! slow interval poll behind it in case a message is lost. apalis-redis 1.0.0 publishes on that
//! channel only for jobs it puts straight on the active list, but it files every job (even one due
//! now) under its scheduled set, which only a poll promotes; so [`RenderQueue::push`] publishes the
//! wake-up itself after each push. Without it, a bot would wait half a poll interval on average.
//!
//! Retries: apalis-redis retries a failed task up to 25 times whatever the retry policy says. Kiln's
//! job handler never fails a task; it records the outcome (rendered or failed) itself. A job whose
//! consumer went away mid-job (a worker killed, say) is handed to another consumer once the first
//! misses its heartbeats; apalis-redis does not count those hand-overs, so Kiln counts each job's
//! starts and gives a job up after [`MAX_STARTS`] (a poisonous job must not take down one worker
//! after another). Finished jobs are acknowledged, so that only unfinished ones are handed over,
//! and what apalis-redis keeps of them is swept. A consumer that stops settles its in-flight set
//! itself: jobs it finished whose acknowledgement had not reached Redis are recorded as done, and
//! jobs it took but never started go back on the waiting list at once, rather than 15 s later
//! when its heartbeats lapse. A push that is tried again keeps its task id, so it is stored once.

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use futures::future::BoxFuture;
use kiln_core::RenderJob;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::Duration;

mod fair;
mod metrics;
pub use fair::{ORPHAN_AFTER, WINDOW as WARM_WINDOW};
pub use metrics::QueueGauges;

/// How many times a job may be delivered (a first run plus retries after a worker died).
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    #[error("could not push a render job: {0}")]
    Push(String),
    #[error("the queue did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the render worker stopped: {0}")]
    Worker(String),
}

/// Every Redis error the queue met goes through here, so that it is counted (see [`redis_errors`]).
impl From<redis::RedisError> for QueueError {
    fn from(error: redis::RedisError) -> Self {
        REDIS_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        QueueError::Redis(error)
    }
}

impl QueueError {
    /// Redis did not answer within `limit` (counted like any other Redis error).
    fn timeout(limit: Duration) -> Self {
        REDIS_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        QueueError::Timeout(limit)
    }
}

static REDIS_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many Redis commands of the queue's have failed in this process (for the
/// `kiln_redis_errors_total` metric). Timeouts are counted too.
pub fn redis_errors() -> u64 {
    REDIS_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Which of the queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// Bots' renders and dashboard previews: someone is waiting.
    Render,
    /// Background work — cache warming and refreshes of stale pages: nobody is waiting, so it must
    /// never delay the other queue.
    Warm,
    /// Parity checks (`kiln_core::parity`): background work like warming, on a queue of its own so
    /// that a long warm-up does not hold a customer's check back, nor a burst of checks a warm-up.
    Parity,
}

impl QueueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Render => "render",
            QueueKind::Warm => "warm",
            QueueKind::Parity => "parity",
        }
    }
}

/// Which Redis the queues use: `KILN_QUEUE_REDIS_URL` (`queue_redis_url`) when it is set, else
/// `KILN_REDIS_URL` (`redis_url`). Either way it must name one Redis server (`redis://`,
/// `rediss://`): apalis-redis talks to Redis through the `redis` crate's single-server connection
/// manager, and its scripts and Kiln's (see [`fair`]) use keys without hash tags, so the queues
/// cannot run on a Redis Cluster. A deployment whose cache is on a cluster keeps its queues on a
/// Redis of their own.
pub fn queue_redis_url(redis_url: &str, queue_redis_url: Option<&str>) -> Result<String, String> {
    let (name, url) = match queue_redis_url {
        Some(url) => ("KILN_QUEUE_REDIS_URL", url),
        None => ("KILN_REDIS_URL", redis_url),
    };
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        "redis" | "rediss" => Ok(url.to_owned()),
        cluster if cluster.ends_with("-cluster") && queue_redis_url.is_none() => Err(
            "KILN_REDIS_URL names a Redis Cluster, which the render queue cannot use: set \
             KILN_QUEUE_REDIS_URL to a single Redis for it, e.g. redis://queue:6379"
                .to_owned(),
        ),
        _ => Err(format!(
            "{name} must be a single Redis's redis:// or rediss:// URL (the render queue cannot \
             use a Redis Cluster)"
        )),
    }
}

/// Where the queues live.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub redis_url: String,
    /// The deployment prefix (`kiln:`); the queue is named after it.
    pub prefix: String,
    /// The longest one queue command may take.
    pub command_timeout: Duration,
    /// How often an idle worker polls in case a wake-up was lost (see [`QueueSettings::new`]).
    pub fallback_poll: Duration,
}

impl QueueSettings {
    /// Settings with the default fallback poll of one second.
    pub fn new(
        redis_url: impl Into<String>,
        prefix: impl Into<String>,
        command_timeout: Duration,
    ) -> Self {
        QueueSettings {
            redis_url: redis_url.into(),
            prefix: prefix.into(),
            command_timeout,
            fallback_poll: Duration::from_secs(1),
        }
    }

    /// The render queue's apalis name (see [`QueueSettings::queue_name_of`]).
    pub fn queue_name(&self) -> String {
        self.queue_name_of(QueueKind::Render)
    }

    /// A queue's apalis name. apalis-redis parses its event channels by splitting on `:`, so the
    /// name must not contain one: with the prefix `kiln:`, the queues are `kiln.render` and
    /// `kiln.warm`.
    pub fn queue_name_of(&self, kind: QueueKind) -> String {
        format!("{}{}", self.prefix.replace(':', "."), kind.as_str())
    }

    /// The channel that wakes a queue's idle workers (the one apalis-redis itself uses for new
    /// jobs).
    fn wake_channel(&self, kind: QueueKind) -> String {
        self.wake_channel_of(&self.config(kind))
    }

    fn wake_channel_of(&self, config: &Config) -> String {
        format!("tasks:{}:available", config.active_jobs_list())
    }

    /// Where the start counts of the queue `kind`'s jobs are kept (see [`MAX_STARTS`]).
    fn starts_prefix(&self, kind: QueueKind) -> String {
        starts_prefix(&self.config(kind))
    }

    fn config(&self, kind: QueueKind) -> Config {
        Config::default()
            .queue(self.queue_name_of(kind))
            .heartbeat_interval(Duration::from_secs(5))
            .missed_heartbeats(3)
            // A consumer takes a job only when it has a free slot, so a job goes to whichever
            // worker is free. (With apalis-redis's default of 10, one worker took ten jobs into its
            // in-flight set while another stood idle.)
            .batch_size(1)
            // Finished jobs must be acknowledged: apalis-redis only then takes them out of the
            // consumer's in-flight set. Without it, every job a consumer ever ran stayed there, and
            // all of them ran again once the consumer was gone (a worker restarted, or a consumer
            // restarted after a Redis outage). Their records are swept by `sweep_finished`.
            .persist_results(true)
            .idempotency_ttl(Some(Duration::from_secs(60)))
    }

    async fn connection(&self) -> Result<ConnectionManager, QueueError> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(2);
        Ok(ConnectionManager::new_with_config(client, config).await?)
    }
}

fn starts_prefix(config: &Config) -> String {
    format!("{}:starts", config.queue)
}

/// How much work one queue holds, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs ready to be taken.
    pub waiting: u64,
    /// Jobs due later: new ones not yet promoted by a poll, and retries waiting out their delay.
    pub scheduled: u64,
    /// Warm jobs held in their tenants' lists until their turn (see [`fair`]); always 0 for the
    /// render queue.
    pub held: u64,
    /// Jobs taken and not yet finished, by the consumer holding them (its name, e.g. `worker-a` or
    /// `worker-a.warm`). A dead consumer's jobs stay here until the queue's heartbeat check hands
    /// them back.
    pub in_flight: BTreeMap<String, u64>,
}

impl QueueDepth {
    /// Jobs not yet finished: held, waiting, scheduled or in flight.
    pub fn unfinished(&self) -> u64 {
        self.held + self.waiting + self.scheduled + self.in_flight.values().sum::<u64>()
    }
}

/// The producing side of the queues, used by gateways (bots' renders) and the dashboard (warming,
/// previews).
#[derive(Clone)]
pub struct RenderQueue {
    render: Producer,
    warm: Producer,
    parity: Producer,
    /// Where warm jobs are held for fair shares between tenants (see [`fair`]).
    fair: fair::FairKeys,
    conn: ConnectionManager,
    timeout: Duration,
}

/// One queue's storage and the channel that wakes its consumers.
#[derive(Clone)]
struct Producer {
    storage: RedisStorage<RenderJob>,
    wake_channel: String,
}

impl RenderQueue {
    pub async fn connect(settings: &QueueSettings) -> Result<Self, QueueError> {
        Ok(Self::on(settings, settings.connection().await?))
    }

    /// The producer on an existing connection (a consumer's, for its dispatcher).
    fn on(settings: &QueueSettings, conn: ConnectionManager) -> Self {
        let producer = |kind| Producer {
            storage: RedisStorage::new(conn.clone()).with_config(settings.config(kind)),
            wake_channel: settings.wake_channel(kind),
        };
        RenderQueue {
            render: producer(QueueKind::Render),
            warm: producer(QueueKind::Warm),
            parity: producer(QueueKind::Parity),
            fair: fair::FairKeys::of(&settings.config(QueueKind::Warm)),
            conn,
            timeout: settings.command_timeout,
        }
    }

    /// Enqueues a job on the render queue: a bot's render or a preview.
    pub async fn push(&self, job: RenderJob) -> Result<(), QueueError> {
        self.push_to(QueueKind::Render, job).await
    }

    /// Enqueues a warm job (purpose [`Warm`](kiln_core::job::RenderPurpose::Warm)) on the warm
    /// queue, which never delays the render queue.
    pub async fn push_warm(&self, job: RenderJob) -> Result<(), QueueError> {
        self.push_to(QueueKind::Warm, job).await
    }

    /// Enqueues a job on the queue `kind`. A warm job is held in its tenant's list and handed to
    /// the queue in its turn (see [`fair`]); a render goes on the queue at once.
    pub async fn push_to(&self, kind: QueueKind, job: RenderJob) -> Result<(), QueueError> {
        match kind {
            QueueKind::Render | QueueKind::Parity => self.push_now(kind, job).await,
            QueueKind::Warm => self.push_fair(job).await,
        }
    }

    /// Puts a job on the queue `kind` at once.
    async fn push_now(&self, kind: QueueKind, job: RenderJob) -> Result<(), QueueError> {
        let producer = self.producer(kind);
        // One more try after a failure: the first command on a connection that Redis dropped (it
        // restarted, say) fails, and the connection is made again for the next. The job keeps its
        // task id, so a first push that was stored after all (its answer was lost or late) is not
        // stored again: apalis-redis stores a task id once.
        let id = TaskId::from(ulid::Ulid::generate());
        let task = |job: RenderJob| {
            TaskBuilder::new(job)
                .task_id(id.clone())
                .max_attempts(MAX_ATTEMPTS)
                .build()
        };
        let push = async {
            let mut storage = producer.storage.clone();
            if let Err(error) = storage.push_task(task(job.clone())).await {
                tracing::debug!(%error, "pushing a job failed; trying once more");
                tokio::time::sleep(Duration::from_millis(20)).await;
                return storage.push_task(task(job)).await;
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, push).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(QueueError::Push(error.to_string())),
            Err(_) => return Err(QueueError::timeout(self.timeout)),
        }
        // The job is stored; a lost wake-up only delays it until the next poll.
        wake(&mut self.conn.clone(), &producer.wake_channel, self.timeout).await;
        Ok(())
    }
}

/// Wakes the consumers subscribed to `channel` (best effort: a consumer that misses it finds its
/// jobs on its next poll).
async fn wake(conn: &mut ConnectionManager, channel: &str, timeout: Duration) {
    let mut wake = redis::cmd("PUBLISH");
    wake.arg(channel).arg("1");
    let woken = tokio::time::timeout(timeout, wake.query_async::<i64>(conn)).await;
    if let Ok(Err(error)) = woken {
        tracing::debug!(%error, "could not wake the workers; they will find the jobs on their next poll");
    }
}

impl RenderQueue {
    /// Sweeps away the records of the queue's finished jobs now (consumers also do it every
    /// [`SWEEP_INTERVAL`]).
    pub async fn sweep_finished(&self, kind: QueueKind) -> Result<Swept, QueueError> {
        let config = self.producer(kind).storage.get_config().clone();
        sweep(&config, self.timeout, &mut self.conn.clone()).await
    }

    fn producer(&self, kind: QueueKind) -> &Producer {
        match kind {
            QueueKind::Render => &self.render,
            QueueKind::Warm => &self.warm,
            QueueKind::Parity => &self.parity,
        }
    }

    /// How many jobs of the queue `kind` no consumer has taken yet (held, waiting and scheduled):
    /// one round trip.
    pub async fn untaken(&self, kind: QueueKind) -> Result<u64, QueueError> {
        let config = self.producer(kind).storage.get_config().clone();
        let mut conn = self.conn.clone();
        let mut read = redis::pipe();
        read.llen(config.active_jobs_list())
            .zcard(config.scheduled_jobs_set());
        // Only the warm queue holds jobs back (the gateway asks this of the render queue on its
        // request path: no reads it does not need).
        let counts = async {
            if kind == QueueKind::Warm {
                self.fair.read_held(&mut read);
                let (waiting, scheduled, jobs, dispatching): (u64, u64, u64, u64) =
                    read.query_async(&mut conn).await?;
                Ok::<_, redis::RedisError>(waiting + scheduled + fair::held(jobs, dispatching))
            } else {
                let (waiting, scheduled): (u64, u64) = read.query_async(&mut conn).await?;
                Ok(waiting + scheduled)
            }
        };
        match tokio::time::timeout(self.timeout, counts).await {
            Ok(untaken) => Ok(untaken?),
            Err(_) => Err(QueueError::timeout(self.timeout)),
        }
    }

    /// How much work the queue `kind` holds: one round trip of plain reads (no script), so it is
    /// cheap enough for a metrics scrape.
    pub async fn depth(&self, kind: QueueKind) -> Result<QueueDepth, QueueError> {
        let config = self.producer(kind).storage.get_config().clone();
        let mut conn = self.conn.clone();
        let read = async {
            // apalis-redis registers each consumer by name in the workers set (and keeps it there
            // after a clean stop); its jobs in flight are in `<inflight set>:<name>`.
            let (consumers, waiting, scheduled): (Vec<String>, u64, u64) = redis::pipe()
                .zrange(config.workers_set(), 0, -1)
                .llen(config.active_jobs_list())
                .zcard(config.scheduled_jobs_set())
                .query_async(&mut conn)
                .await?;
            let mut sizes = redis::pipe();
            for consumer in &consumers {
                sizes.scard(format!("{}:{consumer}", config.inflight_jobs_set()));
            }
            let sizes: Vec<u64> = if consumers.is_empty() {
                Vec::new()
            } else {
                sizes.query_async(&mut conn).await?
            };
            let in_flight = consumers
                .into_iter()
                .zip(sizes)
                .filter(|(_, jobs)| *jobs > 0)
                .collect();
            Ok::<_, redis::RedisError>(QueueDepth {
                waiting,
                scheduled,
                held: 0,
                in_flight,
            })
        };
        let mut depth = match tokio::time::timeout(self.timeout, read).await {
            Ok(depth) => depth?,
            Err(_) => return Err(QueueError::timeout(self.timeout)),
        };
        if kind == QueueKind::Warm {
            depth.held = self.held(&mut self.conn.clone()).await?;
        }
        Ok(depth)
    }

    /// When the job that has waited longest in the queue `kind` was queued, or `None` when nothing
    /// waits: a few reads, for a metrics scrape. The candidates are the head of the list consumers
    /// take from and the earliest of the jobs not yet promoted to it (apalis-redis keeps new jobs
    /// in its scheduled set until a consumer's poll moves them). Warm jobs still held in their
    /// tenants' lists are not counted; they have not reached the queue yet.
    pub async fn oldest_waiting(
        &self,
        kind: QueueKind,
    ) -> Result<Option<kiln_core::UnixMillis>, QueueError> {
        let config = self.producer(kind).storage.get_config().clone();
        let mut conn = self.conn.clone();
        let read = async {
            // apalis-redis appends to the list's tail and consumers take from its head.
            let (head, scheduled): (Option<String>, Vec<String>) = redis::pipe()
                .cmd("LINDEX")
                .arg(config.active_jobs_list())
                .arg(0)
                .zrange(config.scheduled_jobs_set(), 0, 0)
                .query_async(&mut conn)
                .await?;
            let ids: Vec<String> = head.into_iter().chain(scheduled).collect();
            if ids.is_empty() {
                return Ok::<_, redis::RedisError>(None);
            }
            let data: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(config.job_data_hash())
                .arg(&ids)
                .query_async(&mut conn)
                .await?;
            // A job may have been taken between the reads; one that does not read as ours (from
            // another version) says nothing of the age either.
            Ok(data
                .into_iter()
                .flatten()
                .filter_map(|data| serde_json::from_slice::<RenderJob>(&data).ok())
                .map(|job| job.enqueued_at)
                .min())
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(oldest) => Ok(oldest?),
            Err(_) => Err(QueueError::timeout(self.timeout)),
        }
    }
}

/// What a worker does with each job. Implementations record every outcome themselves and never fail:
/// see the crate documentation on retries.
pub trait JobHandler: Send + Sync + 'static {
    /// Called the moment a consumer starts a job of the queue `queue`, before anything is awaited;
    /// [`handle`](Self::handle) or [`give_up`](Self::give_up) follows for that job.
    fn starting(&self, _queue: QueueKind) {}

    /// Handles `job`, taken from the queue `queue`.
    fn handle(&self, job: RenderJob, queue: QueueKind) -> BoxFuture<'static, ()>;

    /// Records that `job` will not run: it has been started `starts` times, more than
    /// [`MAX_STARTS`], and each time the consumer running it went away before it finished (most
    /// likely the job itself brings its worker down). Whoever waits for its outcome must hear of
    /// the failure.
    fn give_up(&self, job: RenderJob, queue: QueueKind, starts: u64) -> BoxFuture<'static, ()>;
}

/// How many times a job may be started: a first run, and runs again after the consumers that had
/// it went away mid-job (apalis-redis hands such jobs back without counting: it keeps no count of
/// its own for them, so Kiln counts starts in `<queue>:starts:<task id>`).
pub const MAX_STARTS: u64 = MAX_ATTEMPTS as u64;

/// How long a job's start count is kept (the sweep removes it once the job is done).
const STARTS_TTL_SECS: i64 = 24 * 60 * 60;

/// The tasks a consumer has finished whose acknowledgement may not have reached Redis yet: apalis
/// acknowledges a task some time after it ends, and a consumer stopping may never send it. Pruned
/// to those still in the consumer's in-flight set by each sweep.
type Finished = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// The handler as worker data. A named type rather than `Arc<dyn JobHandler>`: with the trait
/// object's lifetime in `run_job`'s signature, the compiler cannot prove the worker's future `Send`
/// (a higher-ranked lifetime error), so `run_worker` could not be spawned.
#[derive(Clone)]
struct SharedHandler {
    handler: Arc<dyn JobHandler>,
    queue: QueueKind,
    /// Where start counts are kept, and a connection to count with.
    starts: String,
    conn: ConnectionManager,
    timeout: Duration,
    finished: Finished,
    /// For the warm queue: the producer whose held jobs this consumer dispatches, topping up the
    /// queue as it takes each job (see [`fair`]).
    dispatcher: Option<RenderQueue>,
}

impl SharedHandler {
    /// Counts a start of the task `id`; `None` if Redis did not answer (the job then runs: a
    /// missed count only delays giving up on a poisonous job).
    async fn count_start(&self, id: &TaskId) -> Option<u64> {
        let key = format!("{}:{id}", self.starts);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .incr(&key, 1u64)
            .expire(&key, STARTS_TTL_SECS)
            .ignore();
        let count = pipe.query_async::<(u64,)>(&mut conn);
        match tokio::time::timeout(self.timeout, count).await {
            Ok(Ok((starts,))) => Some(starts),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not count a job's start; running it");
                None
            }
            Err(_) => {
                tracing::warn!("could not count a job's start in time; running it");
                None
            }
        }
    }
}

async fn run_job(
    job: RenderJob,
    shared: Data<SharedHandler>,
    id: TaskId,
) -> Result<(), BoxDynError> {
    shared.handler.starting(shared.queue);
    if let Some(dispatcher) = shared.dispatcher.clone() {
        // This job left the queue's window: hand over the next held one, beside the job.
        tokio::spawn(async move {
            if let Err(error) = dispatcher.dispatch_warm().await {
                tracing::debug!(%error, "could not dispatch warm jobs");
            }
        });
    }
    match shared.count_start(&id).await {
        Some(starts) if starts > MAX_STARTS => {
            tracing::error!(
                queue = shared.queue.as_str(),
                task.id = %id,
                starts,
                "giving up a job whose consumers kept going away before it finished"
            );
            shared.handler.give_up(job, shared.queue, starts).await;
        }
        _ => shared.handler.handle(job, shared.queue).await,
    }
    shared
        .finished
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.to_string());
    Ok(())
}

/// Runs a consumer of the queue `kind`, named `name` (unique per process and queue), with up to
/// `concurrency` jobs in flight, until `shutdown` completes; in-flight jobs are then allowed to
/// finish.
pub async fn run_worker(
    settings: &QueueSettings,
    kind: QueueKind,
    name: &str,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), QueueError> {
    let conn = settings.connection().await?;
    let config = settings.config(kind);
    let wake = WakeUps {
        pushed: wake_stream(settings.redis_url.clone(), settings.wake_channel(kind)),
        fallback: tokio::time::interval(settings.fallback_poll),
    };
    let finished = Finished::default();
    let in_flight = format!("{}:{name}", config.inflight_jobs_set());
    let _sweeper = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(sweep_periodically(
        settings.clone(),
        kind,
        conn.clone(),
        Some((in_flight.clone(), finished.clone())),
    )));
    let dispatcher = match kind {
        QueueKind::Warm => Some(RenderQueue::on(settings, conn.clone())),
        QueueKind::Render | QueueKind::Parity => None,
    };
    let _dispatcher = dispatcher.clone().map(|queue| {
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(fair::dispatch_periodically(queue)))
    });
    let hand_back_conn = conn.clone();
    let counting_conn = conn.clone();
    let storage = RedisStorage::<RenderJob>::new(conn).with_config(config.clone());
    let backend = PollWith::new(
        storage,
        // One strategy that is always left registered (see `WakeUps`).
        Strategy::new().stream(wake),
    );

    let worker = WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(concurrency.max(1))
        .data(SharedHandler {
            handler,
            queue: kind,
            starts: settings.starts_prefix(kind),
            conn: counting_conn,
            timeout: settings.command_timeout,
            finished: finished.clone(),
            dispatcher,
        })
        .build(run_job);
    let stopped = worker
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| QueueError::Worker(e.to_string()));
    // Every job this consumer started has finished. What is still in its in-flight set was either
    // finished without the acknowledgement reaching Redis, or taken and never started: settle both
    // now, rather than leave them for another consumer to find once this one misses its
    // heartbeats (15 s later, and the finished ones would run again).
    let finished: Vec<String> = finished
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    match hand_back(&config, &in_flight, &finished, settings, hand_back_conn).await {
        Ok((0, 0)) => {}
        Ok((acknowledged, handed_back)) => tracing::info!(
            queue = kind.as_str(),
            acknowledged,
            handed_back,
            "settled the jobs left in flight at shutdown"
        ),
        Err(error) => tracing::warn!(
            queue = kind.as_str(),
            %error,
            "could not settle the jobs left in flight at shutdown; another consumer will take them over"
        ),
    }
    stopped
}

/// What a stopping consumer does with its in-flight set: finished jobs are recorded as done (for
/// the sweep), the others go back on the waiting list, and the consumers are woken for them.
/// KEYS: the in-flight set, the waiting list, the done set, the job metadata prefix, apalis-redis's
/// signal list. ARGV: the ids of the jobs the consumer finished.
const HAND_BACK_SCRIPT: &str = r#"
local finished = {}
for _, id in ipairs(ARGV) do finished[id] = true end
local done, handed = 0, 0
for _, id in ipairs(redis.call("SMEMBERS", KEYS[1])) do
    if finished[id] then
        redis.call("SADD", KEYS[3], id)
        redis.call("HSET", KEYS[4] .. ":" .. id, "status", "Done")
        done = done + 1
    else
        redis.call("RPUSH", KEYS[2], id)
        handed = handed + 1
    end
end
redis.call("DEL", KEYS[1])
if handed > 0 then
    redis.call("DEL", KEYS[5])
    redis.call("LPUSH", KEYS[5], 1)
end
return {done, handed}
"#;

/// Runs [`HAND_BACK_SCRIPT`] for one consumer, and wakes the others if it handed jobs back.
async fn hand_back(
    config: &Config,
    in_flight: &str,
    finished: &[String],
    settings: &QueueSettings,
    mut conn: ConnectionManager,
) -> Result<(u64, u64), QueueError> {
    let script = redis::Script::new(HAND_BACK_SCRIPT);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(in_flight)
        .key(config.active_jobs_list())
        .key(config.done_jobs_set())
        .key(config.job_meta_hash())
        .key(config.signal_list());
    for id in finished {
        invocation.arg(id);
    }
    let timeout = settings.command_timeout;
    let (done, handed): (u64, u64) =
        tokio::time::timeout(timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| QueueError::timeout(timeout))??;
    if handed > 0 {
        wake(&mut conn, &settings.wake_channel_of(config), timeout).await;
    }
    Ok((done, handed))
}

/// How often a consumer sweeps away the records of finished jobs, and how many it removes at most
/// per round trip.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
const SWEEP_BATCH: usize = 500;

/// Removes what apalis-redis keeps of finished jobs: their ids from the done and dead sets, their
/// data and their metadata; and Kiln's count of their starts. Kiln records each job's outcome itself (the render log), so nothing is
/// lost; without the sweep, Redis would hold every job ever run. (apalis-redis's own `vacuum`
/// reads the whole data hash, waiting jobs included, on every call; this reads only finished ones.)
const SWEEP_SCRIPT: &str = r#"
local removed = {0, 0}
for i, set in ipairs({KEYS[1], KEYS[2]}) do
    local ids = redis.call("SPOP", set, ARGV[1])
    for _, id in ipairs(ids) do
        redis.call("HDEL", KEYS[3], id)
        redis.call("DEL", KEYS[4] .. ":" .. id, KEYS[5] .. ":" .. id)
    end
    removed[i] = #ids
end
return removed
"#;

/// How many finished jobs' records one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Jobs that ran to the end.
    pub done: u64,
    /// Jobs the queue gave up on after too many attempts.
    pub dead: u64,
}

/// Sweeps the records of the finished jobs of the queue configured by `config` (see
/// [`SWEEP_SCRIPT`]) until none are left.
async fn sweep(
    config: &Config,
    timeout: Duration,
    conn: &mut ConnectionManager,
) -> Result<Swept, QueueError> {
    let script = redis::Script::new(SWEEP_SCRIPT);
    let mut swept = Swept::default();
    loop {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(config.done_jobs_set())
            .key(config.dead_jobs_set())
            .key(config.job_data_hash())
            .key(config.job_meta_hash())
            .key(starts_prefix(config))
            .arg(SWEEP_BATCH);
        let (done, dead): (u64, u64) = tokio::time::timeout(timeout, invocation.invoke_async(conn))
            .await
            .map_err(|_| QueueError::timeout(timeout))??;
        swept.done += done;
        swept.dead += dead;
        if done < SWEEP_BATCH as u64 && dead < SWEEP_BATCH as u64 {
            return Ok(swept);
        }
    }
}

/// What each consumer runs beside it: a sweep every [`SWEEP_INTERVAL`]. Several consumers sweeping
/// at once is harmless (each finished job is popped by one of them). It also forgets the finished
/// jobs whose acknowledgement has arrived (no longer in the consumer's in-flight set).
async fn sweep_periodically(
    settings: QueueSettings,
    kind: QueueKind,
    mut conn: ConnectionManager,
    consumer: Option<(String, Finished)>,
) {
    let config = settings.config(kind);
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some((in_flight, finished)) = &consumer {
            let mut smembers = redis::cmd("SMEMBERS");
            smembers.arg(in_flight);
            let members = smembers.query_async::<std::collections::HashSet<String>>(&mut conn);
            if let Ok(Ok(members)) = tokio::time::timeout(settings.command_timeout, members).await {
                finished
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|id| members.contains(id));
            }
        }
        match sweep(&config, settings.command_timeout, &mut conn).await {
            Ok(Swept { dead: 0, .. }) => {}
            Ok(Swept { dead, .. }) => tracing::warn!(
                queue = kind.as_str(),
                jobs = dead,
                "jobs were given up by the queue after too many attempts"
            ),
            Err(error) => {
                tracing::debug!(queue = kind.as_str(), %error, "could not sweep finished jobs")
            }
        }
    }
}

/// After a wake-up, the consumer is woken again this long after it, then this long after that, and
/// so on: about 20 times in the first second. (On a loaded machine a wake-up can be spent on the
/// consumer's acknowledgement of its last job or on a fetch under way; each follow-up costs an
/// empty fetch at most.)
const FOLLOW_UP_WAKES: &[Duration] = &[
    Duration::from_millis(15),
    Duration::from_millis(25),
    Duration::from_millis(40),
    Duration::from_millis(60),
    Duration::from_millis(80),
    Duration::from_millis(100),
    Duration::from_millis(150),
    Duration::from_millis(200),
    Duration::from_millis(300),
];

/// When a consumer should look for jobs: a job was pushed (or a follow-up after one), or the
/// fallback poll is due.
///
/// apalis-redis fetches whenever its consumer's task is woken, and parks after an empty fetch
/// counting on its poll strategy to wake it again. But apalis-core 1.0.0's strategies register for
/// the next wake-up only when they are pending: one that yields an item (a wake-up message, an
/// interval tick) is not registered again until it is next polled, and the other strategies are
/// not polled at all that time. A wake-up spent on a fetch that came back empty thus left the
/// consumer asleep until its next heartbeat, up to five seconds, with a bot's job waiting. This
/// stream therefore takes every wake-up and tick that is due in one poll and only returns once both
/// sources are pending, so it is always registered for the next one.
struct WakeUps {
    pushed: futures::channel::mpsc::Receiver<()>,
    fallback: tokio::time::Interval,
}

impl futures::Stream for WakeUps {
    type Item = ();

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<()>> {
        use futures::StreamExt;
        use std::task::Poll;
        let this = self.get_mut();
        let mut due = false;
        // A closed channel (its task gone) leaves the fallback poll to do the work.
        while let Poll::Ready(Some(())) = this.pushed.poll_next_unpin(cx) {
            due = true;
        }
        while this.fallback.poll_tick(cx).is_ready() {
            due = true;
        }
        if due {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// A stream that yields whenever a job is pushed, re-subscribing after connection loss.
fn wake_stream(redis_url: String, channel: String) -> futures::channel::mpsc::Receiver<()> {
    use futures::StreamExt;
    let (mut tx, rx) = futures::channel::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let subscribed = async {
                let client = redis::Client::open(redis_url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match subscribed {
                Ok(mut pubsub) => {
                    // Jobs pushed while we were not subscribed are found by this first poll.
                    let _ = tx.try_send(());
                    let mut messages = pubsub.on_message();
                    // A wake-up that arrives while the consumer is in the middle of a fetch is
                    // spent on that fetch, which may have looked before the job was there: a
                    // follow-up or two shortly after catches such a job, rather than the fallback
                    // poll a second later.
                    let mut follow_ups = FOLLOW_UP_WAKES.iter();
                    let follow_up = tokio::time::sleep(Duration::ZERO);
                    tokio::pin!(follow_up);
                    let mut following_up = false;
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                if message.is_none() {
                                    break;
                                }
                                if tx.is_closed() {
                                    return;
                                }
                                let _ = tx.try_send(());
                                follow_ups = FOLLOW_UP_WAKES.iter();
                                if let Some(after) = follow_ups.next() {
                                    follow_up.as_mut().reset(tokio::time::Instant::now() + *after);
                                    following_up = true;
                                }
                            }
                            () = &mut follow_up, if following_up => {
                                let _ = tx.try_send(());
                                match follow_ups.next() {
                                    Some(after) => follow_up.as_mut().reset(tokio::time::Instant::now() + *after),
                                    None => following_up = false,
                                }
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "queue wake-up subscription failed; retrying")
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_uses_its_own_redis_if_given_and_never_a_cluster() {
        #[track_caller]
        fn check(redis: &str, queue: Option<&str>, expected: Result<&str, &str>) {
            match (queue_redis_url(redis, queue), expected) {
                (Ok(url), Ok(want)) => assert_eq!(url, want),
                (Err(error), Err(want)) => assert!(error.contains(want), "{error}"),
                (got, want) => panic!("{redis} {queue:?}: got {got:?}, expected {want:?}"),
            }
        }
        check("redis://cache:6379", None, Ok("redis://cache:6379"));
        check(
            "rediss://:pw@cache:6379/1",
            None,
            Ok("rediss://:pw@cache:6379/1"),
        );
        check(
            "redis-cluster://a:7000?node=b:7001",
            Some("redis://queue:6379"),
            Ok("redis://queue:6379"),
        );
        check(
            "redis://cache:6379",
            Some("redis://queue:6379"),
            Ok("redis://queue:6379"),
        );
        check(
            "redis-cluster://a:7000",
            None,
            Err("set KILN_QUEUE_REDIS_URL to a single Redis"),
        );
        check(
            "rediss-cluster://a:7000",
            None,
            Err("set KILN_QUEUE_REDIS_URL"),
        );
        check(
            "redis://cache",
            Some("redis-cluster://a:7000"),
            Err("KILN_QUEUE_REDIS_URL must be a single Redis"),
        );
        check("cache:6379", None, Err("KILN_REDIS_URL must be"));
    }
}
