//! [`Cancel`]: how one thread ends another's wait in the core.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;

/// Interrupts a wait from another thread ([`Worker::take_blocking`](crate::Worker::take_blocking),
/// a host pulling events or log records): a Ruby
/// unblocking function, a signal handler, shutdown. Cheap to clone; clones share the flag.
/// It stays cancelled until [`reset`](Self::reset).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<(std::sync::atomic::AtomicBool, Notify)>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Cancel {
    /// A cancel handle, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every wait on this handle, now and until [`reset`](Self::reset). Never blocks,
    /// so it is safe from an interrupt handler.
    pub fn cancel(&self) {
        self.inner.0.store(true, Ordering::Release);
        self.inner.1.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called since the last reset.
    pub fn is_cancelled(&self) -> bool {
        self.inner.0.load(Ordering::Acquire)
    }

    /// Clears the flag, for the next wait.
    pub fn reset(&self) {
        self.inner.0.store(false, Ordering::Release);
    }

    /// Resolves once [`cancel`](Self::cancel) was called: for a host binding that races its
    /// own interrupt against a wait.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
