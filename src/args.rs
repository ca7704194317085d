//! The command line's definitions (clap), and the man pages and shell completions generated from
//! them (`face2mqtt generate-docs DIR`, hidden: the .deb build runs it), so that `--help` and
//! `man face2mqtt` always say the same.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use face2mqtt::cli;
use face2mqtt::config::DEFAULT_PATH;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 runtime failure (a check failed, the terminal refused, ...), 2 usage, 78 config error.

Files: /etc/face2mqtt/config.toml (the config; every key is commented in \
/usr/share/doc/face2mqtt/examples/config.toml), /var/lib/face2mqtt (the spool). Logs: journalctl -u face2mqtt (fields TERMINAL, EVENT_ID, CODE).
Documentation: /usr/share/doc/face2mqtt/README.md.gz";

const RUN_ABOUT: &str = "\
The daemon, normally started by systemd as face2mqtt.service (Type=notify: READY=1 once the \
spool is open and every task runs). It keeps each terminal's record WebSocket alive, writes every \
record to the spool before anything else, publishes records, capture photos and Home Assistant \
discovery, and turns MQTT requests and GPIO exit buttons into the terminal's signed calls.

Signals: SIGTERM or SIGINT stop it cleanly (in-flight publishes drained for up to 5 s, the spool \
flushed). SIGHUP reads the config again: an invalid one is logged and the running one kept; a \
changed one restarts every task in this process.

Output: log lines to the journal when started by systemd (fields TERMINAL, EVENT_ID, CODE), to \
standard error otherwise; log.level in the config sets how much.";

const RUN_AFTER: &str = "\
Exit codes:
  0   stopped by a signal, cleanly
  1   a runtime failure (a task ended, the spool's card failed, ...): systemd restarts it
  78  a problem no restart fixes: the config is invalid, a [[button]] or [status_led] on a \
machine without usable GPIO, spool.dir on a file system too small for a record, a spool in a \
format this build does not read. The unit does not restart on it (RestartPreventExitStatus=78); \
face2mqtt check says what is wrong.

Files: /etc/face2mqtt/config.toml (-c), the spool in spool.dir (/var/lib/face2mqtt).";

const CHECK_ABOUT: &str = "\
Reads the config as run would, then tests what run needs, one line per check, in this order: \
the config; the spool's file system; each GPIO pin of a [[button]] or [status_led] (opened, \
never switched); per terminal a signed call to its HTTP API and its record WebSocket; the \
broker, and a publish it hands back (a round trip). Safe beside a running bridge.

Output: \"ok      <what>\" or \"FAILED  <what>: <why>\" per line on standard output; a config \
that cannot be read is one line on standard error naming the file and key.";

const CHECK_AFTER: &str = "\
Exit codes:
  0   every check passed
  1   a check failed that may pass later (a terminal or the broker unreachable, a refused login)
  78  the config is invalid, or a problem no restart fixes (no usable GPIO for a configured pin, \
the spool's file system too small for a record)

A password_file under /run/credentials/ exists only while systemd runs the service: check says \
so, and how to check the config anyway.

Files: /etc/face2mqtt/config.toml (-c), spool.dir (/var/lib/face2mqtt).";

const SETUP_ABOUT: &str = "\
The installer's first step after installing the package: asks for the terminal's address and \
password and for the broker's URL and login (or takes them as flags, for scripts), checks each \
as `face2mqtt check` does (asking again when one fails), writes a minimal config, and offers to \
start the service. Run it as root (sudo): it writes into /etc/face2mqtt.

Output: the questions, then \"ok      <what>\" or \"FAILED  <what>: <why>\" per check, as `check` prints \
them. Passwords are read without echo and never printed or written into the config.";

const SETUP_AFTER: &str = "\
Exit codes:
  0   the config is written (and the service started, when asked)
  1   a check failed and no other answer was given, a file could not be written, or \
systemctl failed
  2   a value is missing (without a terminal, every value must come from a flag), or the \
config exists, was edited, and --force was not given

Files: the config (-c, /etc/face2mqtt/config.toml: mode 0640, root:face2mqtt; relative paths \
are made absolute); beside it terminal-<terminal id>.password and, with a broker login, \
mqtt.password (mode 0600, owned by face2mqtt), in a directory made 0750. A config that is still \
the one the package installed is replaced without asking; another is kept as config.toml.bak. \
--spool-dir makes that directory, the service's. The service is offered only for the config \
it reads (/etc/face2mqtt/config.toml).";

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

impl TerminalArg {
    pub async fn call(&self, call: cli::TerminalCall) -> Result<(), cli::Failure> {
        cli::terminal(&self.config.config, self.terminal.as_deref(), call).await
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon: ingest, spool, publish, commands, buttons, Home Assistant discovery.
    #[command(long_about = RUN_ABOUT, after_long_help = RUN_AFTER)]
    Run(ConfigArg),
    /// Validate the config, then test each terminal and the broker.
    #[command(long_about = CHECK_ABOUT, after_long_help = CHECK_AFTER)]
    Check(ConfigArg),
    /// Ask for the terminal and the broker, check each, write a minimal config, start the service.
    #[command(long_about = SETUP_ABOUT, after_long_help = SETUP_AFTER)]
    Setup(cli::setup::SetupArgs),
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
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
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
    // clap's own `help` subcommands are not commands of ours: no page for them.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
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

    #[test]
    fn man_pages_have_no_help_leftovers_and_run_check_and_setup_state_output_exit_codes_and_files()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_docs(dir.path()).expect("generated");
        let pages: Vec<String> = std::fs::read_dir(dir.path().join("man"))
            .expect("man/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(pages.iter().all(|p| !p.contains("help")), "{pages:?}");
        assert!(
            pages.iter().any(|p| p == "face2mqtt-users-add.1"),
            "{pages:?}"
        );
        for page in ["face2mqtt-run.1", "face2mqtt-check.1", "face2mqtt-setup.1"] {
            let text = std::fs::read_to_string(dir.path().join("man").join(page)).expect("page");
            for needed in ["Exit codes", "/etc/face2mqtt/config.toml", "Output"] {
                assert!(text.contains(needed), "{page} lacks {needed}");
            }
            if page != "face2mqtt-setup.1" {
                assert!(text.contains("78"), "{page} names exit code 78");
            }
        }
    }
}
