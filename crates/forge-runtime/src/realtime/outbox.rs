//! A connection's bounded queue of messages, and the handles of its subscriptions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

use super::protocol::ServerMessage;

/// A subscription's (or watch's) handle in the hub.
pub(super) type MemberId = u64;

/// A message for a connection; `ended` is a subscription the hub ended (its first run was
/// refused), which the connection forgets.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) message: ServerMessage,
    pub(super) ended: Option<MemberId>,
}

/// A connection's queue of messages, bounded: a connection that reads too slowly is marked
/// slow instead of queueing more, and resyncs (see [`Realtime::current`]).
#[derive(Clone, Debug)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    slow: Arc<AtomicBool>,
    woken: Arc<Notify>,
}

impl Outbox {
    /// An outbox holding at most `capacity` messages, and its receiving end.
    pub(super) fn new(capacity: usize) -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, slow: Arc::default(), woken: Arc::default() }, rx)
    }

    /// Queues `message`, or marks the connection slow when its queue is full.
    pub(super) fn push(&self, message: ServerMessage) {
        self.send(Outgoing { message, ended: None });
    }

    pub(super) fn send(&self, outgoing: Outgoing) {
        if self.slow.load(Ordering::Acquire) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(outgoing) {
            self.slow.store(true, Ordering::Release);
            self.woken.notify_one();
        }
    }

    /// Waits until the connection is marked slow.
    pub(super) async fn slowed(&self) {
        self.woken.notified().await;
    }

    /// Whether the connection was slow (and clears it).
    pub(super) fn take_slow(&self) -> bool {
        self.slow.swap(false, Ordering::AcqRel)
    }
}
