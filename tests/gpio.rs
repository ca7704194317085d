//! Exit buttons and the status LED: edges driven through the `Pins` trait into the real daemon
//! (in process) and output levels read back, with a real Mosquitto and the simulator behind it.

mod common;

use std::time::{Duration, Instant};

use common::inproc::{Daemon, FakePins};
use common::*;

const BUTTONS: &str = r#"
[[button]]
pin = 17
terminal = "front-door"
press = "open"
long_press = "reboot"
long_press_after = "2s"
debounce = "50ms"
"#;

fn daemon(broker: &Mosquitto, sim: &Sim, pins: FakePins) -> Daemon {
    let setup = BridgeSetup {
        extra_sections: "[commands]\nrequire_synchronized_clock = false\nopen_hold = \"100ms\"\n",
        extra_terminal_keys: BUTTONS,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    };
    Daemon::start(&setup, pins)
}

/// The link is up, the pin watched, and the bridge is `online` at the broker (button events
/// published before that would be dropped: a late event is no event).
async fn ready(broker: &Mosquitto, sim: &Sim, pins: &FakePins) {
    let mut state = subscribe(broker.port, "face2mqtt/bridge/state").await;
    let mut seen = Vec::new();
    collect_until(
        &mut state,
        &mut seen,
        Duration::from_secs(20),
        "the bridge online",
        |m| {
            m.iter()
                .any(|(_, p, _)| p.windows(6).any(|w| w == b"online"))
        },
    )
    .await;
    wait_link(&sim.sim, 1).await;
    eventually("pin 17 watched", Duration::from_secs(10), || {
        let ok = pins.watched(17);
        async move { ok }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_opens_and_a_hold_runs_the_long_press_action() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/button/#").await;
    let pins = FakePins::default();
    let _d = daemon(&broker, &s, pins.clone());
    ready(&broker, &s, &pins).await;

    // Active low with a pull-up: pressed is low. A 120 ms press, timed by its edges.
    let t0 = Instant::now();
    pins.level_at(17, false, t0);
    pins.level_at(17, true, t0 + Duration::from_millis(120));
    let sim = s.sim.clone();
    eventually("the press opened the door", Duration::from_secs(10), || {
        let sim = sim.clone();
        async move { sim.opens().len() == 1 }
    })
    .await;
    assert_eq!(
        s.sim.opens()[0].remark.as_deref(),
        Some("exit button (GPIO17)")
    );

    // A hold: pressed well after that release, and kept down until the long press fires.
    pins.level_at(17, false, t0 + Duration::from_millis(1000));
    let sim = s.sim.clone();
    eventually("the hold rebooted", Duration::from_secs(15), || {
        let sim = sim.clone();
        async move { sim.reboots() == 1 }
    })
    .await;
    pins.level(17, true);

    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "both button events",
        |m| m.len() >= 2,
    )
    .await;
    let actions: Vec<serde_json::Value> = seen
        .iter()
        .map(|(_, p, _)| serde_json::from_slice(p).expect("json"))
        .collect();
    assert_eq!(actions[0]["action"], "press");
    assert_eq!(actions[1]["action"], "long_press");
    assert_eq!(s.sim.opens().len(), 1, "the hold did not also open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_within_the_debounce_window_count_once() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/button/#").await;
    let pins = FakePins::default();
    let _d = daemon(&broker, &s, pins.clone());
    ready(&broker, &s, &pins).await;

    // Contact bounce 5 ms apart against a 50 ms debounce, then a release at 150 ms: the edges
    // carry their times, so a loaded machine cannot stretch them.
    let t0 = Instant::now();
    for (i, level) in [false, true, false, true, false].into_iter().enumerate() {
        pins.level_at(17, level, t0 + Duration::from_millis(5 * i as u64));
    }
    pins.level_at(17, true, t0 + Duration::from_millis(150));
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "a button event",
        |m| !m.is_empty(),
    )
    .await;
    // Anything more would have arrived by the time the door answered.
    let sim = s.sim.clone();
    eventually("the door opened", Duration::from_secs(10), || {
        let sim = sim.clone();
        async move { !sim.opens().is_empty() }
    })
    .await;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.rx.recv()).await {
        seen.push(m);
    }
    assert_eq!(seen.len(), 1, "one press event for the whole bouncy press");
    assert_eq!(s.sim.opens().len(), 1);
}

/// The hostile twin: a noisy line (40,000 edges in 40 ms, far past what the edge queue holds)
/// neither grows memory without bound nor leaves the button believing a level the line has
/// left. The noise fits in one debounce lockout (50 ms) and ends released: one press, however
/// many edges were coalesced; and the next real press works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_edges_is_one_press_and_the_button_keeps_working() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/button/#").await;
    let pins = FakePins::default();
    let _d = daemon(&broker, &s, pins.clone());
    ready(&broker, &s, &pins).await;

    let t0 = Instant::now();
    for i in 0..40_000u32 {
        // Starts pressed (low), ends released (high).
        pins.level_at(17, i % 2 == 1, t0 + Duration::from_micros(u64::from(i)));
    }
    let sim = s.sim.clone();
    eventually(
        "the noise's press opened the door",
        Duration::from_secs(10),
        || {
            let sim = sim.clone();
            async move { sim.opens().len() == 1 }
        },
    )
    .await;
    // A real press, after the gate's open_hold (100 ms, a duplicate guard: a press within it is
    // refused by design).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t1 = Instant::now();
    pins.level_at(17, false, t1);
    pins.level_at(17, true, t1 + Duration::from_millis(120));
    eventually(
        "the real press opened the door",
        Duration::from_secs(10),
        || {
            let sim = sim.clone();
            async move { sim.opens().len() == 2 }
        },
    )
    .await;
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "two press events",
        |m| m.len() >= 2,
    )
    .await;
    // Any further press would have been published before the door's answer to the real one.
    while let Ok(m) = sub.rx.try_recv() {
        seen.push(m);
    }
    assert_eq!(
        seen.len(),
        2,
        "the noise was one press, the real press another"
    );
}

#[tokio::test]
async fn a_button_on_a_machine_without_gpio_is_a_config_error_for_run_and_check_naming_the_file() {
    if std::path::Path::new("/dev/gpiomem").exists()
        || std::path::Path::new("/dev/gpiochip0").exists()
    {
        return skipped(
            "gpio: a button on a machine without GPIO",
            "this machine has GPIO; the refusal cannot be shown here",
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = {:?}\n[[terminal]]\nid = \"front-door\"\nhost = \"127.0.0.1\"\npassword = \"x\"\n{BUTTONS}",
            unused_port(),
            dir.path().join("spool")
        ),
    )
    .expect("write");
    let (run, check) = tokio::task::spawn_blocking(move || {
        let face2mqtt = |cmd: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_face2mqtt"))
                .args([cmd, "-c"])
                .arg(&cfg)
                .output()
                .expect("runs")
        };
        (face2mqtt("run"), face2mqtt("check"))
    })
    .await
    .expect("joined");
    // 78: the unit's RestartPreventExitStatus; no restart brings GPIO to this machine.
    assert_eq!(run.status.code(), Some(78));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("c.toml") && err.contains("[[button]]") && err.contains("no usable GPIO"),
        "{err}"
    );
    assert_eq!(
        check.status.code(),
        Some(78),
        "check fails what run refuses"
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("FAILED  gpio") && out.contains("c.toml") && out.contains("[[button]]"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_led_is_steady_while_all_is_up_and_blinks_when_a_terminal_link_is_down() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut state = subscribe(broker.port, "face2mqtt/bridge/state").await;
    let pins = FakePins::default();
    let setup = BridgeSetup {
        extra_sections: "[status_led]\npin = 27\n",
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let _d = Daemon::start(&setup, pins.clone());
    let mut seen = Vec::new();
    collect_until(
        &mut state,
        &mut seen,
        Duration::from_secs(10),
        "online",
        |m| {
            m.iter()
                .any(|(_, p, _)| p.as_slice() == br#"{"state":"online"}"#)
        },
    )
    .await;
    wait_link(&s.sim, 1).await;
    let mut led = pins
        .output_levels(27)
        .expect("the LED pin was claimed at start");
    let lit = tokio::time::timeout(
        Duration::from_secs(5),
        led.wait_for(|v| v.last() == Some(&true)),
    )
    .await
    .expect("the LED lights")
    .expect("watch")
    .len();
    // Steady means no dark phase over more than two slow-blink half-periods.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after: Vec<bool> = led.borrow()[lit..].to_vec();
    assert!(
        after.iter().all(|l| *l),
        "steady while all is up, saw {after:?}"
    );

    s.sim.set_refuse_auth(true);
    s.sim.close_links();
    let history = tokio::time::timeout(
        Duration::from_secs(10),
        led.wait_for(|v| v.len() >= lit + 2 && v[lit..].contains(&false)),
    )
    .await
    .expect("the LED blinks with the link down")
    .expect("watch")
    .clone();
    assert!(
        history[lit..].windows(2).all(|w| w[0] != w[1]),
        "{history:?}"
    );
}
