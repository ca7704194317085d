//! `face2mqtt check`: the config read as `run` reads it, then what `run` needs, a line each.
//! `setup` runs the same checks on the config it is about to write.

use std::path::Path;
use std::time::Duration;

use super::{load, Failure};
use crate::config::{MqttConfig, TerminalConfig};
use crate::integrations::terminal::{push, Endpoint, TerminalClient};

pub async fn check(path: &Path) -> Result<(), Failure> {
    let config = load(path)?;
    println!("ok      config {}", path.display());
    // Before the network: a spool that can never take a record is the installer's to fix.
    let dir = &config.spool.dir;
    let spool_ok = match crate::pipeline::spool::check_place(dir)
        .and_then(|()| crate::pipeline::spool::check_capacity(dir))
    {
        Err(e) => {
            println!("FAILED  {e}");
            false
        }
        Ok(()) => {
            match crate::pipeline::spool::file_system(dir) {
                Some((total, free)) => println!(
                    "ok      spool {}: {} MiB free of {} MiB on its file system",
                    dir.display(),
                    free >> 20,
                    total >> 20
                ),
                None => println!(
                    "ok      spool {} (its file system's size cannot be read)",
                    dir.display()
                ),
            }
            true
        }
    };
    // The pins `run` claims; a machine without them cannot be fixed by a restart either.
    let gpio_ok = match crate::door::gpio::probe(&config) {
        Ok(lines) => {
            for l in lines {
                println!("ok      gpio {l}");
            }
            true
        }
        Err(e) => {
            println!("FAILED  gpio {}: {e}", path.display());
            false
        }
    };
    let checks = config.terminals.iter().map(terminal);
    let broker = broker(&config.mqtt);
    let (terminals, broker) = tokio::join!(futures_util::future::join_all(checks), broker);
    let mut all_ok = spool_ok;
    for (ok, lines) in terminals.into_iter().chain(std::iter::once(broker)) {
        all_ok &= ok;
        print_lines(&lines);
    }
    if !(spool_ok && gpio_ok) {
        Err(Failure::ReportedConfig)
    } else if all_ok {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

/// A terminal's HTTP API (a signed call) and record push (the WebSocket handshake): whether
/// both answered, and a line each.
pub(super) async fn terminal(t: &TerminalConfig) -> (bool, Vec<String>) {
    let client = match Endpoint::of(t) {
        Ok(e) => TerminalClient::new(e),
        Err(e) => return (false, vec![e]),
    };
    let mut lines = Vec::new();
    let mut ok = true;
    match client.information().await {
        Ok(info) => lines.push(format!(
            "ok      terminal {}: HTTP API at {} ({}, app {})",
            t.id,
            client.http_addr(),
            info.model.as_deref().unwrap_or("unknown model"),
            info.app_version.as_deref().unwrap_or("?")
        )),
        Err(e) => {
            ok = false;
            lines.push(format!(
                "FAILED  terminal {}: HTTP API at {}: {e}",
                t.id,
                client.http_addr()
            ));
        }
    }
    match push::connect(&client, t.request_timeout).await {
        Ok(mut ws) => {
            let _ = ws.close(None).await;
            lines.push(format!(
                "ok      terminal {}: record push at {}",
                t.id,
                client.ws_addr()
            ));
        }
        Err(e) => {
            ok = false;
            lines.push(format!("FAILED  terminal {}: {e}", t.id));
        }
    }
    (ok, lines)
}

/// The broker: a connect (with the MQTT version spoken), then a publish it hands back.
pub(super) async fn broker(mqtt: &MqttConfig) -> (bool, Vec<String>) {
    match crate::integrations::mqtt::probe(mqtt, Duration::from_secs(10)).await {
        Ok(version) => {
            let mut lines = vec![format!("ok      broker {} ({})", mqtt.url, version.name())];
            let trip =
                crate::integrations::mqtt::round_trip(mqtt, version, Duration::from_secs(10)).await;
            let ok = trip.is_ok();
            lines.push(match trip {
                Ok(topic) => {
                    format!("ok      broker round trip: published and received on {topic}")
                }
                Err(e) => format!("FAILED  broker round trip: {e}"),
            });
            (ok, lines)
        }
        Err(e) => (false, vec![format!("FAILED  broker {}: {e}", mqtt.url)]),
    }
}

pub(super) fn print_lines(lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
}
