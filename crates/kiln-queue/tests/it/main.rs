//! The render queue against a real Redis: jobs pushed by a producer reach a consumer, and an idle
//! consumer is woken by the push rather than by its (here deliberately slow) fallback poll.

use futures::future::BoxFuture;
use kiln_core::{CacheKey, DeviceClass, NormalizedUrl, RenderJob};
use kiln_queue::{JobHandler, QueueSettings, RenderQueue, run_worker};
use kiln_testkit::RedisServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Forward(mpsc::UnboundedSender<RenderJob>);

impl JobHandler for Forward {
    fn handle(&self, job: RenderJob) -> BoxFuture<'static, ()> {
        let _ = self.0.send(job);
        Box::pin(async {})
    }
}

fn job(path: &str) -> RenderJob {
    let page_url = NormalizedUrl::from_stored(format!("https://shop.test{path}"));
    RenderJob {
        key: CacheKey::new("d1", DeviceClass::Desktop, &page_url),
        tenant_id: "t1".into(),
        render_url: format!("http://127.0.0.1:1{path}"),
        page_url,
        device: DeviceClass::Desktop,
        cache_ttl_secs: 60,
        render_timeout_ms: 1000,
        enqueued_at: 0,
        request_id: Some(path.to_owned()),
        blocking: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_push_not_by_its_poll() {
    let redis = RedisServer::start();
    let mut settings = QueueSettings::new(
        redis.url(),
        kiln_testkit::unique_prefix(),
        Duration::from_secs(1),
    );
    // Far longer than the test may take: only the push's wake-up can deliver the second job in time.
    settings.fallback_poll = Duration::from_secs(600);
    let queue = RenderQueue::connect(&settings).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer_settings = settings.clone();
    let consumer = tokio::spawn(async move {
        run_worker(
            &consumer_settings,
            "test-consumer",
            2,
            Arc::new(Forward(tx)),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });

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

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .expect("the consumer stops")
        .unwrap()
        .unwrap();
}
