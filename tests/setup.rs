//! `face2mqtt setup` as an installer uses it: against the simulator and a Mosquitto that wants a
//! login, with flags (as a script would) and on a terminal answering its questions (tmux).
//! Judged by `check` on the written config and by records arriving at the broker from `run`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// Anonymous clients (the test's subscriber) read; the bridge logs in to write.
const ACL: &str = "topic read #\nuser bridge\ntopic readwrite #\n";

fn face2mqtt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_face2mqtt"))
        .args(args)
        .output()
        .expect("face2mqtt runs")
}

fn text(o: &Output) -> String {
    output_text(o)
}

/// `run` on the config `setup` wrote delivers what the terminal records, to a subscriber of the
/// broker (anonymous reading is allowed on this broker; the bridge logs in).
async fn records_flow(config: &Path, sim: &face2mqtt::simulator::Simulator, port: u16) {
    let mut sub = subscribe(port, "face2mqtt/+/record").await;
    let written = std::fs::read_to_string(config).expect("config");
    let _bridge = Bridge::start_written(&[], |_| written);
    wait_link(sim, 1).await;
    let mut made = BTreeSet::new();
    push_recorded(sim, 3, &mut made);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !made.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.rx.recv()).await {
            Ok(Some((_, payload, _))) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) {
                    if let Some(id) = v["event_id"].as_str() {
                        seen.insert(id.to_string());
                    }
                }
            }
            _ => panic!("records did not arrive: made {made:?}, seen {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_flags_writes_a_minimal_config_that_check_passes_and_run_uses() {
    let broker = Mosquitto::start_with_acl(&[("bridge", "br0ker pw")], ACL);
    let sim = default_simulator().await;
    let d = tempfile::tempdir().expect("tempdir");
    let (etc, spool) = (d.path().join("etc"), d.path().join("spool"));
    let (tpw, bpw) = (d.path().join("t.pw"), d.path().join("b.pw"));
    std::fs::write(&tpw, format!("{PASSWORD}\n")).expect("write");
    std::fs::write(&bpw, "wrong\n").expect("write");
    let config = etc.join("config.toml");
    let (http, ws) = (
        sim.sim.http_addr().port().to_string(),
        sim.sim.ws_addr().port().to_string(),
    );
    let url = broker.url();
    let args = |config: &Path| -> Vec<String> {
        [
            "setup",
            "--no-input",
            "-c",
            &config.to_string_lossy(),
            "--terminal-host",
            "127.0.0.1",
            "--http-port",
            &http,
            "--ws-port",
            &ws,
            "--terminal-password-file",
            &tpw.to_string_lossy(),
            "--broker",
            &url,
            "--broker-username",
            "bridge",
            "--broker-password-file",
            &bpw.to_string_lossy(),
            "--spool-dir",
            &spool.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |config: &Path| {
        let a = args(config);
        face2mqtt(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // A wrong broker password: named, nothing written.
    let refused = run(&config);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("ok      terminal front-door: HTTP API"));
    assert!(
        text(&refused).contains("FAILED  broker"),
        "{}",
        text(&refused)
    );
    assert!(
        !config.exists(),
        "nothing is written before every check passed"
    );

    std::fs::write(&bpw, "br0ker pw\n").expect("write");
    let o = run(&config);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ok      broker round trip"),
        "{}",
        text(&o)
    );
    let written = std::fs::read_to_string(&config).expect("written");
    assert!(
        !written.contains(PASSWORD) && !written.contains("br0ker"),
        "no password in the config: {written}"
    );
    for (file, secret) in [
        ("terminal-front-door.password", PASSWORD),
        ("mqtt.password", "br0ker pw"),
    ] {
        let path = etc.join(file);
        assert_eq!(
            std::fs::read_to_string(&path).expect("password file"),
            secret
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert!(!text(&o).contains(PASSWORD) && !text(&o).contains("br0ker"));

    // An edited config is not replaced without --force.
    std::fs::write(&config, format!("{written}# edited\n")).expect("edit");
    let kept = run(&config);
    assert_eq!(kept.status.code(), Some(2), "{}", text(&kept));
    let o = face2mqtt(
        &[args(&config), vec!["--force".into()]]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", text(&o));

    let check = face2mqtt(&["check", "-c", &config.to_string_lossy()]);
    assert!(
        check.status.success(),
        "check passes what setup wrote: {}",
        text(&check)
    );
    records_flow(&config, &sim.sim, broker.port).await;
}

/// tmux, or why not.
fn tmux() -> Option<()> {
    Command::new("tmux")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ())
}

struct Pane {
    name: String,
}

impl Pane {
    fn start(command: &str) -> Pane {
        let name = format!("face2mqtt-setup-{}", fastrand::u64(..));
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "-s",
                &name,
                command,
            ])
            .status()
            .expect("tmux");
        assert!(ok.success(), "tmux new-session");
        Pane { name }
    }

    fn text(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-S", "-200", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits for `what` to show `count` times on the pane, as a person reads before typing.
    async fn wait_for(&self, what: &str, count: usize) {
        let start = Instant::now();
        while self.text().matches(what).count() < count {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the pane never showed {what:?} ({count}x):\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn type_line(&self, line: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", line])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "Enter"])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_asks_on_a_terminal_checks_each_answer_and_asks_again_after_a_wrong_password() {
    if tmux().is_none() {
        return skipped(
            "setup: on a terminal",
            "tmux is not installed (scripts/test installs it)",
        );
    }
    let broker = Mosquitto::start_with_acl(&[("bridge", "br0ker pw")], ACL);
    let sim = default_simulator().await;
    let d = tempfile::tempdir().expect("tempdir");
    let config = d.path().join("etc").join("config.toml");
    let done = d.path().join("exit-code");
    let command = format!(
        "{} setup -c {} --http-port {} --ws-port {} --spool-dir {}; echo $? > {}; sleep 60",
        env!("CARGO_BIN_EXE_face2mqtt"),
        config.display(),
        sim.sim.http_addr().port(),
        sim.sim.ws_addr().port(),
        d.path().join("spool").display(),
        done.display()
    );
    let pane = Pane::start(&command);
    pane.wait_for("The terminal's IP address", 1).await;
    pane.type_line("127.0.0.1");
    pane.wait_for("The terminal's password", 1).await;
    pane.type_line("not-the-password");
    pane.wait_for("Try another address or password?", 1).await;
    assert!(
        pane.text().contains("FAILED  terminal front-door"),
        "{}",
        pane.text()
    );
    pane.type_line("");
    pane.wait_for("[127.0.0.1]: ", 1).await;
    pane.type_line("");
    pane.wait_for("The terminal's password", 2).await;
    pane.type_line(PASSWORD);
    pane.wait_for("The MQTT broker", 1).await;
    pane.type_line(&broker.url());
    pane.wait_for("Its username", 1).await;
    pane.type_line("bridge");
    pane.wait_for("Its password", 1).await;
    pane.type_line("br0ker pw");
    let start = Instant::now();
    while !done.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", pane.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let screen = pane.text();
    assert_eq!(
        std::fs::read_to_string(&done).expect("exit code").trim(),
        "0",
        "{screen}"
    );
    assert!(
        !screen.contains("not-the-password") && !screen.contains("br0ker"),
        "passwords are not echoed: {screen}"
    );
    assert!(screen.contains("ok      broker round trip"), "{screen}");
    // Not the service's config: the service is not offered, `run -c` is.
    assert!(
        screen.contains("run the bridge on it: face2mqtt run -c")
            && !screen.contains("Start the bridge"),
        "{screen}"
    );
    let check = face2mqtt(&["check", "-c", &config.to_string_lossy()]);
    assert!(check.status.success(), "{}", text(&check));
    records_flow(&config, &sim.sim, broker.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_writes_absolute_paths_makes_the_spool_dir_and_check_refuses_a_spool_that_is_a_file()
{
    let broker = Mosquitto::start();
    let sim = default_simulator().await;
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("t.pw"), format!("{PASSWORD}\r\n")).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_face2mqtt"))
        .current_dir(d.path())
        .args([
            "setup",
            "--no-input",
            "-c",
            "conf/config.toml",
            "--spool-dir",
            "spool",
        ])
        .args([
            "--terminal-host",
            "127.0.0.1",
            "--terminal-password-file",
            "t.pw",
        ])
        .args(["--http-port", &sim.sim.http_addr().port().to_string()])
        .args(["--ws-port", &sim.sim.ws_addr().port().to_string()])
        .args(["--broker", &broker.url()])
        .output()
        .expect("setup runs");
    assert!(
        o.status.success(),
        "a CRLF password file reads as run reads it: {}",
        text(&o)
    );
    let config = d.path().join("conf/config.toml");
    let written = std::fs::read_to_string(&config).expect("written");
    let root = d.path().to_string_lossy().into_owned();
    assert!(
        written.contains(&format!("{root}/spool"))
            && written.contains(&format!("{root}/conf/terminal-front-door.password")),
        "absolute paths: {written}"
    );
    assert!(
        d.path().join("spool").is_dir(),
        "the spool directory is made"
    );
    let check = face2mqtt(&["check", "-c", &config.to_string_lossy()]);
    assert!(
        check.status.success(),
        "from another directory: {}",
        text(&check)
    );

    // A spool path that is a file: no restart mends it, so 78 from check and run alike.
    std::fs::remove_dir(d.path().join("spool")).expect("rmdir");
    std::fs::write(d.path().join("spool"), b"not a directory").expect("write");
    let check = face2mqtt(&["check", "-c", &config.to_string_lossy()]);
    assert_eq!(check.status.code(), Some(78), "{}", text(&check));
    assert!(
        text(&check).contains("is not a directory"),
        "{}",
        text(&check)
    );
    let run = face2mqtt(&["run", "-c", &config.to_string_lossy()]);
    assert_eq!(run.status.code(), Some(78), "{}", text(&run));
}
