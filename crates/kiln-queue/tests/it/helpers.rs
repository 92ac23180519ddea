//! A queue consumer running in the background, the jobs the tests push and their queues' settings
//! on a private redis-server.

use futures::future::BoxFuture;
use kiln_core::{CacheKey, DeviceClass, NormalizedUrl, RenderJob};
use kiln_queue::{JobHandler, QueueKind, QueueSettings, RenderQueue, run_worker};
use kiln_testkit::TestRedis;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A handler that sends every job it is given on its channel.
pub struct Forward(pub mpsc::UnboundedSender<RenderJob>);

impl JobHandler for Forward {
    fn handle(&self, job: RenderJob, _queue: QueueKind) -> BoxFuture<'static, ()> {
        let _ = self.0.send(job);
        Box::pin(async {})
    }

    fn give_up(&self, job: RenderJob, _queue: QueueKind, starts: u64) -> BoxFuture<'static, ()> {
        panic!("gave up {job:?} after {starts} starts");
    }
}

/// A bot's render job for `path` on `shop.test`.
pub fn job(path: &str) -> RenderJob {
    let page_url = NormalizedUrl::from_stored(format!("https://shop.test{path}"));
    RenderJob {
        key: CacheKey::new("d1", DeviceClass::Desktop, &page_url),
        tenant_id: "t1".into(),
        render_url: format!("http://127.0.0.1:1{path}"),
        page_url,
        device: DeviceClass::Desktop,
        cache_ttl_secs: 60,
        stale_ttl_secs: 0,
        render_timeout_ms: 1000,
        enqueued_at: 0,
        request_id: Some(path.to_owned()),
        blocking: Default::default(),
        purpose: Default::default(),
        user_agent: None,
        via: Default::default(),
    }
}

/// A consumer running in the background until [`TestConsumer::stop`].
pub struct TestConsumer {
    task: tokio::task::JoinHandle<Result<(), kiln_queue::QueueError>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl TestConsumer {
    pub fn start(
        settings: &QueueSettings,
        kind: QueueKind,
        name: &'static str,
        concurrency: usize,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = settings.clone();
        let task = tokio::spawn(async move {
            run_worker(&settings, kind, name, concurrency, handler, async {
                let _ = stopped.await;
            })
            .await
        });
        TestConsumer { task, stop }
    }

    /// Stops it, and waits until it has (its jobs in flight finished, its in-flight set settled).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the consumer stops")
            .unwrap()
            .unwrap();
    }
}

/// Settings for queues under a prefix of their own, on `redis`.
pub fn settings_on(redis: &TestRedis) -> QueueSettings {
    QueueSettings::new(
        redis.url(),
        kiln_testkit::unique_prefix(),
        Duration::from_secs(1),
    )
}

/// Waits until the queue `kind` holds no unfinished job (10 s at most).
pub async fn wait_until_drained(queue: &RenderQueue, kind: QueueKind) {
    let drained = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let depth = queue.depth(kind).await.unwrap();
        if depth.unfinished() == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < drained, "{kind:?}: {depth:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
