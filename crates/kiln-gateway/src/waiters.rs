//! Requests waiting for a render, keyed by page. A worker's announcement on the event channel wakes
//! every request waiting for that page on this gateway; no request polls Redis.
//!
//! An announcement ends its page's entry: requests registering after it wait for the page's next
//! render, on a channel of their own. Each entry carries a number telling it from the entries of
//! the page's earlier renders, whose waiters may still be leaving (serving the page they were woken
//! for, or the origin's): a waiter that leaves removes its own entry, never a later one.

use kiln_core::RenderOutcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    pages: HashMap<String, Entry>,
    /// The number the next entry gets.
    next: u64,
}

/// The channel every request waiting for one render of a page listens on.
struct Entry {
    number: u64,
    tx: watch::Sender<Option<RenderOutcome>>,
}

impl Waiters {
    /// Starts waiting for `page_key`. Register before looking at the cache, so that an announcement
    /// arriving between the look-up and the wait is not lost.
    pub fn register(self: &Arc<Self>, page_key: &str) -> Waiter {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (entry, rx) = match pending.pages.get(page_key) {
            Some(entry) => (entry.number, entry.tx.subscribe()),
            None => {
                let (tx, rx) = watch::channel(None);
                let number = pending.next;
                pending.next += 1;
                pending
                    .pages
                    .insert(page_key.to_owned(), Entry { number, tx });
                (number, rx)
            }
        };
        Waiter {
            waiters: Arc::clone(self),
            page_key: page_key.to_owned(),
            entry,
            rx,
        }
    }

    /// Wakes everyone waiting for `page_key` with `outcome`.
    pub fn complete(&self, page_key: &str, outcome: RenderOutcome) {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pages
            .remove(page_key);
        if let Some(entry) = entry {
            entry.tx.send_replace(Some(outcome));
        }
    }

    /// Wakes everyone waiting for any page with a failure: the announcements they wait for can
    /// no longer arrive (the event subscription was lost), so they should not wait out their budget.
    pub fn fail_all(&self, reason: &str) {
        let pages = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut pending.pages)
        };
        for entry in pages.into_values() {
            entry.tx.send_replace(Some(RenderOutcome::Failed {
                reason: reason.to_owned(),
            }));
        }
    }

    /// How many pages have someone waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pages
            .len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Waiter {
    waiters: Arc<Waiters>,
    page_key: String,
    /// The number of the entry this waiter listens on.
    entry: u64,
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
        let mut pending = self
            .waiters
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Our own receiver still counts here: remove our entry when nobody else waits on it. The
        // page's entry may be a later render's (ours was announced, and others wait for the next
        // render): that one is not ours to remove.
        if pending
            .pages
            .get(&self.page_key)
            .is_some_and(|entry| entry.number == self.entry && entry.tx.receiver_count() <= 1)
        {
            pending.pages.remove(&self.page_key);
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
    async fn a_waiter_leaving_after_its_render_keeps_the_next_renders_waiters() {
        let waiters = Arc::new(Waiters::default());
        // Woken by the page's render, and still serving it...
        let woken = waiters.register("p");
        waiters.complete("p", stored());
        // ... while the page, purged meanwhile, is missed again and rendered anew.
        let mut next = waiters.register("p");
        drop(woken);
        let again = RenderOutcome::Stored {
            status: 200,
            render_ms: 7,
        };
        waiters.complete("p", again.clone());
        assert_eq!(next.wait(Duration::from_millis(50)).await, Some(again));
        drop(next);
        assert!(waiters.is_empty());
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
