//! Living under systemd or in a terminal: logging to journald or stderr.

use std::os::unix::fs::MetadataExt;

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

/// Tells systemd (Type=notify) that every task is running. Outside systemd it does nothing.
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the service is stopping (so `systemctl status` says so while we drain).
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
}

/// Resolves on SIGTERM (`systemctl stop`) or SIGINT (Ctrl-C). `ctrl_c()` alone misses SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
