//! Requests waiting for a render, keyed by page. A worker's announcement on the event channel wakes
//! every request waiting for that page on this gateway; no request polls Redis.

use kiln_core::RenderOutcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<String, watch::Sender<Option<RenderOutcome>>>>,
}

impl Waiters {
    /// Starts waiting for `page_key`. Register before looking at the cache, so that an announcement
    /// arriving between the look-up and the wait is not lost.
    pub fn register(self: &Arc<Self>, page_key: &str) -> Waiter {
        let mut pending = self.pending.lock().expect("waiters lock poisoned");
        let rx = match pending.get(page_key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                pending.insert(page_key.to_owned(), tx);
                rx
            }
        };
        Waiter {
            waiters: Arc::clone(self),
            page_key: page_key.to_owned(),
            rx,
        }
    }

    /// Wakes everyone waiting for `page_key` with `outcome`.
    pub fn complete(&self, page_key: &str, outcome: RenderOutcome) {
        let tx = self
            .pending
            .lock()
            .expect("waiters lock poisoned")
            .remove(page_key);
        if let Some(tx) = tx {
            tx.send_replace(Some(outcome));
        }
    }

    /// Wakes everyone waiting for any page with a failure: the announcements they wait for can
    /// no longer arrive (the event subscription was lost), so they should not wait out their budget.
    pub fn fail_all(&self, reason: &str) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("waiters lock poisoned"));
        for tx in pending.into_values() {
            tx.send_replace(Some(RenderOutcome::Failed {
                reason: reason.to_owned(),
            }));
        }
    }

    /// How many pages have someone waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.lock().expect("waiters lock poisoned").len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Waiter {
    waiters: Arc<Waiters>,
    page_key: String,
    rx: watch::Receiver<Option<RenderOutcome>>,
}

impl Waiter {
    /// Waits up to `budget` for the render's outcome.
    pub async fn wait(&mut self, budget: Duration) -> Option<RenderOutcome> {
        let delivered = match tokio::time::timeout(budget, self.rx.wait_for(Option::is_some)).await
        {
            Ok(Ok(value)) => return value.clone(),
            // The sender is gone: it either delivered (read it below) or was dropped unused.
            Ok(Err(_)) => true,
            Err(_) => false,
        };
        if delivered {
            self.rx.borrow().clone()
        } else {
            None
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut pending = self.waiters.pending.lock().expect("waiters lock poisoned");
        // Our own receiver still counts here: remove the entry when nobody else waits on it.
        if pending
            .get(&self.page_key)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            pending.remove(&self.page_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> RenderOutcome {
        RenderOutcome::Stored {
            status: 200,
            render_ms: 5,
        }
    }

    #[tokio::test]
    async fn a_lost_subscription_fails_every_waiter_at_once() {
        let waiters = Arc::new(Waiters::default());
        let mut a = waiters.register("p1");
        let mut b = waiters.register("p2");
        waiters.fail_all("gone");
        let failed = Some(RenderOutcome::Failed {
            reason: "gone".into(),
        });
        assert_eq!(a.wait(Duration::from_secs(10)).await, failed);
        assert_eq!(b.wait(Duration::from_secs(10)).await, failed);
        assert!(waiters.is_empty());
        // Later waiters wait for their own announcements again.
        let mut c = waiters.register("p1");
        assert_eq!(c.wait(Duration::from_millis(20)).await, None);
    }

    #[tokio::test]
    async fn wakes_every_waiter_of_a_page() {
        let waiters = Arc::new(Waiters::default());
        let mut a = waiters.register("p1");
        let mut b = waiters.register("p1");
        let mut other = waiters.register("p2");
        waiters.complete("p1", stored());
        assert_eq!(a.wait(Duration::from_secs(1)).await, Some(stored()));
        assert_eq!(b.wait(Duration::from_secs(1)).await, Some(stored()));
        assert_eq!(other.wait(Duration::from_millis(20)).await, None);
        drop((a, b, other));
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn an_announcement_before_the_wait_is_kept() {
        let waiters = Arc::new(Waiters::default());
        let mut early = waiters.register("p");
        waiters.complete("p", RenderOutcome::Failed { reason: "x".into() });
        let got = early.wait(Duration::from_millis(50)).await;
        assert_eq!(got, Some(RenderOutcome::Failed { reason: "x".into() }));
    }

    #[tokio::test]
    async fn abandoned_waits_leave_nothing_behind() {
        let waiters = Arc::new(Waiters::default());
        let mut w = waiters.register("p");
        assert_eq!(w.wait(Duration::from_millis(5)).await, None);
        let second = waiters.register("p");
        drop(w);
        assert_eq!(waiters.len(), 1, "the second waiter keeps the entry");
        drop(second);
        assert!(waiters.is_empty());
    }
}
