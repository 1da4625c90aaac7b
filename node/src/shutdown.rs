//! A shutdown signal that every long-lived task selects on, owned by whoever
//! started the tasks (the node, or a test), so nothing outlives its owner.

use tokio::sync::watch;

/// The receiving side: cloned into every task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side: kept by the owner. Dropping it also shuts down.
pub struct Trigger(watch::Sender<bool>);

/// A new trigger and signal.
pub fn pair() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every task to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A signal tied to this trigger.
    pub fn signal(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once shutdown is triggered or the trigger is dropped.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Whether shutdown was triggered.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}
