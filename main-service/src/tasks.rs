//! Tasks with an owner and an end: everything main-service runs beside the
//! requests (its background loops, attaching and detaching readers) is
//! spawned through a [`Tasks`] under a name, and shutdown waits for them
//! within the grace period, naming those that did not end in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// A set of tracked tasks; clones share it.
#[derive(Clone, Default)]
pub(crate) struct Tasks {
    /// Every task spawned here, for the wait at shutdown.
    tracker: TaskTracker,
    /// How many tasks of each name are running, for the warning of a wait
    /// that ran out of time.
    running: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

/// Counts one task as running from its spawn until it ends, however it ends
/// (also when the runtime drops it unfinished).
struct Running {
    /// The task's name.
    name: &'static str,
    /// The counts it is part of.
    running: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = running.get_mut(self.name) {
            *count -= 1;
            if *count == 0 {
                running.remove(self.name);
            }
        }
    }
}

impl Tasks {
    /// Runs `task` in the background as one of the tasks named `name`.
    pub(crate) fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        *self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_default() += 1;
        let running = Running {
            name,
            running: self.running.clone(),
        };
        self.tracker.spawn(async move {
            task.await;
            drop(running);
        });
    }

    /// Waits until every task spawned here has ended, or until `deadline`;
    /// tasks spawned meanwhile are waited for too. Returns whether they all
    /// ended, and logs which did not.
    pub(crate) async fn wait_until(&self, deadline: Instant, what: &'static str) -> bool {
        self.tracker.close();
        let ended = tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            let running = format!("{:?}", self.running());
            tracing::warn!(what, running, "grace period over before every task ended");
        }
        ended
    }

    /// The names of the tasks still running, with their counts.
    fn running(&self) -> BTreeMap<&'static str, usize> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_wait_names_the_tasks_that_did_not_end() {
        let tasks = Tasks::default();
        tasks.spawn("quick", async {});
        tasks.spawn("stuck", std::future::pending());
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(!tasks.wait_until(soon, "test").await);
        assert_eq!(tasks.running(), BTreeMap::from([("stuck", 1)]));
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_tasks_do() {
        let tasks = Tasks::default();
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("waiting", async move {
            drop(ended.await);
        });
        drop(done);
        let later = Instant::now() + Duration::from_secs(10);
        assert!(tasks.wait_until(later, "test").await);
        assert!(tasks.running().is_empty());
    }
}
