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

impl Failure {
    /// The exit code, after printing the message for a person.
    pub fn report(self) -> ExitCode {
        // 78 is sysexits' EX_CONFIG.
        let (code, message) = match self {
            Failure::Config(msg) => (78, Some(format!("config error: {msg}"))),
            Failure::Usage(msg) => (2, Some(msg)),
            Failure::Runtime(msg) => (1, Some(msg)),
            Failure::Reported => (1, None),
            Failure::ReportedConfig => (78, None),
        };
        if let Some(msg) = message {
            eprintln!("face2mqtt: {msg}");
        }
        ExitCode::from(code)
    }
}
