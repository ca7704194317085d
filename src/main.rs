//! The `face2mqtt` command. Exit codes: 0 ok, 1 runtime failure, 2 usage, 78 config error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use face2mqtt::cli;
use face2mqtt::config::DEFAULT_PATH;

#[derive(Parser)]
#[command(
    name = "face2mqtt",
    version,
    about = "Face-recognition door terminal ⇄ MQTT / Home Assistant bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// The config file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_PATH, global = true)]
    config: PathBuf,
}

#[derive(clap::Args, Clone)]
struct TerminalArg {
    #[command(flatten)]
    config: ConfigArg,
    /// Which terminal (its `id`); may be left out when the config has only one.
    #[arg(short = 't', long, global = true)]
    terminal: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: ingest, spool, publish, commands, buttons, Home Assistant discovery.
    Run(ConfigArg),
    /// Validate the config, then test each terminal and the broker.
    Check(ConfigArg),
    /// Run the terminal simulator (HTTP API, record WebSocket and a control API).
    Simulate(cli::SimulateArgs),
    /// Open the door.
    Open {
        #[command(flatten)]
        t: TerminalArg,
        /// Remark stored with the opening on the terminal.
        #[arg(long)]
        remark: Option<String>,
    },
    /// Reboot the terminal.
    Reboot(TerminalArg),
    /// Set the terminal's clock from this machine's.
    SyncTime(TerminalArg),
    /// Show the terminal's device information (and, with --all, its settings).
    Info {
        #[command(flatten)]
        t: TerminalArg,
        /// Also print the network, smart-face and peripheral settings.
        #[arg(long)]
        all: bool,
    },
    /// Manage the terminal's users.
    Users {
        #[command(flatten)]
        t: TerminalArg,
        #[command(subcommand)]
        action: cli::UsersAction,
    },
    /// List recognition records stored on the terminal, as the bridge would publish them.
    Records {
        #[command(flatten)]
        t: TerminalArg,
        #[command(flatten)]
        args: cli::RecordsArgs,
    },
    /// Read or write the terminal's settings objects (network, smartface, perpara) as JSON.
    Settings {
        #[command(flatten)]
        t: TerminalArg,
        #[command(subcommand)]
        action: cli::SettingsAction,
    },
    /// Send a vendor JSON command (/api/device/jsonCmd) and print the answer.
    JsonCmd {
        #[command(flatten)]
        t: TerminalArg,
        /// The command, as JSON text.
        json: String,
    },
}

fn main() -> ExitCode {
    let args = Cli::parse();
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
            Command::Simulate(a) => cli::simulate(a).await,
            Command::Open { t, remark } => {
                cli::device(
                    &t.config.config,
                    t.terminal.as_deref(),
                    cli::DeviceCall::Open(remark),
                )
                .await
            }
            Command::Reboot(t) => {
                cli::device(
                    &t.config.config,
                    t.terminal.as_deref(),
                    cli::DeviceCall::Reboot,
                )
                .await
            }
            Command::SyncTime(t) => {
                cli::device(
                    &t.config.config,
                    t.terminal.as_deref(),
                    cli::DeviceCall::SyncTime,
                )
                .await
            }
            Command::Info { t, all } => {
                cli::device(
                    &t.config.config,
                    t.terminal.as_deref(),
                    cli::DeviceCall::Info { all },
                )
                .await
            }
            Command::Users { t, action } => {
                cli::users(&t.config.config, t.terminal.as_deref(), action).await
            }
            Command::Records { t, args } => {
                cli::records(&t.config.config, t.terminal.as_deref(), args).await
            }
            Command::Settings { t, action } => {
                cli::settings(&t.config.config, t.terminal.as_deref(), action).await
            }
            Command::JsonCmd { t, json } => {
                cli::json_cmd(&t.config.config, t.terminal.as_deref(), &json).await
            }
        }
    });
    // A spool thread stuck on a dead disk must not keep the process from ending (systemd's
    // TimeoutStopSec would kill it, less politely).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
