// Over 450 lines: one short function per installer subcommand (check, open, users, records, settings, simulate ...).
//! The command-line subcommands other than the daemon: `check`, `simulate`, and one-shot terminal
//! calls for installers. Each returns a [`Failure`] that `main` maps to the documented exit code.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TerminalConfig};
use crate::integrations::terminal::{
    Endpoint, PersonType, RecordQuery, TerminalClient, TerminalError, User, UserQuery,
};
use crate::pipeline::record::{self, Source};
pub use crate::runtime::exit::Failure;
use crate::secret::Secret;
use crate::simulator::{control, SimConfig, Simulator};

mod ask;
pub mod check;
pub mod setup;
pub mod spool;

pub use check::check;

pub fn load(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Config(e.to_string()))
}

fn pick<'a>(config: &'a Config, id: Option<&str>) -> Result<&'a TerminalConfig, Failure> {
    let ids = || {
        config
            .terminals
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match id {
        Some(id) => config.terminal(id).ok_or_else(|| {
            Failure::Usage(format!(
                "--terminal {id}: no such terminal in the config (have: {})",
                ids()
            ))
        }),
        None if config.terminals.len() == 1 => Ok(&config.terminals[0]),
        None => Err(Failure::Usage(format!(
            "the config has several terminals; choose one with --terminal ({})",
            ids()
        ))),
    }
}

fn client_for(t: &TerminalConfig) -> Result<TerminalClient, Failure> {
    Endpoint::of(t)
        .map(TerminalClient::new)
        .map_err(Failure::Config)
}

fn print_json(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

// ---- run ------------------------------------------------------------------------------------

/// The daemon, until a stop. A SIGHUP reads the config again: an invalid one is logged and the
/// running one kept; an unchanged one changes nothing; a changed one stops every task in the
/// order that loses nothing (as a stop does) and starts them again with it, in this process.
pub async fn run(path: &Path) -> Result<(), Failure> {
    use crate::runtime::service::{self, Asked};
    // First: a stop from now on is a clean stop, a SIGHUP a reload (see `shutdown_signal`).
    let mut signals = service::Signals::install();
    let mut config = load(path)?;
    service::init_logging(&config.log.level);
    crate::runtime::supervisor::install_panic_hook();
    loop {
        let pins: crate::runtime::daemon::PinsFactory = Box::new(|| {
            crate::door::gpio::RppalPins::new()
                .map(|p| Box::new(p) as Box<dyn crate::door::gpio::Pins>)
        });
        let running = fingerprint(&config);
        let level = config.log.level.clone();
        let mut next = None;
        let stop = async {
            loop {
                if signals.next().await == Asked::Stop {
                    return;
                }
                match load(path) {
                    Err(e) => {
                        let why = match e {
                            Failure::Config(w) | Failure::Runtime(w) | Failure::Usage(w) => w,
                            Failure::Reported | Failure::ReportedConfig => "see above".into(),
                        };
                        tracing::error!("reload refused, the running config is kept: {why}");
                    }
                    Ok(new) if fingerprint(&new) == running => {
                        tracing::info!(config = %path.display(), "reload: the config is unchanged; nothing to do");
                    }
                    Ok(new) => {
                        if new.log.level != level {
                            tracing::warn!("reload: log.level takes effect at the next restart");
                        }
                        tracing::info!(config = %path.display(), "reload: the config changed; restarting every task with it");
                        service::notify_reloading();
                        next = Some(new);
                        return;
                    }
                }
            }
        };
        crate::runtime::daemon::run(config, pins, stop).await?;
        match next {
            Some(new) => config = new,
            None => return Ok(()),
        }
    }
}

/// What a reload compares: every setting, and the secrets read from files (a changed password
/// file is a changed config). A hash, so no secret is kept twice.
fn fingerprint(config: &Config) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{config:?}").hash(&mut h);
    config
        .mqtt
        .password
        .as_ref()
        .map(Secret::expose)
        .hash(&mut h);
    for t in &config.terminals {
        t.password.as_ref().map(Secret::expose).hash(&mut h);
    }
    h.finish()
}

// ---- one-shot terminal calls -----------------------------------------------------------------

/// A one-shot call to one terminal of the config.
pub enum TerminalCall {
    Open(Option<String>),
    Reboot,
    SyncTime,
    Info { all: bool },
    Users(UsersAction),
    Records(RecordsArgs),
    Settings(SettingsAction),
    JsonCmd(String),
}

pub async fn terminal(
    path: &Path,
    terminal: Option<&str>,
    call: TerminalCall,
) -> Result<(), Failure> {
    let config = load(path)?;
    let t = pick(&config, terminal)?;
    let fail = failed(t);
    match call {
        // These two read their arguments before they need the terminal.
        TerminalCall::Records(args) => return records(t, args).await,
        TerminalCall::JsonCmd(json) => return json_cmd(t, &json).await,
        TerminalCall::Users(action) => return users(t, &client_for(t)?, action).await,
        TerminalCall::Settings(action) => return settings(t, &client_for(t)?, action).await,
        TerminalCall::Open(remark) => {
            client_for(t)?.open(remark.as_deref()).await.map_err(fail)?;
            println!("{}: door opened", t.id);
        }
        TerminalCall::Reboot => {
            client_for(t)?.reboot().await.map_err(fail)?;
            println!("{}: rebooting", t.id);
        }
        TerminalCall::SyncTime => {
            client_for(t)?.sync_time().await.map_err(fail)?;
            println!(
                "{}: clock set to {}",
                t.id,
                humantime::format_rfc3339_seconds(SystemTime::now())
            );
        }
        TerminalCall::Info { all } => {
            let c = client_for(t)?;
            let info = c.information().await.map_err(fail)?;
            if !all {
                print_json(&info);
                return Ok(());
            }
            let network = c.network().await.map_err(fail)?;
            let smart_face = c.smart_face().await.map_err(fail)?;
            let peripheral = c.peripheral().await.map_err(fail)?;
            print_json(&serde_json::json!({
                "information": info, "network": network, "smartface": smart_face, "perpara": peripheral,
            }));
        }
    }
    Ok(())
}

/// A terminal's error as the command's failure, naming the terminal.
fn failed(t: &TerminalConfig) -> impl Fn(TerminalError) -> Failure + Copy + '_ {
    move |e| Failure::Runtime(format!("terminal {}: {e}", t.id))
}

// ---- users ----------------------------------------------------------------------------------

#[derive(clap::Args, Clone)]
pub struct UserFields {
    /// User id (at most 16 characters).
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub name: Option<String>,
    /// staff, visitor or blacklist.
    #[arg(long = "type", value_parser = parse_person_type)]
    pub person_type: Option<PersonType>,
    /// A JPEG of the face, sent base64-encoded.
    #[arg(long)]
    pub photo: Option<PathBuf>,
    #[arg(long)]
    pub job_number: Option<String>,
    #[arg(long)]
    pub department: Option<String>,
    #[arg(long)]
    pub ic_number: Option<String>,
    #[arg(long)]
    pub mobile: Option<String>,
    #[arg(long)]
    pub remark: Option<String>,
}

#[derive(clap::Subcommand, Clone)]
pub enum UsersAction {
    /// List users, optionally of one type.
    List {
        #[arg(long = "type", value_parser = parse_person_type)]
        person_type: Option<PersonType>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a user.
    Add(UserFields),
    /// Change fields of an existing user.
    Update(UserFields),
    /// Delete a user by id, or every user with `all`.
    Delete { id: String },
}

fn parse_person_type(s: &str) -> Result<PersonType, String> {
    PersonType::parse(s)
        .ok_or_else(|| format!("`{s}` is not staff, visitor, blacklist or stranger"))
}

fn user_from(fields: &UserFields, base: User) -> Result<User, Failure> {
    let mut u = base;
    u.user_id = fields.id.clone();
    if let Some(n) = &fields.name {
        u.name = n.clone();
    }
    if let Some(t) = fields.person_type {
        u.user_type = t.code();
    }
    if let Some(p) = &fields.photo {
        let bytes = std::fs::read(p)
            .map_err(|e| Failure::Usage(format!("--photo {}: {e}", p.display())))?;
        if bytes.len() < 2 || bytes[..2] != [0xFF, 0xD8] {
            return Err(Failure::Usage(format!(
                "--photo {}: not a JPEG file",
                p.display()
            )));
        }
        u.photo = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    let set = |dst: &mut String, src: &Option<String>| {
        if let Some(s) = src {
            *dst = s.clone();
        }
    };
    set(&mut u.job_number, &fields.job_number);
    set(&mut u.ic_number, &fields.ic_number);
    set(&mut u.mobile, &fields.mobile);
    set(&mut u.remark, &fields.remark);
    if let Some(d) = &fields.department {
        u.department = Some(d.clone());
    }
    Ok(u)
}

async fn users(t: &TerminalConfig, c: &TerminalClient, action: UsersAction) -> Result<(), Failure> {
    let fail = failed(t);
    match action {
        UsersAction::List { person_type, json } => {
            let users = c
                .all_users(person_type.map(PersonType::code))
                .await
                .map_err(fail)?;
            if json {
                print_json(&users);
            } else {
                println!(
                    "{:<16} {:<10} {:<30} {:<12} DEPARTMENT",
                    "ID", "TYPE", "NAME", "JOB NUMBER"
                );
                for u in &users {
                    let ty = PersonType::from_code(u.user_type)
                        .map(PersonType::as_str)
                        .unwrap_or("?");
                    println!(
                        "{:<16} {:<10} {:<30} {:<12} {}",
                        u.user_id,
                        ty,
                        u.name,
                        u.job_number,
                        u.department.as_deref().unwrap_or("")
                    );
                }
                println!("{} user(s)", users.len());
            }
        }
        UsersAction::Add(fields) => {
            if fields.name.is_none() {
                return Err(Failure::Usage("users add: --name is required".into()));
            }
            let user = user_from(&fields, User::default())?;
            c.add_user(&user).await.map_err(fail)?;
            println!("{}: user {} added", t.id, user.user_id);
        }
        UsersAction::Update(fields) => {
            let existing = c
                .list_users(&UserQuery {
                    user_id: Some(fields.id.clone()),
                    page: 1,
                    size: 10,
                    ..UserQuery::default()
                })
                .await
                .map_err(fail)?
                .items
                .into_iter()
                .find(|u| u.user_id == fields.id)
                .ok_or_else(|| {
                    Failure::Runtime(format!("terminal {}: no user with id {}", t.id, fields.id))
                })?;
            let user = user_from(&fields, existing)?;
            c.update_user(&user).await.map_err(fail)?;
            println!("{}: user {} updated", t.id, user.user_id);
        }
        UsersAction::Delete { id } => {
            c.delete_user(&id).await.map_err(fail)?;
            if id == "all" {
                println!("{}: every user deleted", t.id);
            } else {
                println!("{}: user {id} deleted", t.id);
            }
        }
    }
    Ok(())
}

// ---- records --------------------------------------------------------------------------------

#[derive(clap::Args, Clone)]
pub struct RecordsArgs {
    /// Start: RFC 3339 ("2026-11-24T08:00:00Z"), Unix seconds, or a duration ago ("2h").
    #[arg(long, default_value = "24h")]
    pub from: String,
    /// End, in the same forms; "now" by default.
    #[arg(long, default_value = "now")]
    pub to: String,
    #[arg(long = "type", value_parser = parse_person_type)]
    pub person_type: Option<PersonType>,
    /// Print the terminal's own JSON (with photos) instead of the bridge's record JSON.
    #[arg(long)]
    pub raw: bool,
}

/// Reads a time argument as Unix seconds.
pub fn parse_time(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(d.as_secs()));
    }
    Err(format!(
        "`{s}` is not a time: give RFC 3339, Unix seconds, \"now\" or a duration ago like \"2h\""
    ))
}

async fn records(t: &TerminalConfig, args: RecordsArgs) -> Result<(), Failure> {
    let now = crate::integrations::terminal::sign::now_ms() / 1000;
    let from = parse_time(&args.from, now).map_err(|e| Failure::Usage(format!("--from: {e}")))?;
    let to = parse_time(&args.to, now).map_err(|e| Failure::Usage(format!("--to: {e}")))?;
    if from > to {
        return Err(Failure::Usage("--from is after --to".into()));
    }
    let c = client_for(t)?;
    let mut q = RecordQuery::between(from, to);
    q.person_type = args.person_type.map(PersonType::code).unwrap_or(0);
    let mut count = 0u64;
    loop {
        let page = c.records(&q).await.map_err(failed(t))?;
        let n = page.items.len();
        for item in page.items {
            count += 1;
            if args.raw {
                println!("{}", Value::Object(item));
                continue;
            }
            match record::normalize(&t.id, &item, Source::Backfill) {
                Ok(n) => println!("{}", n.published()),
                Err(e) => eprintln!("skipped a record: {e}"),
            }
        }
        if n == 0 || q.page >= page.total_pages {
            break;
        }
        q.page += 1;
    }
    eprintln!("{count} record(s)");
    Ok(())
}

// ---- settings and jsonCmd -------------------------------------------------------------------

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum SettingsObject {
    Network,
    Smartface,
    Perpara,
}

#[derive(clap::Subcommand, Clone)]
pub enum SettingsAction {
    /// Print a settings object as JSON.
    Get { object: SettingsObject },
    /// Write fields of a settings object from a JSON file (or - for standard input). Only the
    /// fields given are changed on terminals that merge; send the whole object to be safe.
    Set {
        object: SettingsObject,
        file: PathBuf,
    },
}

fn read_json_arg(file: &Path) -> Result<Value, Failure> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    }
    serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", file.display())))
}

async fn settings(
    t: &TerminalConfig,
    c: &TerminalClient,
    action: SettingsAction,
) -> Result<(), Failure> {
    let fail = failed(t);
    match action {
        SettingsAction::Get { object } => {
            let v = match object {
                SettingsObject::Network => c.network().await,
                SettingsObject::Smartface => c.smart_face().await,
                SettingsObject::Perpara => c.peripheral().await,
            }
            .map_err(fail)?;
            print_json(&v);
        }
        SettingsAction::Set { object, file } => {
            let Value::Object(obj) = read_json_arg(&file)? else {
                return Err(Failure::Usage(format!(
                    "{}: must hold a JSON object",
                    file.display()
                )));
            };
            match object {
                SettingsObject::Network => c.set_network(&obj).await,
                SettingsObject::Smartface => c.set_smart_face(&obj).await,
                SettingsObject::Perpara => c.set_peripheral(&obj).await,
            }
            .map_err(fail)?;
            println!("{}: settings written", t.id);
        }
    }
    Ok(())
}

async fn json_cmd(t: &TerminalConfig, json: &str) -> Result<(), Failure> {
    let cmd: Value = serde_json::from_str(json)
        .map_err(|e| Failure::Usage(format!("the command is not JSON: {e}")))?;
    let answer = client_for(t)?.json_cmd(&cmd).await.map_err(failed(t))?;
    print_json(&answer);
    Ok(())
}

// ---- simulate -------------------------------------------------------------------------------

#[derive(clap::Args, Clone)]
pub struct SimulateArgs {
    /// Address of the terminal's HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Address of the record WebSocket.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub ws: SocketAddr,
    /// Address of the simulator's control API (faults, pushes, status).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub control: SocketAddr,
    /// The terminal's API password.
    #[arg(long, default_value = "123456")]
    pub password: String,
    /// Recognitions per second, on average (0: only when pushed through the control API).
    #[arg(long, default_value_t = 0.2)]
    pub rate: f64,
    /// How long both ports stay down after /api/device/reboot.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub reboot_downtime: Duration,
    /// Records kept for GET /api/record.
    #[arg(long, default_value_t = 100_000)]
    pub max_records: usize,
    /// Seed for the people, photos and recognitions.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Send records without photos (smaller frames, for load tests).
    #[arg(long)]
    pub no_photos: bool,
    /// Start with the WebSocket silent (open but answering nothing).
    #[arg(long)]
    pub silent: bool,
    /// Start refusing the password (20002 on the WebSocket, 10005 over HTTP).
    #[arg(long)]
    pub refuse_auth: bool,
    /// Delay every HTTP answer by this much.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub http_delay: Option<Duration>,
    /// Start with the terminal's clock off by this many seconds (negative: behind).
    #[arg(long, allow_hyphen_values = true)]
    pub clock_skew_secs: Option<i64>,
    /// Log level.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

pub async fn simulate(a: SimulateArgs) -> Result<(), Failure> {
    let stop = crate::runtime::service::shutdown_signal();
    crate::runtime::service::init_logging(&a.log_level);
    if !a.rate.is_finite() || a.rate < 0.0 {
        return Err(Failure::Usage("--rate must be a number >= 0".into()));
    }
    let shutdown = CancellationToken::new();
    let config = SimConfig {
        password: Secret::new(a.password.clone()),
        rate: a.rate,
        reboot_downtime: a.reboot_downtime,
        max_records: a.max_records,
        seed: a.seed,
        photos: !a.no_photos,
    };
    let bind_err = |what: &str, addr: SocketAddr, e: std::io::Error| {
        Failure::Runtime(format!("cannot listen on {addr} ({what}): {e}"))
    };
    let http = tokio::net::TcpListener::bind(a.http)
        .await
        .map_err(|e| bind_err("--http", a.http, e))?;
    let ws = tokio::net::TcpListener::bind(a.ws)
        .await
        .map_err(|e| bind_err("--ws", a.ws, e))?;
    let ctl = tokio::net::TcpListener::bind(a.control)
        .await
        .map_err(|e| bind_err("--control", a.control, e))?;
    let sim = Simulator::start(config, http, ws, shutdown.clone())
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let control_addr = ctl
        .local_addr()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    if a.silent {
        sim.set_silent(true);
    }
    if a.refuse_auth {
        sim.set_refuse_auth(true);
    }
    if let Some(d) = a.http_delay {
        sim.set_http_delay(d);
    }
    if let Some(s) = a.clock_skew_secs {
        sim.set_clock_skew(s * 1000);
    }
    tracing::info!(
        http = %sim.http_addr(), ws = %sim.ws_addr(), control = %control_addr, rate = a.rate,
        "terminal simulator running (HTTP API, record WebSocket, control API)"
    );
    let control_task = tokio::spawn(control::serve(sim.clone(), ctl, shutdown.clone()));
    stop.await;
    tracing::info!("simulator stopping");
    shutdown.cancel();
    let _ = control_task.await;
    sim.stopped().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_seconds_or_durations_ago() {
        assert_eq!(parse_time("1600972860", 0), Ok(1600972860));
        assert_eq!(parse_time("2020-09-24T18:41:00Z", 0), Ok(1600972860));
        assert_eq!(parse_time("2h", 10_000), Ok(10_000 - 7200));
        assert_eq!(parse_time("now", 5), Ok(5));
        assert!(parse_time("yesterday-ish", 5).is_err());
    }
}
