//! Orderly shutdown of the server's background work.
//!
//! Outbox loops (gift post hooks, the message dispatcher) and live streams
//! hold the store. They must end before the database can close, or a
//! restart in the same process finds it "already open". Each loop watches a
//! [`Shutdown`] and ends between units of work, never halfway through one:
//! what it had not finished stays in its outbox for the next start.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The signal a background loop watches. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is requested (at once if it already was).
    pub async fn requested(&mut self) {
        // An error means the sender is gone, which is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleep for `wait`, or less if shutdown is requested meanwhile.
    pub async fn sleep(&mut self, wait: Duration) {
        tokio::select! {
            _ = self.requested() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Requests shutdown; see [`Background::switch`].
pub struct Switch(Arc<watch::Sender<bool>>);

impl Switch {
    /// Ask every loop to end and every live stream to close.
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

/// The background loops of one server and the switch that ends them.
pub struct Background {
    stop: Arc<watch::Sender<bool>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            stop: Arc::new(watch::channel(false).0),
            tasks: Vec::new(),
        }
    }
}

impl Background {
    /// The signal to hand to loops and streams.
    pub fn signal(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Run `work` until it returns; it is told to end through its [`Shutdown`].
    pub fn spawn<F>(&mut self, name: &'static str, work: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let fut = work(self.signal());
        self.tasks.push((name, tokio::spawn(fut)));
    }

    /// A switch that requests shutdown from elsewhere (the HTTP server's
    /// graceful-shutdown future, so live streams end first).
    pub fn switch(&self) -> Switch {
        Switch(self.stop.clone())
    }

    fn request(&self) {
        self.stop.send_replace(true);
    }

    /// Ask every loop to end and wait for them, at most `grace` in total;
    /// a loop still running then is aborted (its outbox keeps its work).
    pub async fn stop(self, grace: Duration) {
        self.request();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "background task ended"),
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "background task failed"),
                Err(_) => {
                    tracing::warn!(task = name, "background task did not end in time; aborted");
                    task.abort();
                    let _ = task.await;
                }
            }
        }
    }
}
