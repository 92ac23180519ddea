//! The event channel: domain changes, finished renders and purges, fanned out to every gateway.
//!
//! It is classic pub/sub (`PUBLISH`/`SUBSCRIBE`), not sharded: on a Redis Cluster a message
//! published on any node is passed to every other over the cluster bus, so the subscriber, which
//! fred keeps on one node of its choosing (subscribing again after a reconnect), hears every
//! publisher whichever node its `PUBLISH` went to.

use crate::{Result, StoreSettings};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use kiln_core::RenderOutcome;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoreEvent {
    /// A domain was added, changed or removed: re-read it.
    DomainChanged { host: String },
    /// The whole directory was published (and marked complete): re-read all of it.
    DirectoryPublished,
    /// A render for `page_key` finished.
    Rendered {
        page_key: String,
        outcome: RenderOutcome,
    },
    /// Cached pages of the domain were purged: `page_keys` names them, or, when empty, any page
    /// of the domain may be gone (a purge by prefix or of the whole domain). Gateways drop their
    /// in-memory copies.
    Purged {
        domain_id: String,
        #[serde(default)]
        page_keys: Vec<String>,
    },
    /// Every gateway records `id` ([`Events::acknowledge_checkpoint`]) once it has
    /// applied every event before this one: how a purge learns that no gateway serves the purged
    /// pages from memory any more ([`Events::confirm`]).
    Checkpoint { id: String },
    /// The subscription was re-established (or fell behind): events may have been missed, so anything
    /// mirrored from Redis should be re-read. Never published; produced locally.
    Resync,
    /// The subscription's connection failed (Redis went away, most likely): no event arrives until
    /// the next [`StoreEvent::Resync`]. Never published; produced locally.
    Interrupted,
}

crate::view! {
    /// The event channel (`{prefix}events`): subscribing to it, and the gateways' registration
    /// and their word that they applied what was published ([`Events::confirm`]). Events are
    /// published by the views whose changes they announce (pages, the directory).
    Events
}

impl Events {
    /// Subscribes to the event channel. The subscription survives reconnects and reports them, so
    /// the subscriber can resynchronise whatever it mirrors.
    pub async fn subscribe(&self) -> Result<Subscription> {
        subscribe(&self.conn.settings, self.conn.events_channel()).await
    }
}

/// A live subscription to the event channel.
pub struct Subscription {
    rx: mpsc::Receiver<StoreEvent>,
    client: SubscriberClient,
}

impl Subscription {
    /// The next event, or `None` once the subscription is closed.
    pub async fn next(&mut self) -> Option<StoreEvent> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let client = self.client.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

async fn subscribe(settings: &StoreSettings, channel: String) -> Result<Subscription> {
    let client = settings.builder()?.build_subscriber_client()?;
    client.init().await?;
    // Re-subscribes after every reconnect. Dropping the JoinHandle detaches the task; it keeps running.
    drop(client.manage_subscriptions());
    client.subscribe(channel.clone()).await?;

    let (tx, rx) = mpsc::channel(4096);
    let mut messages = client.message_rx();
    let mut reconnects = client.reconnect_rx();
    let mut errors = client.error_rx();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = tokio::select! {
                message = messages.recv() => match message {
                    Ok(message) => {
                        let Some(text) = message.value.as_str() else { continue };
                        match serde_json::from_str::<StoreEvent>(&text) {
                            Ok(event) => event,
                            Err(error) => {
                                tracing::warn!(%error, "ignoring a malformed event");
                                continue;
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the event subscription fell behind");
                        StoreEvent::Resync
                    }
                    Err(RecvError::Closed) => break,
                },
                reconnect = reconnects.recv() => match reconnect {
                    Ok(_) | Err(RecvError::Lagged(_)) => StoreEvent::Resync,
                    Err(RecvError::Closed) => break,
                },
                error = errors.recv() => match error {
                    Ok((error, _)) => {
                        tracing::debug!(%error, "the event subscription's connection failed");
                        StoreEvent::Interrupted
                    }
                    Err(RecvError::Lagged(_)) => StoreEvent::Interrupted,
                    Err(RecvError::Closed) => break,
                },
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    Ok(Subscription { rx, client })
}
