//! The `face2mqtt` command. Exit codes: 0 ok, 1 runtime failure, 2 usage, 78 config error.

mod args;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use face2mqtt::cli::{self, TerminalCall};

fn main() -> ExitCode {
    face2mqtt::runtime::service::tune_malloc();
    let args = Cli::parse();
    if !matches!(args.command, Command::Run(_) | Command::Simulate(_)) {
        // A one-shot command piped into `head` ends quietly when the pipe closes, as other
        // tools do, instead of panicking on the failed write (Rust ignores SIGPIPE). The
        // daemon and the simulator keep ignoring it: their sockets report EPIPE instead.
        // SAFETY: sets a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Command::GenerateDocs { out } = &args.command {
        return match args::generate_docs(out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("face2mqtt: writing the docs to {}: {e}", out.display());
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("face2mqtt: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Run(c) => cli::run(&c.config).await,
            Command::Check(c) => cli::check(&c.config).await,
            Command::Setup(a) => cli::setup::setup(a).await,
            Command::Simulate(a) => cli::simulate(a).await,
            Command::Open { t, remark } => t.call(TerminalCall::Open(remark)).await,
            Command::Reboot(t) => t.call(TerminalCall::Reboot).await,
            Command::SyncTime(t) => t.call(TerminalCall::SyncTime).await,
            Command::Info { t, all } => t.call(TerminalCall::Info { all }).await,
            Command::Users { t, action } => t.call(TerminalCall::Users(action)).await,
            Command::Records { t, args } => t.call(TerminalCall::Records(args)).await,
            Command::Settings { t, action } => t.call(TerminalCall::Settings(action)).await,
            Command::JsonCmd { t, json } => t.call(TerminalCall::JsonCmd(json)).await,
            Command::Spool { config, action } => {
                // sled and the photo files block: not on the runtime's workers.
                let path = config.config.clone();
                tokio::task::spawn_blocking(move || cli::spool::spool(&path, action))
                    .await
                    .unwrap_or_else(|e| Err(cli::Failure::Runtime(format!("spool: {e}"))))
            }
            // Handled above, without a runtime.
            Command::GenerateDocs { .. } => Ok(()),
        }
    });
    // A spool thread stuck on a dead disk must not keep the process from ending (systemd's
    // TimeoutStopSec would kill it, less politely).
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
