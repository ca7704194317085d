//! Every long-lived task of the daemon runs under the supervisor, by name.
//!
//! The rule: a task that dies is never silent. A task that must run until shutdown and ends (or
//! panics) before it fails the daemon: the supervisor logs its name, the daemon stops in order
//! (so everything spooled is flushed) and exits 1, and systemd restarts the service. Restarting
//! the whole process rather than the task is on purpose: the spool already survives `kill -9`,
//! a fresh process has no half-updated state, and one rule is easier to trust than a restart
//! policy per task. For the same reason release builds use `panic = "abort"`: the panic hook
//! installed here names the task, then the process ends at once.
//!
//! Whether every task is alive is also what the systemd watchdog asks before it is fed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

tokio::task_local! {
    /// The supervised task being polled, for the panic hook.
    static TASK: Arc<str>;
}

#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    failed: CancellationToken,
    failure: Mutex<Option<String>>,
    stopping: AtomicBool,
}

/// How a task is expected to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until shutdown; ending before is a failure.
    UntilShutdown,
    /// May finish its job and end (a one-time fetch); only a panic is a failure.
    UntilDone,
}

impl Supervisor {
    /// Spawns `fut` on `tracker` under `name`.
    pub fn spawn<F>(&self, tracker: &TaskTracker, name: impl Into<String>, life: Lifetime, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name: String = name.into();
        let task = tokio::spawn(TASK.scope(Arc::from(name.as_str()), fut));
        let sup = self.clone();
        tracker.spawn(async move {
            let result = task.await;
            sup.ended(&name, life, result);
        });
    }

    /// Runs `f` on a blocking thread of its own under `name`; it must run until shutdown.
    pub fn spawn_blocking<F>(&self, tracker: &TaskTracker, name: impl Into<String>, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let name: String = name.into();
        let task = tokio::task::spawn_blocking(f);
        let sup = self.clone();
        tracker.spawn(async move {
            let result = task.await;
            sup.ended(&name, Lifetime::UntilShutdown, result);
        });
    }

    fn ended(&self, name: &str, life: Lifetime, result: Result<(), JoinError>) {
        let stopping = self.inner.stopping.load(Ordering::SeqCst);
        let why = match result {
            Err(e) if e.is_panic() => format!("task `{name}` panicked: {}", panic_text(e)),
            Err(_) if stopping => return,
            Err(_) => format!("task `{name}` was cancelled"),
            Ok(()) if stopping || life == Lifetime::UntilDone => {
                tracing::debug!(task = name, "task ended");
                return;
            }
            Ok(()) => format!("task `{name}` ended unexpectedly"),
        };
        self.fail(why);
    }

    /// Fails the daemon (the first reason is the one reported).
    pub fn fail(&self, why: String) {
        tracing::error!(
            "{why}; stopping the bridge so that systemd restarts it (nothing spooled is lost)"
        );
        let mut failure = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(why);
        self.inner.failed.cancel();
    }

    /// From now on tasks are expected to end.
    pub fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Resolves when a task failed.
    pub async fn failed(&self) {
        self.inner.failed.cancelled().await
    }

    /// Every task is alive (none failed).
    pub fn healthy(&self) -> bool {
        !self.inner.failed.is_cancelled()
    }

    /// Why the daemon failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn panic_text(e: JoinError) -> String {
    panic_message(&*e.into_panic()).unwrap_or_else(|| "(no message)".into())
}

/// A panic's message, when it has one (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    let text = payload.downcast_ref::<&str>().copied();
    text.or(payload.downcast_ref::<String>().map(String::as_str))
        .map(str::to_string)
}

/// Logs a panic with the name of the supervised task it happened in. With `panic = "abort"`
/// (release builds) this is the last line the process writes.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let task = TASK
            .try_with(|t| t.to_string())
            .unwrap_or_else(|_| "main".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = panic_message(info.payload()).unwrap_or_default();
        tracing::error!(task, location, "task `{task}` panicked: {message}");
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_early_fails_the_daemon_and_is_named() {
        let sup = Supervisor::default();
        let tracker = TaskTracker::new();
        sup.spawn(
            &tracker,
            "ingest front-door",
            Lifetime::UntilShutdown,
            async {},
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), sup.failed())
            .await
            .expect("the failure is noticed");
        assert!(!sup.healthy());
        assert_eq!(
            sup.failure().as_deref(),
            Some("task `ingest front-door` ended unexpectedly")
        );
    }

    #[tokio::test]
    async fn a_panicking_task_fails_the_daemon_with_its_message() {
        let sup = Supervisor::default();
        let tracker = TaskTracker::new();
        sup.spawn(&tracker, "router", Lifetime::UntilShutdown, async {
            panic!("boom");
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), sup.failed())
            .await
            .expect("the failure is noticed");
        let why = sup.failure().expect("a failure");
        assert!(why.contains("`router` panicked: boom"), "{why}");
    }

    #[tokio::test]
    async fn a_task_that_finishes_its_job_is_not_a_failure() {
        let sup = Supervisor::default();
        let tracker = TaskTracker::new();
        sup.spawn(&tracker, "device details", Lifetime::UntilDone, async {});
        tracker.close();
        tracker.wait().await;
        assert!(sup.healthy());
    }

    #[tokio::test]
    async fn tasks_ending_during_shutdown_are_expected() {
        let sup = Supervisor::default();
        let tracker = TaskTracker::new();
        sup.stopping();
        sup.spawn(&tracker, "publisher", Lifetime::UntilShutdown, async {});
        sup.spawn_blocking(&tracker, "spool writer", || {});
        tracker.close();
        tracker.wait().await;
        assert!(sup.healthy());
        assert_eq!(sup.failure(), None);
    }
}
