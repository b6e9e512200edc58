//! Exit when idle: the helper is D-Bus activated, so it need not stay around. It exits once
//! no method call has been running and nothing has moved on its bus connection for the idle
//! timeout. A long `Apply` (an initramfs rebuild) keeps it alive however long it takes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zruntime::{Event, SharedRuntime};

/// The default idle timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts the method calls in progress.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    finished: Event,
}

/// Held while a method call runs.
#[derive(Debug)]
#[must_use = "the call counts as running only while the guard lives"]
pub struct Busy {
    inner: Arc<Inner>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.inner.running.fetch_sub(1, Ordering::AcqRel);
        self.inner.finished.notify(usize::MAX);
    }
}

impl Idle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a method call as running until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.inner.running.fetch_add(1, Ordering::AcqRel);
        Busy {
            inner: self.inner.clone(),
        }
    }

    pub fn is_busy(&self) -> bool {
        self.inner.running.load(Ordering::Acquire) > 0
    }

    /// Returns once no method call is running.
    pub async fn calls_finished(&self) {
        while self.is_busy() {
            let finished = self.inner.finished.listen();
            if self.is_busy() {
                finished.await;
            }
        }
    }

    /// Returns once `timeout` has passed with no call running and no activity on `conn`.
    /// With `timeout == None` it never returns while the connection is open.
    pub async fn wait(&self, conn: &zbus::Connection, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            conn.closed().await;
            return;
        };
        let runtime = match SharedRuntime::current() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "no runtime for the idle timer; staying up");
                conn.closed().await;
                return;
            }
        };
        loop {
            if conn.is_closed() {
                return;
            }
            self.calls_finished().await;
            let activity = conn.monitor_activity();
            if runtime.timeout(timeout, activity).await.is_err() && !self.is_busy() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_running_calls() {
        let idle = Idle::new();
        assert!(!idle.is_busy());
        let a = idle.busy();
        let b = idle.busy();
        assert!(idle.is_busy());
        drop(a);
        assert!(idle.is_busy());
        drop(b);
        assert!(!idle.is_busy());
    }
}
