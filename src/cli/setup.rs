//! `face2mqtt setup`: the installer's first five minutes. Asks for (or takes as flags) the
//! terminal's address and password and the broker's URL and login, checks each as `check` does,
//! and writes a minimal config with the passwords in files of their own (mode 0600, owned by the
//! service's user), then offers to start the service.
//!
//! What is checked is the config about to be written, parsed and validated as `run` reads it,
//! so a config `setup` wrote is one `check` passes.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::ask::Asker;
use super::{check, Failure};
use crate::config::{Config, DEFAULT_PATH};
use crate::secret::Secret;

/// The config `scripts/package-deb` installs: replaced without asking.
const INSTALLED: &str = include_str!("../../packaging/config.toml");
/// The service's user, who must read the password files.
const SERVICE_USER: &str = "face2mqtt";

/// The flags' defaults, named so that a value left as it was can be told from one given.
const DEFAULT_ID: &str = "front-door";
const DEFAULT_HTTP_PORT: u16 = 80;
const DEFAULT_WS_PORT: u16 = 9000;

#[derive(clap::Args, Clone)]
pub struct SetupArgs {
    /// Where to write the config; the password files go beside it.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// The terminal's address (its screen shows it under settings, network).
    #[arg(long)]
    pub terminal_host: Option<String>,
    /// A file holding the terminal's API password (its login password, 123456 from the factory).
    #[arg(long)]
    pub terminal_password_file: Option<PathBuf>,
    /// The terminal's id in topics and in Home Assistant.
    #[arg(long, default_value = DEFAULT_ID)]
    pub terminal_id: String,
    #[arg(long, default_value_t = DEFAULT_HTTP_PORT)]
    pub http_port: u16,
    #[arg(long, default_value_t = DEFAULT_WS_PORT)]
    pub ws_port: u16,
    /// The broker: mqtt://host[:1883] or mqtts://host[:8883].
    #[arg(long)]
    pub broker: Option<String>,
    /// The broker's login, if it wants one (Home Assistant's Mosquitto add-on does).
    #[arg(long)]
    pub broker_username: Option<String>,
    /// A file holding the broker login's password.
    #[arg(long)]
    pub broker_password_file: Option<PathBuf>,
    /// Where the spool goes (default: /var/lib/face2mqtt, the service's state directory).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Never ask: every value comes from a flag (the default when standard input is no terminal).
    #[arg(long)]
    pub no_input: bool,
    /// Replace a config that is not the one the package installed.
    #[arg(long)]
    pub force: bool,
    /// Start the service once the config is written (systemctl enable --now face2mqtt).
    #[arg(long)]
    pub start: bool,
}

/// What the site told us.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub id: String,
    pub host: String,
    pub http_port: u16,
    pub ws_port: u16,
    pub broker: String,
    pub broker_username: Option<String>,
    pub spool_dir: Option<PathBuf>,
}

/// The config text for `answers`, its passwords in `dir`'s `terminal-<id>.password` and
/// `mqtt.password`. Only what the site set; every other key keeps its default.
pub fn render(a: &Answers, dir: &Path, broker_password: bool) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let file = |name: &str| q(&dir.join(name).to_string_lossy());
    let mut t = String::from(
        "# Written by `face2mqtt setup`. Every other key, with its default and why:\n\
         # /usr/share/doc/face2mqtt/examples/config.toml (or examples/config.toml in the source).\n\n\
         [mqtt]\n",
    );
    t += &format!("url = {}\n", q(&a.broker));
    if let Some(user) = &a.broker_username {
        t += &format!("username = {}\n", q(user));
        if broker_password {
            t += &format!("password_file = {}\n", file("mqtt.password"));
        }
    }
    if let Some(dir) = &a.spool_dir {
        t += &format!("\n[spool]\ndir = {}\n", q(&dir.to_string_lossy()));
    }
    t += &format!("\n[[terminal]]\nid = {}\nhost = {}\n", q(&a.id), q(&a.host));
    if a.http_port != 80 {
        t += &format!("http_port = {}\n", a.http_port);
    }
    if a.ws_port != 9000 {
        t += &format!("ws_port = {}\n", a.ws_port);
    }
    t += &format!("password_file = {}\n", file(&terminal_password_file(&a.id)));
    t
}

/// The terminal's password file beside the config. `terminal-` keeps it apart from the
/// broker's `mqtt.password` whatever the terminal is called (an id `mqtt` once shared it).
fn terminal_password_file(id: &str) -> String {
    format!("terminal-{id}.password")
}

fn needed(flag: &str) -> Failure {
    Failure::Usage(format!(
        "setup: {flag} is needed (or run it on a terminal to be asked)"
    ))
}

/// As `run` reads a `password_file` (a trailing LF or CRLF is not part of it).
fn read_password(path: &Option<PathBuf>, flag: &str) -> Result<Option<Secret>, Failure> {
    let read =
        |p| crate::config::read_secret(p).map_err(|e| Failure::Usage(format!("{flag}: {e}")));
    path.as_deref().map(read).transpose()
}

pub async fn setup(mut args: SetupArgs) -> Result<(), Failure> {
    let ask = Asker {
        interactive: !args.no_input && std::io::stdin().is_terminal(),
    };
    // The service reads the config from /, not from here: no relative path goes into it.
    let absolute = |p: &Path| {
        std::path::absolute(p).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))
    };
    let serves = args.config == Path::new(DEFAULT_PATH);
    args.config = absolute(&args.config)?;
    args.spool_dir = args.spool_dir.as_deref().map(absolute).transpose()?;
    if args.broker_password_file.is_some() && args.broker_username.is_none() {
        return Err(Failure::Usage(
            "setup: --broker-password-file needs --broker-username".into(),
        ));
    }
    if !ask.interactive {
        for (given, flag) in [
            (args.terminal_host.is_some(), "--terminal-host"),
            (
                args.terminal_password_file.is_some(),
                "--terminal-password-file",
            ),
            (args.broker.is_some(), "--broker"),
            (
                args.broker_username.is_none() || args.broker_password_file.is_some(),
                "--broker-password-file",
            ),
        ] {
            if !given {
                return Err(needed(flag));
            }
        }
    }
    let existing = std::fs::read_to_string(&args.config).ok();
    let edited = existing.as_deref().filter(|t| *t != INSTALLED);
    if edited.is_some() && !args.force {
        let replace = ask.interactive
            && ask.yes(
                &format!(
                    "{} exists and was edited; replace it?",
                    args.config.display()
                ),
                false,
            )?;
        if !replace {
            return Err(Failure::Usage(format!(
                "{} exists and is not the installed one; --force replaces it",
                args.config.display()
            )));
        }
    }
    if edited.is_some() {
        let backup = args.config.with_extension("toml.bak");
        std::fs::copy(&args.config, &backup).map_err(|e| {
            Failure::Runtime(format!("keeping a copy of {}: {e}", args.config.display()))
        })?;
        println!("ok      the old config is kept as {}", backup.display());
    }
    let dir = args
        .config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let mut a = Answers {
        id: args.terminal_id.clone(),
        host: args.terminal_host.clone().unwrap_or_default(),
        http_port: args.http_port,
        ws_port: args.ws_port,
        broker: args.broker.clone().unwrap_or_default(),
        broker_username: args.broker_username.clone(),
        spool_dir: args.spool_dir.clone(),
    };
    // Run again on a config of its own: its answers are the questions' defaults (not the
    // installed one's placeholders).
    if ask.interactive {
        if let Some(before) = edited.and_then(|t| Config::parse(t).ok()) {
            prefill(&mut a, &args, &before);
        }
    }
    // What no answer to a question can mend (the id, the spool, the ports), said before any.
    let mut probe = a.clone();
    probe.host = "192.0.2.1".into();
    probe.broker = "mqtt://127.0.0.1".into();
    parsed(&probe, &dir, false)?;
    // The terminal, until it answers (or the installer gives up). Flags answer the first round.
    let mut given_pw = read_password(&args.terminal_password_file, "--terminal-password-file")?;
    let terminal_pw = loop {
        if ask.interactive && (a.host.is_empty() || given_pw.is_none()) {
            let now = (!a.host.is_empty()).then(|| a.host.clone());
            let answer = ask.line(
                "The terminal's IP address (a port other than 80: ADDRESS:PORT)",
                now.as_deref(),
            )?;
            (a.host, a.http_port) = host_and_port(&answer, a.http_port);
        }
        if a.host.is_empty() {
            return Err(needed("--terminal-host"));
        }
        let pw = match given_pw.take() {
            Some(p) => p,
            None if ask.interactive => {
                ask.secret("The terminal's password (123456 from the factory)")?
            }
            None => return Err(needed("--terminal-password-file")),
        };
        let t = match terminal_of(&a, &dir, &pw) {
            Err(Failure::Usage(why)) if ask.interactive => {
                println!("FAILED  {why}");
                a.host.clear();
                given_pw = Some(pw);
                continue;
            }
            t => t?,
        };
        let (ok, lines) = check::terminal(&t).await;
        check::print_lines(&lines);
        if ok {
            break pw;
        }
        if !ask.interactive || !ask.yes("Try another address or password?", true)? {
            return Err(Failure::Reported);
        }
    };

    // The broker, likewise.
    let mut broker_pw = read_password(&args.broker_password_file, "--broker-password-file")?;
    let mut first = true;
    loop {
        let given = first && args.broker.is_some();
        if ask.interactive && !given {
            let now = if a.broker.is_empty() {
                "mqtt://127.0.0.1:1883".to_string()
            } else {
                a.broker.clone()
            };
            a.broker = ask.line(
                "The MQTT broker (Home Assistant's Mosquitto add-on: mqtt://<its address>:1883)",
                Some(&now),
            )?;
            let user = ask.line("Its username (none: leave empty)", None)?;
            a.broker_username = (!user.is_empty()).then_some(user);
            broker_pw = None;
        }
        first = false;
        if a.broker.is_empty() {
            return Err(needed("--broker"));
        }
        if a.broker_username.is_some() && broker_pw.is_none() {
            if !ask.interactive {
                return Err(needed("--broker-password-file"));
            }
            broker_pw = Some(ask.secret("Its password")?);
        }
        let mut mqtt = match parsed(&a, &dir, broker_pw.is_some()) {
            Err(Failure::Usage(why)) if ask.interactive => {
                println!("FAILED  {why}");
                continue;
            }
            c => c?.mqtt,
        };
        mqtt.password = broker_pw.clone();
        mqtt.password_file = None;
        let (ok, lines) = check::broker(&mqtt).await;
        check::print_lines(&lines);
        if ok {
            break;
        }
        if !ask.interactive || !ask.yes("Try another broker or login?", true)? {
            return Err(Failure::Reported);
        }
    }

    write_files(&a, &dir, &args.config, &terminal_pw, broker_pw.as_ref())?;
    println!(
        "ok      wrote {} (check it any time: face2mqtt check -c {})",
        args.config.display(),
        args.config.display()
    );
    if !serves {
        // The service reads /etc/face2mqtt/config.toml, not this one.
        println!(
            "        run the bridge on it: face2mqtt run -c {}",
            args.config.display()
        );
        return Ok(());
    }
    // The config is written: an answer that never comes is a no.
    let start = args.start
        || ask.interactive
            && ask
                .yes(
                    "Start the bridge now (systemctl enable --now face2mqtt)?",
                    true,
                )
                .unwrap_or(false);
    if start {
        start_service()?;
    } else {
        println!("        start it with: sudo systemctl enable --now face2mqtt");
    }
    Ok(())
}

/// Takes what `before` (the config being replaced) says where no flag said otherwise.
fn prefill(a: &mut Answers, args: &SetupArgs, before: &Config) {
    if let Some(t) = before.terminals.first() {
        if args.terminal_host.is_none() {
            a.host = t.host.clone();
        }
        if args.terminal_id == DEFAULT_ID {
            a.id = t.id.clone();
        }
        if args.http_port == DEFAULT_HTTP_PORT {
            a.http_port = t.http_port;
        }
        if args.ws_port == DEFAULT_WS_PORT {
            a.ws_port = t.ws_port;
        }
    }
    if args.broker.is_none() {
        a.broker = before.mqtt.url.to_string();
    }
    if args.spool_dir.is_none() && before.spool.dir != Path::new(crate::config::DEFAULT_SPOOL_DIR) {
        a.spool_dir = Some(before.spool.dir.clone());
    }
}

/// The answers as `run` would read them once written (validated; passwords not yet on disk).
fn parsed(a: &Answers, dir: &Path, broker_password: bool) -> Result<Config, Failure> {
    let text = render(a, dir, broker_password);
    let config = Config::parse(&text).map_err(Failure::Usage)?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(Failure::Usage(format!("setup: {}", problems.join("; "))))
    }
}

fn terminal_of(
    a: &Answers,
    dir: &Path,
    pw: &Secret,
) -> Result<crate::config::TerminalConfig, Failure> {
    // The broker is asked for after the terminal: any valid one stands in meanwhile.
    let mut a = a.clone();
    if a.broker.is_empty() {
        a.broker = "mqtt://127.0.0.1".into();
    }
    let mut t = parsed(&a, dir, false)?.terminals.remove(0);
    t.password = Some(pw.clone());
    t.password_file = None;
    Ok(t)
}

/// The passwords first (0600, the service's user's), then the config (0640, root:face2mqtt as
/// the package has it), each written whole under a temporary name and renamed into place.
fn write_files(
    a: &Answers,
    dir: &Path,
    config: &Path,
    terminal_pw: &Secret,
    broker_pw: Option<&Secret>,
) -> Result<(), Failure> {
    let fail = |path: &Path, e: std::io::Error| {
        Failure::Runtime(format!("writing {}: {e}", path.display()))
    };
    // 0750 whatever the umask (a world-writable directory would let anyone swap the files).
    let mkdir = |d: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(d)
            .map_err(|e| fail(d, e))
    };
    mkdir(dir)?;
    let user = owner(SERVICE_USER);
    if let Some(spool) = &a.spool_dir {
        // The default (/var/lib/face2mqtt) is the unit's StateDirectory, made by systemd; one
        // of the site's own must exist, and be the service's.
        mkdir(spool)?;
        if let Some((uid, gid)) = user.filter(|_| is_root()) {
            std::os::unix::fs::chown(spool, Some(uid), Some(gid)).map_err(|e| fail(spool, e))?;
        }
    }
    let write = |path: &Path, text: &str, mode, owner| {
        write_whole(path, text.as_bytes(), mode, owner).map_err(|e| fail(path, e))
    };
    let terminal_file = dir.join(terminal_password_file(&a.id));
    write(&terminal_file, terminal_pw.expose(), 0o600, user)?;
    if let Some(pw) = broker_pw {
        write(&dir.join("mqtt.password"), pw.expose(), 0o600, user)?;
    }
    let group = user.map(|(_, gid)| (0, gid));
    write(config, &render(a, dir, broker_pw.is_some()), 0o640, group)
}

fn write_whole(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("setup-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    // On the open file, not by name: nothing can swap the path in between.
    let written = (|| {
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner.filter(|_| is_root()) {
            // Only root can give a file away; as anyone else it stays the writer's.
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `ADDRESS:PORT` as typed at the address question: the HTTP port apart (an IPv6 address, with
/// its colons, stays whole unless bracketed).
fn host_and_port(answer: &str, port: u16) -> (String, u16) {
    let answer = answer.trim();
    let split = match answer.strip_prefix('[') {
        Some(v6) => v6.split_once("]:"),
        None if answer.matches(':').count() == 1 => answer.split_once(':'),
        None => None,
    };
    match split.and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?))) {
        Some((h, p)) => (h.to_string(), p),
        None => (
            answer.trim_matches(|c| c == '[' || c == ']').to_string(),
            port,
        ),
    }
}

/// The uid and gid of `name`, when that user exists.
fn owner(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn start_service() -> Result<(), Failure> {
    if !Path::new("/run/systemd/system").exists() {
        return Err(Failure::Runtime(
            "this machine does not run systemd: start the bridge with `face2mqtt run -c <config>`"
                .into(),
        ));
    }
    let systemctl = |args: &[&str]| {
        let status = std::process::Command::new("systemctl").args(args).status();
        status.map_err(|e| Failure::Runtime(format!("systemctl: {e}")))
    };
    let status = systemctl(&["enable", "--now", "face2mqtt"])?;
    // A running bridge reads the new config on a reload (SIGHUP).
    let reload = systemctl(&["reload-or-restart", "face2mqtt"])?;
    if status.success() && reload.success() {
        println!(
            "ok      face2mqtt started: systemctl status face2mqtt, journalctl -u face2mqtt -f"
        );
        Ok(())
    } else {
        Err(Failure::Runtime(
            "systemctl could not start face2mqtt (see above)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers {
            id: "front-door".into(),
            host: "192.168.1.50".into(),
            http_port: 80,
            ws_port: 9000,
            broker: "mqtt://127.0.0.1:1883".into(),
            broker_username: None,
            spool_dir: None,
        }
    }

    #[test]
    fn a_rendered_config_holds_only_what_the_site_set_and_validates() {
        let text = render(&answers(), Path::new("/etc/face2mqtt"), false);
        let c = Config::parse(&text).expect("parses");
        assert_eq!(c.validate(), Vec::<String>::new());
        assert!(
            !text.contains("http_port") && !text.contains("username") && !text.contains("[spool]"),
            "{text}"
        );
        assert_eq!(
            c.terminals[0].password_file.as_deref(),
            Some(Path::new("/etc/face2mqtt/terminal-front-door.password"))
        );
    }

    #[test]
    fn a_broker_login_and_other_ports_are_written_and_quoted() {
        let mut a = answers();
        a.broker_username = Some("ha \"bridge\"".into());
        a.http_port = 8080;
        a.spool_dir = Some("/srv/spool".into());
        let text = render(&a, Path::new("/etc/f"), true);
        let c = Config::parse(&text).expect("parses");
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.mqtt.username.as_deref(), Some("ha \"bridge\""));
        assert_eq!(
            c.mqtt.password_file.as_deref(),
            Some(Path::new("/etc/f/mqtt.password"))
        );
        assert_eq!(
            (c.terminals[0].http_port, c.terminals[0].ws_port),
            (8080, 9000)
        );
        assert_eq!(c.spool.dir, Path::new("/srv/spool"));
    }

    #[test]
    fn an_address_typed_with_a_port_gives_the_http_port() {
        assert_eq!(
            host_and_port("10.0.0.5:8080", 80),
            ("10.0.0.5".into(), 8080)
        );
        assert_eq!(host_and_port(" 10.0.0.5 ", 80), ("10.0.0.5".into(), 80));
        assert_eq!(host_and_port("[fe80::1]:81", 80), ("fe80::1".into(), 81));
        assert_eq!(host_and_port("fe80::1", 80), ("fe80::1".into(), 80));
        assert_eq!(host_and_port("h:notaport", 80), ("h:notaport".into(), 80));
    }

    #[test]
    fn a_terminal_called_mqtt_keeps_its_password_apart_from_the_brokers() {
        let mut a = answers();
        a.id = "mqtt".into();
        a.broker_username = Some("bridge".into());
        let c = Config::parse(&render(&a, Path::new("/e"), true)).expect("parses");
        assert_ne!(c.terminals[0].password_file, c.mqtt.password_file);
    }

    #[test]
    fn a_config_of_its_own_gives_the_questions_their_defaults_where_no_flag_spoke() {
        let mut before = answers();
        before.host = "10.1.2.3".into();
        before.http_port = 8080;
        before.id = "gate".into();
        before.broker = "mqtt://10.1.2.4:1884".into();
        let before = Config::parse(&render(&before, Path::new("/e"), false)).expect("parses");
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: SetupArgs,
        }
        let mut args = <Only as clap::Parser>::parse_from(["setup"]).args;
        args.ws_port = 9001;
        let mut a = answers();
        a.ws_port = 9001;
        prefill(&mut a, &args, &before);
        assert_eq!(
            (
                a.host.as_str(),
                a.http_port,
                a.ws_port,
                a.id.as_str(),
                a.broker.as_str()
            ),
            ("10.1.2.3", 8080, 9001, "gate", "mqtt://10.1.2.4:1884")
        );
    }

    #[test]
    fn no_password_is_ever_in_the_config_text() {
        let text = render(&answers(), Path::new("/etc/face2mqtt"), false);
        assert!(!text.contains("password ="), "{text}");
    }
}
