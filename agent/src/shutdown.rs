//! Graceful shutdown: one signal shared by every task. SIGTERM flips it; listeners stop
//! accepting, sessions finish the transaction in flight (up to a deadline) and the queue
//! runner stops claiming new entries, so locks are released by normal drops.

use tokio::sync::watch;

/// Cloneable handle: `is_set()` to poll, `wait()` to await.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that triggers the shutdown.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A new, unset shutdown signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been triggered (or the trigger was dropped).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|set| *set).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_trigger() {
        let (trigger, mut shutdown) = channel();
        assert!(!shutdown.is_set());
        let waiter = tokio::spawn({
            let mut s = shutdown.clone();
            async move { s.wait().await }
        });
        trigger.trigger();
        waiter.await.unwrap();
        shutdown.wait().await;
        assert!(shutdown.is_set());
    }
}
