//! Living under systemd or in a terminal: logging to journald or stderr.

use std::os::unix::fs::MetadataExt;

use sd_notify::NotifyState;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// True when stderr is the journal stream systemd gave us (`JOURNAL_STREAM=dev:inode`).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

/// `RUST_LOG` wins over the configured level. Safe to call once per process.
pub fn init_logging(level: &str) {
    // RUST_LOG is outside input too: tracing's own parser panics on some text (found by
    // fuzzing the config), so it passes the same check as `log.level` first.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| crate::config::check_log_filter(v).is_ok());
    let filter = from_env
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(filter)
                // No field prefix: `journalctl -u face2mqtt TERMINAL=front-door` works.
                .with(
                    journald
                        .with_syslog_identifier("face2mqtt".into())
                        .with_field_prefix(None),
                )
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Tells systemd `state`, with the line `systemctl status` shows. Outside systemd it does nothing.
fn notify(state: NotifyState, status: &str) {
    let _ = sd_notify::notify(&[state, NotifyState::Status(status)]);
}

/// Tells systemd (Type=notify) that every task is running.
pub fn notify_ready(status: &str) {
    notify(NotifyState::Ready, status);
}

/// Tells systemd the service is stopping (so `systemctl status` says so while we drain).
pub fn notify_stopping() {
    notify(NotifyState::Stopping, "stopping");
}

/// Two malloc arenas, unless `MALLOC_ARENA_MAX` says otherwise. glibc gives threads that
/// allocate at once arenas of their own (up to eight per core), and what a burst freed stays
/// spread over them. Measured side by side against 16 (glibc's limit on 2 cores; BENCHMARKS.md,
/// "malloc arenas"): peak RSS of a backfill of 5,000 photo records 42.0 → 34.9 MiB, of a
/// 50,000-record drain 49.8 → 40.2 MiB, of a sustained photo run 25.2 → 21.5 MiB; CPU and
/// latency the same.
///
/// Blocks of [`MMAP_THRESHOLD`] and more get pages of their own, given back when freed, unless
/// `MALLOC_MMAP_THRESHOLD_` says otherwise. glibc's own threshold starts there but rises to the
/// largest block freed so far (up to 32 MiB): after the first backfill page (a megabyte of
/// JSON) every later one was carved out of the arenas, where what it left stayed resident.
/// Measured side by side (BENCHMARKS.md, "mmap threshold"). Call it first, before any thread
/// starts.
pub fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets a parameter of the allocator; no thread allocates yet.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// glibc's initial (and default) mmap threshold, held fixed. Photos (~43 KB) and WebSocket
/// frames (~58 KB) stay below it and are recycled by the arenas; what is above it is rare and
/// transient (HTTP answers, a page's JSON, batches of photos in a write buffer).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// SIGTERM (`systemctl stop`) or SIGINT (Ctrl-C).
    Stop,
    /// SIGHUP (`systemctl reload`, a closed terminal): read the config again.
    Reload,
}

/// The daemon's signals, installed when made (see [`shutdown_signal`] for why that matters):
/// from then on a SIGHUP no longer kills the process (its default action), whoever sends it.
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Call first thing, in the runtime.
    pub fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// The next signal that asks something.
    pub async fn next(&mut self) -> Asked {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        if self.term.is_none() && self.int.is_none() {
            // Cannot happen on Linux with a runtime; if it does, Ctrl-C still stops us.
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Asked::Stop,
                _ = recv(&mut self.hup) => return Asked::Reload,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => Asked::Stop,
            _ = recv(&mut self.int) => Asked::Stop,
            _ = recv(&mut self.hup) => Asked::Reload,
        }
    }
}

/// Tells systemd the service is reloading its config (`systemctl reload` waits for READY=1).
pub fn notify_reloading() {
    notify(NotifyState::Reloading, "reloading the config");
}

/// Resolves on SIGTERM (`systemctl stop`) or SIGINT (Ctrl-C). `ctrl_c()` alone misses SIGTERM.
/// A SIGHUP is ignored from this call on (a simulator in a closed SSH session goes on).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// stop that arrives between READY=1 and the first poll would otherwise meet the default
/// action and kill the process without its last flush and STOPPING=1 (a bench that stopped
/// the bridge right after READY=1 found it). Call it first thing, in the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let mut signals = Signals::install();
    async move { while signals.next().await != Asked::Stop {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sigterm_that_arrives_before_the_stop_is_awaited_is_not_lost() {
        let stop = shutdown_signal();
        // Before the fix this killed the test process (SIGTERM's default action).
        // SAFETY: raise has no preconditions; the handler is installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(10), stop)
            .await
            .expect("the stop resolves on the SIGTERM sent before it was polled");
    }

    #[tokio::test]
    async fn a_sighup_asks_for_a_reload_and_does_not_kill() {
        let mut signals = Signals::install();
        // SAFETY: raise has no preconditions; the handler is installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        // A SIGTERM another test raises reaches these handlers too: only the reload counts.
        let reload = async { while signals.next().await != Asked::Reload {} };
        tokio::time::timeout(std::time::Duration::from_secs(10), reload)
            .await
            .expect("the SIGHUP is seen as a reload");
    }
}
