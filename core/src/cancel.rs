//! Cancellation of one session's run. A front end decides what cancels it
//! (the CLI: SIGINT/SIGTERM, once per process; the agent: an API call or
//! shutdown); the engine stops at the next safe point, records why, and the
//! session waits in its journal for a resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A cheap, cloneable token: every clone sees the same cancellation.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    notify: Notify,
    /// Why, as the front end put it (e.g. "SIGTERM"), for the journal.
    why: std::sync::Mutex<Option<String>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancel the run; `why` is recorded in the journal. Later calls keep
    /// the first reason.
    pub fn cancel(&self, why: impl Into<String>) {
        {
            let mut slot = self.inner.why.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(why.into());
            }
        }
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Why the run was cancelled, once it was.
    pub fn reason(&self) -> Option<String> {
        self.inner
            .why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once the token is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a cancel in between is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// A flag a blocking plugin call can poll (the epoch callback does).
    pub fn flag(&self) -> CancelFlag {
        CancelFlag(self.inner.clone())
    }
}

/// A read-only view of a [`Cancel`] for synchronous code (and for the
/// plugin host's waits, through [`CancelFlag::cancelled`]).
#[derive(Clone, Debug)]
pub struct CancelFlag(Arc<Inner>);

impl CancelFlag {
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        Cancel {
            inner: self.0.clone(),
        }
        .cancelled()
        .await
    }
}

/// Two flags are equal when they watch the same token.
impl PartialEq for CancelFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelFlag {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_cancel_wakes_every_waiter_and_keeps_the_first_reason() {
        let cancel = Cancel::new();
        let waiter = {
            let c = cancel.clone();
            tokio::spawn(async move { c.cancelled().await })
        };
        tokio::task::yield_now().await;
        cancel.cancel("SIGTERM");
        cancel.cancel("SIGINT");
        waiter.await.unwrap();
        assert!(cancel.is_cancelled());
        assert_eq!(cancel.reason().as_deref(), Some("SIGTERM"));
        // Already cancelled: returns at once.
        cancel.cancelled().await;
        assert!(cancel.flag().is_cancelled());
    }
}
