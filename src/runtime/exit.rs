//! How a command ends: the documented exit codes, shared by the CLI and the daemon.

use std::process::ExitCode;

#[derive(Debug)]
pub enum Failure {
    /// Exit 78: the config is invalid (systemd's unit does not restart on it).
    Config(String),
    /// Exit 2.
    Usage(String),
    /// Exit 1.
    Runtime(String),
    /// Exit 1; the details were already printed.
    Reported,
    /// Exit 78; the details (a problem no restart fixes) were already printed.
    ReportedConfig,
}

pub const RUNTIME: u8 = 1;
pub const USAGE: u8 = 2;
/// sysexits' EX_CONFIG.
pub const CONFIG: u8 = 78;

impl Failure {
    /// The exit code, after printing the message for a person.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Config(msg) => {
                eprintln!("face2mqtt: config error: {msg}");
                ExitCode::from(CONFIG)
            }
            Failure::Usage(msg) => {
                eprintln!("face2mqtt: {msg}");
                ExitCode::from(USAGE)
            }
            Failure::Runtime(msg) => {
                eprintln!("face2mqtt: {msg}");
                ExitCode::from(RUNTIME)
            }
            Failure::Reported => ExitCode::from(RUNTIME),
            Failure::ReportedConfig => ExitCode::from(CONFIG),
        }
    }
}
