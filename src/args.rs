//! The command line's definitions (clap), and the man pages and shell completions generated from
//! them (`face2mqtt generate-docs DIR`, hidden: the .deb build runs it), so that `--help` and
//! `man face2mqtt` always say the same.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use face2mqtt::cli;
use face2mqtt::config::DEFAULT_PATH;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 runtime failure (a check failed, the terminal refused, ...), 2 usage, 78 config error.

Files: /etc/face2mqtt/config.toml (the config; a commented example is installed there), \
/var/lib/face2mqtt (the spool). Logs: journalctl -u face2mqtt (fields TERMINAL, EVENT_ID, CODE).
Documentation: /usr/share/doc/face2mqtt/README.md.gz";

#[derive(Parser)]
#[command(
    name = "face2mqtt",
    version,
    about = "Face-recognition door terminal ⇄ MQTT / Home Assistant bridge",
    long_about = "Face-recognition door terminal ⇄ MQTT / Home Assistant bridge.\n\n\
        `face2mqtt run` is the daemon (normally started by systemd as face2mqtt.service): it keeps \
        the terminal's record WebSocket alive, writes every record durably to its spool, \
        publishes records, capture photos and Home Assistant discovery over MQTT, and turns \
        MQTT requests and GPIO exit buttons into the terminal's signed open / reboot / \
        sync-time calls. The other commands talk to a terminal directly, check a config, or \
        run a terminal simulator.",
    after_help = AFTER_HELP,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// The config file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_PATH, global = true)]
    pub config: PathBuf,
}

#[derive(clap::Args, Clone)]
pub struct TerminalArg {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which terminal (its `id`); may be left out when the config has only one.
    #[arg(short = 't', long, global = true)]
    pub terminal: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// See and mend the spool of a stopped bridge: what it holds, and its quarantine.
    Spool {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: cli::spool::SpoolAction,
    },
    /// Send a vendor JSON command (/api/device/jsonCmd) and print the answer.
    JsonCmd {
        #[command(flatten)]
        t: TerminalArg,
        /// The command, as JSON text.
        json: String,
    },
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory: man/ and completions/ are made in it.
        out: PathBuf,
    },
}

/// Writes `out/man/face2mqtt.1` and one page per visible subcommand (`face2mqtt-run.1`, ...,
/// `face2mqtt-users-add.1`), and `out/completions/` for bash, zsh and fish.
pub fn generate_docs(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command();
    cmd.build();
    write_man_pages(&cmd, &man)?;
    let mut cmd = Cli::command();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "face2mqtt", &completions)?;
    }
    Ok(())
}

/// `cmd` is built, so a subcommand's display name is `face2mqtt-users-add` and so on.
fn write_man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut text)?;
    std::fs::write(dir.join(format!("{name}.1")), text)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
