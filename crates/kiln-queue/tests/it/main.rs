//! The render queues against a real Redis: jobs pushed by a producer reach a consumer of their
//! queue and no other, an idle consumer is woken by the push rather than by its (here deliberately
//! slow) fallback poll, a busy warm queue does not hold up the render queue, and a queue's depth
//! accounts for every job.

mod helpers;

use futures::future::BoxFuture;
use helpers::{Forward, TestConsumer, job, settings_on, wait_until_drained};
use kiln_core::RenderJob;
use kiln_queue::{JobHandler, MAX_STARTS, QueueKind, QueueSettings, RenderQueue, run_worker};
use kiln_testkit::TestRedis;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_push_not_by_its_poll() {
    let redis = TestRedis::start();
    let mut settings = QueueSettings::new(
        redis.url(),
        kiln_testkit::unique_prefix(),
        Duration::from_secs(1),
    );
    // Far longer than the test may take: only the push's wake-up can deliver the second job in time.
    settings.fallback_poll = Duration::from_secs(600);
    let queue = RenderQueue::connect(&settings).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = TestConsumer::start(
        &settings,
        QueueKind::Render,
        "test-consumer",
        2,
        Arc::new(Forward(tx)),
    );

    // The first job proves the consumer is up (its first poll or the wake-up delivers it) ...
    queue.push(job("/first")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the first job never arrived");
    assert_eq!(first.unwrap(), job("/first"));

    // ... so the second finds it idle, parked until woken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.push(job("/second")).await.unwrap();
    // Without a wake-up the job would wait for the consumer's next heartbeat (every 5 s), which also
    // polls; delivery by the wake-up takes milliseconds.
    let second = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("an idle worker was not woken by the push");
    assert_eq!(second.unwrap(), job("/second"));
    consumer.stop().await;
}

#[test]
fn queue_names_come_from_the_prefix_without_colons() {
    let settings = QueueSettings::new("redis://127.0.0.1:1", "kiln:", Duration::from_secs(1));
    assert_eq!(settings.queue_name(), "kiln.render");
    assert_eq!(settings.queue_name_of(QueueKind::Render), "kiln.render");
    assert_eq!(settings.queue_name_of(QueueKind::Warm), "kiln.warm");
}

/// Forwards each job, then holds it until told to let go: a consumer whose slots are all busy.
struct Hold {
    jobs: mpsc::UnboundedSender<RenderJob>,
    release: Arc<tokio::sync::Semaphore>,
}

impl JobHandler for Hold {
    fn handle(&self, job: RenderJob, _queue: QueueKind) -> BoxFuture<'static, ()> {
        let _ = self.jobs.send(job);
        let release = self.release.clone();
        Box::pin(async move {
            let _permit = release.acquire().await;
        })
    }

    fn give_up(&self, job: RenderJob, _queue: QueueKind, starts: u64) -> BoxFuture<'static, ()> {
        panic!("gave up {job:?} after {starts} starts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_jobs_go_to_their_own_queue_and_never_hold_up_renders() {
    let redis = TestRedis::start();
    let settings = settings_on(&redis);
    let queue = RenderQueue::connect(&settings).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    // The warm consumer has one slot, held by whatever job it takes first.
    let (warm_tx, mut warm_rx) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let warm = tokio::spawn({
        let settings = settings.clone();
        let handler = Arc::new(Hold {
            jobs: warm_tx,
            release: release.clone(),
        });
        let stopped = until_stopped();
        async move { run_worker(&settings, QueueKind::Warm, "warm", 1, handler, stopped).await }
    });
    let (render_tx, mut render_rx) = mpsc::unbounded_channel();
    let render = tokio::spawn({
        let settings = settings.clone();
        let stopped = until_stopped();
        async move {
            run_worker(
                &settings,
                QueueKind::Render,
                "render",
                2,
                Arc::new(Forward(render_tx)),
                stopped,
            )
            .await
        }
    });

    for i in 0..5 {
        queue.push_warm(job(&format!("/warm/{i}"))).await.unwrap();
    }
    let warm_jobs: Vec<RenderJob> = (0..5).map(|i| job(&format!("/warm/{i}"))).collect();
    let first_warm = tokio::time::timeout(Duration::from_secs(20), warm_rx.recv())
        .await
        .expect("the warm consumer got nothing")
        .unwrap();
    assert!(warm_jobs.contains(&first_warm), "{first_warm:?}");
    // The queue's depth accounts for all five: the one held (and any others the consumer fetched
    // ahead) in flight under its name, the rest waiting.
    // (Polled: the consumer tops up the queue from the held jobs beside the job it took, and a job
    // in the middle of that hand-over is counted nowhere for a moment.)
    let counted = tokio::time::Instant::now() + Duration::from_secs(5);
    let depth = loop {
        let depth = queue.depth(QueueKind::Warm).await.unwrap();
        if depth.unfinished() == 5 || tokio::time::Instant::now() > counted {
            break depth;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(depth.unfinished(), 5, "{depth:?}");
    assert!(
        depth.in_flight.get("warm").copied().unwrap_or(0) >= 1,
        "{depth:?}"
    );
    assert_eq!(depth.in_flight.len(), 1, "{depth:?}");

    // With the warm consumer busy and four warm jobs waiting, renders still go straight through,
    // and none of the warm jobs reaches the render consumer.
    for i in 0..3 {
        queue.push(job(&format!("/bot/{i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), render_rx.recv())
            .await
            .expect("a render waited behind warm jobs")
            .unwrap();
        assert_eq!(got, job(&format!("/bot/{i}")));
    }
    assert!(
        warm_rx.try_recv().is_err(),
        "the warm consumer took a second job at once"
    );

    // Let the warm jobs run: the other four arrive, one slot at a time.
    release.add_permits(5);
    let mut seen = vec![first_warm];
    for _ in 1..5 {
        let got = tokio::time::timeout(Duration::from_secs(20), warm_rx.recv())
            .await
            .expect("a warm job never arrived")
            .unwrap();
        assert!(warm_jobs.contains(&got) && !seen.contains(&got), "{got:?}");
        seen.push(got);
    }
    assert!(
        render_rx.try_recv().is_err(),
        "a warm job reached the render consumer"
    );
    // Every job finished: nothing is left waiting or in flight on either queue.
    wait_until_drained(&queue, QueueKind::Warm).await;
    wait_until_drained(&queue, QueueKind::Render).await;
    // What the queue kept of the finished jobs (their data and metadata) is swept away. (Each
    // consumer sweeps every 10 s too, so some may be gone already on a slow run.)
    let mut redis = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for kind in [QueueKind::Warm, QueueKind::Render] {
        let queue_name = settings.queue_name_of(kind);
        let mut records = async || {
            let data: u64 = redis::cmd("HLEN")
                .arg(format!("{queue_name}:data"))
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut keys = async |pattern: &str| {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{queue_name}:{pattern}:*"))
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                keys.len() as u64
            };
            (data, keys("meta").await, keys("starts").await)
        };
        let (data, metadata, starts) = records().await;
        assert_eq!((metadata, starts), (data, data), "{kind:?}");
        let swept = queue.sweep_finished(kind).await.unwrap();
        assert_eq!(swept.done, data, "{kind:?}");
        assert_eq!(records().await, (0, 0, 0), "{kind:?}");
        eprintln!("{kind:?}: {} finished job(s) swept", swept.done);
    }

    let _ = stop.send(true);
    for consumer in [warm, render] {
        tokio::time::timeout(Duration::from_secs(30), consumer)
            .await
            .expect("a consumer did not stop")
            .unwrap()
            .unwrap();
    }
}

fn tenant_job(tenant: &str, i: usize) -> RenderJob {
    let mut job = job(&format!("/{tenant}/{i}"));
    job.tenant_id = tenant.to_owned();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_long_warm_up_does_not_hold_up_another_tenants() {
    let redis = TestRedis::start();
    let settings = settings_on(&redis);
    let queue = RenderQueue::connect(&settings).await.unwrap();
    // One warm slot, held by each job until the test lets it go: nothing runs until both tenants'
    // jobs are queued.
    let (warm_tx, mut warm_rx) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Arc::new(Hold {
        jobs: warm_tx,
        release: release.clone(),
    });
    let consumer = TestConsumer::start(&settings, QueueKind::Warm, "warm", 1, handler);

    // A big warm-up of one tenant, then a small one of another.
    const BIG: usize = 30;
    const SMALL: usize = 3;
    for i in 0..BIG {
        queue.push_warm(tenant_job("big", i)).await.unwrap();
    }
    for i in 0..SMALL {
        queue.push_warm(tenant_job("small", i)).await.unwrap();
    }
    let depth = queue.depth(QueueKind::Warm).await.unwrap();
    assert_eq!(depth.unfinished(), (BIG + SMALL) as u64, "{depth:?}");
    assert!(
        depth.held >= (BIG + SMALL) as u64 - kiln_queue::WARM_WINDOW - 1,
        "only the window goes to the queue at once: {depth:?}"
    );

    release.add_permits(BIG + SMALL);
    let mut order = Vec::new();
    for _ in 0..BIG + SMALL {
        let job = tokio::time::timeout(Duration::from_secs(20), warm_rx.recv())
            .await
            .expect("a warm job never ran")
            .unwrap();
        order.push(job.request_id.unwrap());
    }
    eprintln!("order: {order:?}");
    // The small tenant waits for the jobs already in the window (and the one taken), then takes
    // every other turn; first in, first out it would have waited for all 30.
    let last_small = order
        .iter()
        .rposition(|id| id.starts_with("/small/"))
        .unwrap();
    let bound = 2 + kiln_queue::WARM_WINDOW as usize + 2 * SMALL;
    assert!(
        last_small < bound,
        "the small warm-up finished at {last_small}, after {bound}: {order:?}"
    );
    // Every job ran once. (Each tenant's jobs are handed over oldest first, but two dispatchers
    // handing over at once can swap neighbours.)
    let mut ran = order.clone();
    ran.sort();
    let mut expected: Vec<String> = (0..BIG)
        .map(|i| format!("/big/{i}"))
        .chain((0..SMALL).map(|i| format!("/small/{i}")))
        .collect();
    expected.sort();
    assert_eq!(ran, expected);
    wait_until_drained(&queue, QueueKind::Warm).await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_job_whose_dispatcher_died_mid_hand_over_still_runs() {
    let redis = TestRedis::start();
    let settings = settings_on(&redis);
    // What a dispatcher leaves when it dies between taking a job and handing it to apalis-redis:
    // the job under its id, and the id among those being handed over, since long enough.
    let fair = format!("{}:fair", settings.queue_name_of(QueueKind::Warm));
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let id = ulid::Ulid::generate().to_string();
    let orphan = tenant_job("t1", 1);
    let _: () = redis::pipe()
        .hset(
            format!("{fair}:jobs"),
            &id,
            serde_json::to_string(&orphan).unwrap(),
        )
        .ignore()
        .zadd(format!("{fair}:dispatching"), &id, 1_000)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let queue = RenderQueue::connect(&settings).await.unwrap();
    assert_eq!(
        queue.untaken(QueueKind::Warm).await.unwrap(),
        0,
        "being handed over"
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer =
        TestConsumer::start(&settings, QueueKind::Warm, "warm", 1, Arc::new(Forward(tx)));
    let ran = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the orphaned job never ran")
        .unwrap();
    assert_eq!(ran, orphan);
    // Once handed over, it is forgotten here (just after the push, so perhaps after it ran).
    let forgotten = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: (u64, u64) = redis::pipe()
            .hlen(format!("{fair}:jobs"))
            .zcard(format!("{fair}:dispatching"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if left == (0, 0) {
            break;
        }
        assert!(tokio::time::Instant::now() < forgotten, "{left:?} left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.stop().await;
}

/// Passes on what it is given: jobs to handle, and jobs given up with their start counts.
struct Record {
    handled: mpsc::UnboundedSender<RenderJob>,
    given_up: mpsc::UnboundedSender<(RenderJob, u64)>,
}

impl JobHandler for Record {
    fn handle(&self, job: RenderJob, _queue: QueueKind) -> BoxFuture<'static, ()> {
        let _ = self.handled.send(job);
        Box::pin(async {})
    }

    fn give_up(&self, job: RenderJob, _queue: QueueKind, starts: u64) -> BoxFuture<'static, ()> {
        let _ = self.given_up.send((job, starts));
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_consumers_keep_going_away_is_given_up_not_run_again() {
    let redis = TestRedis::start();
    let settings = settings_on(&redis);
    let queue = RenderQueue::connect(&settings).await.unwrap();
    queue.push(job("/poison")).await.unwrap();
    queue.push(job("/fine")).await.unwrap();

    // "/poison" has been started as often as a job may be, and each consumer that had it went away
    // mid-job (apalis-redis hands such a job back to the queue as it was).
    let queue_name = settings.queue_name_of(QueueKind::Render);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let jobs: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{queue_name}:data"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let (poison_id, _) = jobs
        .iter()
        .find(|(_, data)| data.contains("/poison"))
        .expect("the job is stored");
    let _: () = redis::cmd("SET")
        .arg(format!("{queue_name}:starts:{poison_id}"))
        .arg(MAX_STARTS)
        .query_async(&mut conn)
        .await
        .unwrap();

    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let (given_up_tx, mut given_up) = mpsc::unbounded_channel();
    let handler = Arc::new(Record {
        handled: handled_tx,
        given_up: given_up_tx,
    });
    let consumer = TestConsumer::start(&settings, QueueKind::Render, "consumer", 2, handler);

    // The handler hears that it is given up (so that whoever waits for it can be told), and it is
    // not run; the other job runs as usual.
    let (gone, starts) = tokio::time::timeout(Duration::from_secs(20), given_up.recv())
        .await
        .expect("the job was not given up")
        .unwrap();
    assert_eq!((gone, starts), (job("/poison"), MAX_STARTS + 1));
    let ran = tokio::time::timeout(Duration::from_secs(20), handled.recv())
        .await
        .expect("the other job never ran")
        .unwrap();
    assert_eq!(ran, job("/fine"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(handled.try_recv().is_err(), "the given-up job ran");
    consumer.stop().await;
}

#[tokio::test]
async fn a_stopping_consumer_hands_back_what_it_took_and_never_started() {
    let redis = TestRedis::start();
    let settings = settings_on(&redis);
    let queue = RenderQueue::connect(&settings).await.unwrap();
    let run = |name: &'static str| {
        let (handled_tx, handled) = mpsc::unbounded_channel();
        let (given_up_tx, _given_up) = mpsc::unbounded_channel();
        let handler = Arc::new(Record {
            handled: handled_tx,
            given_up: given_up_tx,
        });
        let consumer = TestConsumer::start(&settings, QueueKind::Render, name, 1, handler);
        (consumer, handled)
    };

    // "/taken" sits in the in-flight set of the consumer "first", as its fetch leaves a job it has
    // not started yet (moved there by hand before "first" runs, so that it cannot run it).
    let queue_name = settings.queue_name_of(QueueKind::Render);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    queue.push(job("/taken")).await.unwrap();
    // (apalis-redis files a new job under its scheduled set; a consumer's poll promotes it.)
    let (taken, _due): (String, f64) = redis::cmd("ZPOPMIN")
        .arg(format!("{queue_name}:scheduled"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(format!("{queue_name}:inflight:first"))
        .arg(&taken)
        .query_async(&mut conn)
        .await
        .unwrap();

    // "first" runs another job, and is stopped.
    let (first, mut first_handled) = run("first");
    queue.push(job("/done")).await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(10), first_handled.recv())
        .await
        .expect("the job never ran")
        .unwrap();
    assert_eq!(ran, job("/done"));
    first.stop().await;
    assert!(first_handled.try_recv().is_err(), "it ran the taken job");
    let in_flight: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{queue_name}:inflight:first"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(in_flight, Vec::<String>::new(), "left in flight");

    // The job it never started is taken by the next consumer at once, not after the first's
    // heartbeats lapse (15 s); the one it finished does not run again.
    let (second, mut second_handled) = run("second");
    let ran = tokio::time::timeout(Duration::from_secs(5), second_handled.recv())
        .await
        .expect("the job handed back never ran")
        .unwrap();
    assert_eq!(ran, job("/taken"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        second_handled.try_recv().is_err(),
        "a finished job ran again"
    );
    second.stop().await;
    assert_eq!(
        queue.depth(QueueKind::Render).await.unwrap().unfinished(),
        0,
        "a job is unfinished"
    );
}
