//! Fair shares of the warm queue between tenants.
//!
//! apalis-redis's waiting list is first in, first out: a tenant warming a 50 000-page sitemap would
//! put every other tenant's warm-up (and every stale page's refresh) behind its own. So warm jobs do
//! not go to apalis when they are pushed. They wait in their tenant's own list, and a dispatcher
//! hands them to apalis round-robin between tenants, keeping only [`WINDOW`] jobs waiting there: a
//! tenant that starts warming while another's long warm-up runs has its first job taken after at
//! most that many others, and then every other job.
//!
//! Who dispatches: the producer, right after its push (so a job reaches an idle queue at once), and
//! every warm consumer, as it starts each job (which leaves the window) and once a second. Several dispatchers at once
//! are safe: taking a job is one script, and a job being handed over counts as waiting, so the
//! window is kept however many run.
//!
//! Handing a job over is two steps (a script takes it into `dispatching`, then apalis-redis's push
//! stores it under the task id it was given at intake). A dispatcher that dies between the two
//! leaves the job in `dispatching`; any dispatcher hands such a job over again after
//! [`ORPHAN_AFTER`]. apalis-redis stores a task id once, so a second hand-over of a job still
//! queued or running is a no-op; only a job already finished and swept could run twice, which
//! needs Redis to fail in the milliseconds between the two steps.
//!
//! Keys, under the warm queue's name (`kiln.warm`):
//! - `fair:ring`: list of the tenants with jobs held, rotated by each take; `fair:tenants`: the
//!   same tenants as a set (so a tenant is put in the ring once).
//! - `fair:pending:{tenant}`: list of the tenant's held task ids, oldest first.
//! - `fair:jobs`: hash, task id → the job (JSON), from intake until apalis-redis has it.
//! - `fair:dispatching`: sorted set of the task ids being handed over, scored by when (ms).

use crate::{QueueError, RenderQueue};
use apalis::prelude::*;
use apalis_redis::Config;
use kiln_core::RenderJob;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::time::Duration;

/// How many warm jobs are kept waiting in apalis-redis (taken by no consumer yet, or being handed
/// over). Each finished job tops it up, so consumers never wait for work while any is held; a
/// tenant's first job waits behind at most this many.
pub const WINDOW: u64 = 4;

/// A job left in `fair:dispatching` this long is handed over again (its dispatcher died).
pub const ORPHAN_AFTER: Duration = Duration::from_secs(10);

/// The most jobs one dispatch hands over: it stops earlier when the window is full.
const MAX_PER_DISPATCH: u64 = WINDOW * 2;

/// Where one queue's fair-share state lives.
#[derive(Clone, Debug)]
pub(crate) struct FairKeys {
    pub(crate) ring: String,
    pub(crate) tenants: String,
    pub(crate) pending_prefix: String,
    pub(crate) jobs: String,
    pub(crate) dispatching: String,
    pub(crate) active: String,
    pub(crate) scheduled: String,
}

/// The jobs held from the two counts [`FairKeys::read_held`] reads: those in `fair:jobs` that are
/// not being handed over.
pub(crate) fn held(jobs: u64, dispatching: u64) -> u64 {
    jobs.saturating_sub(dispatching)
}

impl FairKeys {
    /// Adds the two reads [`held`] takes to `pipe`.
    pub(crate) fn read_held(&self, pipe: &mut redis::Pipeline) {
        pipe.hlen(&self.jobs).zcard(&self.dispatching);
    }

    pub(crate) fn of(config: &Config) -> Self {
        let base = format!("{}:fair", config.queue);
        FairKeys {
            ring: format!("{base}:ring"),
            tenants: format!("{base}:tenants"),
            pending_prefix: format!("{base}:pending:"),
            jobs: format!("{base}:jobs"),
            dispatching: format!("{base}:dispatching"),
            active: config.active_jobs_list(),
            scheduled: config.scheduled_jobs_set(),
        }
    }
}

/// Holds a job in its tenant's list. KEYS: ring, tenants, the tenant's pending list, jobs.
/// ARGV: tenant, task id, job JSON.
const INTAKE_SCRIPT: &str = r#"
redis.call("HSET", KEYS[4], ARGV[2], ARGV[3])
redis.call("RPUSH", KEYS[3], ARGV[2])
if redis.call("SADD", KEYS[2], ARGV[1]) == 1 then
    redis.call("RPUSH", KEYS[1], ARGV[1])
end
return 1
"#;

/// Takes the next tenant's oldest job into `dispatching`, unless the window is full. KEYS: ring,
/// tenants, jobs, dispatching, apalis's waiting list, apalis's scheduled set. ARGV: the window, now
/// (ms), the pending list prefix. Returns `{id, job}`, or nothing when the window is full or no
/// job is held.
///
/// The ring rotates on every take (`LMOVE ring ring LEFT RIGHT`): tenants take turns, one job each.
const TAKE_SCRIPT: &str = r#"
local waiting = redis.call("LLEN", KEYS[5]) + redis.call("ZCARD", KEYS[6]) + redis.call("ZCARD", KEYS[4])
if waiting >= tonumber(ARGV[1]) then return false end
for _ = 1, redis.call("LLEN", KEYS[1]) do
    local tenant = redis.call("LMOVE", KEYS[1], KEYS[1], "LEFT", "RIGHT")
    if not tenant then return false end
    local pending = ARGV[3] .. tenant
    local id = redis.call("LPOP", pending)
    if redis.call("LLEN", pending) == 0 then
        redis.call("LREM", KEYS[1], 0, tenant)
        redis.call("SREM", KEYS[2], tenant)
    end
    if id then
        local job = redis.call("HGET", KEYS[3], id)
        if job then
            redis.call("ZADD", KEYS[4], ARGV[2], id)
            return {id, job}
        end
    end
end
return false
"#;

impl RenderQueue {
    /// Holds a warm job in its tenant's list, then dispatches.
    pub(crate) async fn push_fair(&self, job: RenderJob) -> Result<(), QueueError> {
        let keys = &self.fair;
        let id = ulid::Ulid::generate().to_string();
        let json = serde_json::to_string(&job).map_err(|e| QueueError::Push(e.to_string()))?;
        let tenant = &job.tenant_id;
        let script = redis::Script::new(INTAKE_SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.ring)
            .key(&keys.tenants)
            .key(format!("{}{tenant}", keys.pending_prefix))
            .key(&keys.jobs)
            .arg(tenant)
            .arg(&id)
            .arg(&json);
        // As in `push_now`: one more try after a failure (a connection Redis dropped fails its first
        // command). The intake sets the job under its id and appends the id: a first try that was
        // stored after all leaves the id twice in the list, and the second take finds no job.
        let mut conn = self.conn.clone();
        let intake = async {
            if let Err(error) = invocation.invoke_async::<i64>(&mut conn).await {
                tracing::debug!(%error, "holding a warm job failed; trying once more");
                tokio::time::sleep(Duration::from_millis(20)).await;
                return invocation.invoke_async::<i64>(&mut conn).await;
            }
            Ok(1)
        };
        match tokio::time::timeout(self.timeout, intake).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(QueueError::Push(error.to_string())),
            Err(_) => return Err(QueueError::timeout(self.timeout)),
        }
        // The job is held; if this dispatch fails, the consumers' next one hands it over.
        if let Err(error) = self.dispatch_warm().await {
            tracing::debug!(%error, "could not dispatch warm jobs; the workers will");
        }
        Ok(())
    }

    /// Hands held warm jobs to apalis-redis, round-robin between tenants, until [`WINDOW`] are
    /// waiting there; returns how many it handed over.
    pub async fn dispatch_warm(&self) -> Result<u64, QueueError> {
        let keys = &self.fair;
        let script = redis::Script::new(TAKE_SCRIPT);
        let mut handed = 0;
        while handed < MAX_PER_DISPATCH {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&keys.ring)
                .key(&keys.tenants)
                .key(&keys.jobs)
                .key(&keys.dispatching)
                .key(&keys.active)
                .key(&keys.scheduled)
                .arg(WINDOW)
                .arg(now_ms())
                .arg(&keys.pending_prefix);
            let mut conn = self.conn.clone();
            let taken: Option<(String, String)> =
                self.bounded(invocation.invoke_async(&mut conn)).await??;
            let Some((id, json)) = taken else { break };
            self.hand_over(&id, &json).await?;
            handed += 1;
        }
        Ok(handed)
    }

    /// Hands over again the jobs whose dispatcher died mid-way (see the module documentation);
    /// returns how many.
    pub(crate) async fn recover_orphans(&self) -> Result<u64, QueueError> {
        let keys = &self.fair;
        let before = now_ms().saturating_sub(ORPHAN_AFTER.as_millis() as u64);
        let mut conn = self.conn.clone();
        let mut orphans = redis::cmd("ZRANGEBYSCORE");
        orphans
            .arg(&keys.dispatching)
            .arg(0)
            .arg(before)
            .arg("LIMIT")
            .arg(0)
            .arg(100);
        let ids: Vec<String> = self.bounded(orphans.query_async(&mut conn)).await??;
        let mut recovered = 0;
        for id in ids {
            let mut get = redis::cmd("HGET");
            get.arg(&keys.jobs).arg(&id);
            let json: Option<String> = self.bounded(get.query_async(&mut conn)).await??;
            match json {
                Some(json) => {
                    self.hand_over(&id, &json).await?;
                    recovered += 1;
                }
                None => {
                    let mut forget = redis::cmd("ZREM");
                    forget.arg(&keys.dispatching).arg(&id);
                    self.bounded(forget.query_async::<i64>(&mut conn)).await??;
                }
            }
        }
        if recovered > 0 {
            tracing::warn!(
                jobs = recovered,
                "handed over warm jobs whose dispatcher went away mid-way"
            );
        }
        Ok(recovered)
    }

    /// Pushes a taken job to apalis-redis under its intake id, then forgets it here.
    async fn hand_over(&self, id: &str, json: &str) -> Result<(), QueueError> {
        let job: RenderJob = match serde_json::from_str(json) {
            Ok(job) => job,
            Err(error) => {
                // Only a job written by a Kiln that no longer reads it: drop it, loudly, rather
                // than block the tenant's warm-up on it forever.
                tracing::error!(task.id = id, %error, "dropping a held warm job that cannot be read");
                return self.forget(id).await;
            }
        };
        let task = TaskBuilder::new(job)
            .task_id(TaskId::from(
                ulid::Ulid::from_string(id).map_err(|e| QueueError::Push(e.to_string()))?,
            ))
            .max_attempts(crate::MAX_ATTEMPTS)
            .build();
        let mut storage = self.warm.storage.clone();
        match self.bounded(storage.push_task(task)).await? {
            Ok(()) => {}
            Err(error) => return Err(QueueError::Push(error.to_string())),
        }
        self.forget(id).await?;
        crate::wake(
            &mut self.conn.clone(),
            &self.warm.wake_channel,
            self.timeout,
        )
        .await;
        Ok(())
    }

    async fn forget(&self, id: &str) -> Result<(), QueueError> {
        let keys = &self.fair;
        let mut conn = self.conn.clone();
        let mut forget = redis::pipe();
        forget
            .atomic()
            .zrem(&keys.dispatching, id)
            .ignore()
            .hdel(&keys.jobs, id)
            .ignore();
        self.bounded(forget.query_async::<()>(&mut conn)).await??;
        Ok(())
    }

    /// How many warm jobs are held back for fairness, not yet handed to apalis-redis. (A job in
    /// the middle of its hand-over is counted by neither, for a moment.)
    pub(crate) async fn held(&self, conn: &mut ConnectionManager) -> Result<u64, QueueError> {
        let mut read = redis::pipe();
        self.fair.read_held(&mut read);
        let (jobs, dispatching): (u64, u64) = self.bounded(read.query_async(conn)).await??;
        Ok(held(jobs, dispatching))
    }

    async fn bounded<T>(&self, future: impl Future<Output = T>) -> Result<T, QueueError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| QueueError::timeout(self.timeout))
    }
}

/// What each warm consumer runs beside it: a dispatch (and a look for orphans) every second, for
/// jobs held while no dispatch ran (a producer whose own dispatch failed, a consumer that died).
pub(crate) async fn dispatch_periodically(queue: RenderQueue) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = queue.recover_orphans().await {
            tracing::debug!(%error, "could not look for orphaned warm jobs");
        }
        if let Err(error) = queue.dispatch_warm().await {
            tracing::debug!(%error, "could not dispatch warm jobs");
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
