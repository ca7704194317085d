//! The `face2mqtt` command against the simulator: every installer call, `check`'s one-line
//! reasons, and the documented exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use face2mqtt::integrations::terminal::PersonType;

fn config_text(http: u16, ws: u16, password: &str, broker: u16) -> String {
    format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{broker}\"\n\n[[terminal]]\nid = \"front-door\"\nhost = \"127.0.0.1\"\n\
         http_port = {http}\nws_port = {ws}\npassword = \"{password}\"\nrequest_timeout = \"1s\"\n"
    )
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Runs the binary off the async runtime (it blocks).
async fn face2mqtt(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_face2mqtt"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .expect("runs")
    })
    .await
    .expect("joined")
}

fn args(list: &[&str], config: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.push("-c".into());
    v.push(config.display().to_string());
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_installer_call_works_against_the_simulator() {
    let s = default_simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &config_text(
            s.sim.http_addr().port(),
            s.sim.ws_addr().port(),
            PASSWORD,
            unused_port(),
        ),
    );

    let o = face2mqtt(args(&["open", "--remark", "from the cli"], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "front-door: door opened");
    assert_eq!(s.sim.opens()[0].remark.as_deref(), Some("from the cli"));

    let o = face2mqtt(args(&["sync-time"], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.sim.sync_times().len(), 1);

    let o = face2mqtt(args(&["reboot"], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.sim.reboots(), 1);

    let o = face2mqtt(args(&["info"], &cfg)).await;
    assert!(
        o.status.success() && stdout(&o).contains("AATSS V2 PRO"),
        "{}",
        stdout(&o)
    );
    let o = face2mqtt(args(&["info", "--all"], &cfg)).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["network"]["ipAddress"].is_string() && v["smartface"]["Hacknessenble"].is_number());

    let jpeg = dir.path().join("face.jpg");
    std::fs::write(&jpeg, face2mqtt::simulator::avatar::jpeg(1, 10)).expect("jpeg");
    let o = face2mqtt(args(
        &[
            "users",
            "add",
            "--id",
            "V9",
            "--name",
            "Vera",
            "--type",
            "visitor",
            "--photo",
            jpeg.to_str().unwrap_or(""),
        ],
        &cfg,
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = face2mqtt(args(
        &["users", "update", "--id", "V9", "--department", "Guests"],
        &cfg,
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = face2mqtt(args(&["users", "list", "--type", "visitor"], &cfg)).await;
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("V9") && l.contains("Vera") && l.contains("Guests")),
        "{}",
        stdout(&o)
    );
    let o = face2mqtt(args(&["users", "delete", "V9"], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = face2mqtt(args(&["users", "delete", "V9"], &cfg)).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("20001"), "{}", stderr(&o));

    s.sim.push(Some(PersonType::Staff));
    s.sim.push(Some(PersonType::Stranger));
    let o = face2mqtt(args(&["records", "--from", "1h"], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .all(|r| r["source"] == "backfill" && r["event_id"].as_str().is_some()));

    let net = dir.path().join("net.json");
    std::fs::write(&net, r#"{"ipAddress":"10.9.9.9"}"#).expect("json");
    let o = face2mqtt(args(
        &["settings", "set", "network", net.to_str().unwrap_or("")],
        &cfg,
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = face2mqtt(args(&["settings", "get", "network"], &cfg)).await;
    assert!(stdout(&o).contains("10.9.9.9"));

    let o = face2mqtt(args(&["json-cmd", r#"{"cmd":"x"}"#], &cfg)).await;
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_when_terminal_and_broker_answer() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &config_text(
            s.sim.http_addr().port(),
            s.sim.ws_addr().port(),
            PASSWORD,
            broker.port,
        ),
    );
    let o = face2mqtt(args(&["check"], &cfg)).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("ok      spool /var/lib/face2mqtt: "),
        "the spool's file system, before the network: {}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("ok      broker round trip: published and received on"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("(MQTT 5)"), "{}", stdout(&o));
}

/// `check` prints one line per failed check, with the reason, and exits 1.
async fn check_reason(password: &str, http_port: u16, ws_port: u16) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &config_text(http_port, ws_port, password, unused_port()),
    );
    let o = face2mqtt(args(&["check"], &cfg)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    stdout(&o)
        .lines()
        .filter(|l| l.starts_with("FAILED"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_the_password_is_wrong() {
    let s = default_simulator().await;
    let lines = check_reason("wrong", s.sim.http_addr().port(), s.sim.ws_addr().port()).await;
    assert!(
        lines.iter().any(|l| l.contains("HTTP API")
            && l.contains("10005")
            && l.contains("password is wrong")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("record push") && l.contains("20002")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("broker") && l.contains("cannot reach")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_the_clocks_differ() {
    let s = default_simulator().await;
    s.sim.set_clock_skew(-10 * 60 * 1000);
    let lines = check_reason(PASSWORD, s.sim.http_addr().port(), s.sim.ws_addr().port()).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("10003") && l.contains("clocks")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_the_terminal_is_unreachable() {
    let lines = check_reason(PASSWORD, unused_port(), unused_port()).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("HTTP API") && l.contains("unreachable")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("record push") && l.contains("unreachable")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_bad_config_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), "[mqtt]\nurl = \"mqtt://h\"\nbogus = 1\n");
    let o = face2mqtt(args(&["check"], &cfg)).await;
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("bogus") && stderr(&o).contains("config.toml"),
        "{}",
        stderr(&o)
    );

    let cfg = write_config(dir.path(), "[mqtt]\nurl = \"mqtt://h\"\n[[terminal]]\nid = \"Bad Id\"\nhost = \"h\"\npassword = \"x\"\n");
    let o = face2mqtt(args(&["open"], &cfg)).await;
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("terminal[0].id"), "{}", stderr(&o));

    let o = face2mqtt(args(&["check"], &dir.path().join("missing.toml"))).await;
    assert_eq!(o.status.code(), Some(78));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let o = face2mqtt(vec!["no-such-command".into()]).await;
    assert_eq!(o.status.code(), Some(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let two = "[mqtt]\nurl = \"mqtt://h\"\n[[terminal]]\nid = \"a\"\nhost = \"h\"\npassword = \"x\"\n[[terminal]]\nid = \"b\"\nhost = \"h2\"\npassword = \"x\"\n";
    let cfg = write_config(dir.path(), two);
    let o = face2mqtt(args(&["open"], &cfg)).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "several terminals need --terminal"
    );
    assert!(stderr(&o).contains("--terminal"), "{}", stderr(&o));
}

/// A config whose spool is `spool` (nothing is reached over the network by `spool` commands).
fn spool_config(dir: &Path, spool: &Path) -> std::path::PathBuf {
    let text = config_text(9, 9, "123456", 9);
    write_config(
        dir,
        &format!("{text}\n[spool]\ndir = \"{}\"\n", spool.display()),
    )
}

#[tokio::test]
async fn spool_status_and_quarantine_see_and_mend_a_stopped_bridges_spool() {
    use face2mqtt::pipeline::record::{Normalized, Record};
    let d = tempfile::tempdir().expect("tempdir");
    let spool = d.path().join("spool");
    let config = spool_config(d.path(), &spool);
    {
        let s = face2mqtt::pipeline::spool::Spool::open(&spool, 64 << 20).expect("spool");
        for (id, t) in [
            ("front-door-1-1", 1_700_000_000),
            ("front-door-1-2", 1_700_000_001),
        ] {
            let rec = Normalized::of(Record::bare("front-door", id, t));
            s.append("front-door", &rec, None, true).expect("append");
        }
        s.quarantine(1, "larger than the broker takes")
            .expect("quarantine");
        s.flush().expect("flush");
        s.close().expect("close");
    }
    let status = face2mqtt(args(&["spool", "status"], &config)).await;
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    for want in [
        "queued       1 records",
        "quarantined  1",
        "terminal     front-door: watermark",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let list = stdout(&face2mqtt(args(&["spool", "quarantine", "list"], &config)).await);
    assert!(
        list.starts_with("1\tlarger than the broker takes\tfront-door front-door-1-1\t{"),
        "{list}"
    );
    let retry = face2mqtt(args(&["spool", "quarantine", "retry", "1"], &config)).await;
    assert!(
        stdout(&retry).contains("1: queued again as"),
        "{}",
        stdout(&retry)
    );
    let status = stdout(&face2mqtt(args(&["spool", "status"], &config)).await);
    assert!(
        status.contains("queued       2 records") && status.contains("quarantined  0"),
        "{status}"
    );
    let none = face2mqtt(args(&["spool", "quarantine", "drop", "--all"], &config)).await;
    assert!(none.status.success());
    let usage = face2mqtt(args(&["spool", "quarantine", "drop"], &config)).await;
    assert_eq!(usage.status.code(), Some(2), "a sequence number or --all");
}

#[tokio::test]
async fn a_spool_on_a_file_system_too_small_for_a_record_is_refused_at_start_and_by_check() {
    let Some(disk) = SmallDisk::mount(3 << 20) else {
        return skipped(
            "cli: a too small spool disk",
            "cannot mount a tmpfs here (needs root)",
        );
    };
    let d = tempfile::tempdir().expect("tempdir");
    let config = spool_config(d.path(), &disk.dir.path().join("spool"));
    let run = face2mqtt(args(&["run"], &config)).await;
    assert_eq!(run.status.code(), Some(78), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("put spool.dir on a larger one"),
        "{}",
        stderr(&run)
    );
    let check = face2mqtt(args(&["check"], &config)).await;
    assert_eq!(
        check.status.code(),
        Some(78),
        "no restart makes the disk larger"
    );
    assert!(
        stdout(&check).contains("FAILED  spool") && stdout(&check).contains("4194304"),
        "{}",
        stdout(&check)
    );
}
