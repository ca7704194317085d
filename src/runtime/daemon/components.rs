//! One function per component: it builds the component's channels and spawns it under the
//! supervisor. `super::run` connects them.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Wiring, DRAIN};
use crate::backoff::Backoff;
use crate::config::{Config, TerminalConfig};
use crate::door::command::{self, lock::Shown, Cmd, Executor, Gate, Responder, Route};
use crate::integrations::homeassistant::{self, Diagnostics, HomeAssistant};
use crate::integrations::mqtt::router::{HaInbox, Inbox};
use crate::integrations::mqtt::session::Session;
use crate::integrations::terminal::{Endpoint, TerminalClient};
use crate::messages::{topics, HaMsg, Outbound, Published};
use crate::pipeline::backfill::Backfill;
use crate::pipeline::ingest::Ingest;
use crate::pipeline::publish::Publisher;
use crate::runtime::exit::Failure;
use crate::runtime::supervisor::Lifetime;
use crate::runtime::watchdog::Beats;

/// A group of tasks and the token that stops them.
#[derive(Default)]
pub struct Stage {
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
}

impl Stage {
    /// Stops the group and waits until every task of it has ended.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The broker side: the driver polls rumqttc, the session publishes the spool (through the
/// [`Publisher`]) and everything else, and routes what comes in.
pub fn spawn_mqtt(
    config: &Config,
    w: &Wiring,
    out: mpsc::Receiver<Outbound>,
    durable: watch::Receiver<u64>,
    records: mpsc::Sender<Published>,
    beats: &Beats,
) -> Result<(Stage, Stage), Failure> {
    let version = crate::integrations::mqtt::link::Version::first(config.mqtt.protocol);
    let (client, eventloop) =
        crate::integrations::mqtt::connect(&config.mqtt, version, 1024).map_err(Failure::Config)?;
    let (events_tx, events_rx) = mpsc::channel(1024);
    let driver = Stage::default();
    let backoff = Backoff::new(config.mqtt.reconnect_min, config.mqtt.reconnect_max);
    let setup = crate::integrations::mqtt::tls::Setup::of(&config.mqtt.tls);
    let drive = crate::integrations::mqtt::driver::drive(
        eventloop,
        config.mqtt.clone(),
        events_tx,
        backoff,
        setup,
        driver.stop.clone(),
    );
    w.sup
        .spawn(&driver.tasks, "mqtt driver", Lifetime::UntilShutdown, drive);
    let (base, ha) = (&config.mqtt.base_topic, &config.home_assistant);
    let inbox = Inbox {
        command_filters: vec![
            topics::request_filter(base),
            topics::lock_command_filter(base),
        ],
        commands: Some(w.router.clone()),
        ha: Some(HaInbox {
            prefix: ha.discovery_prefix.clone(),
            filters: vec![
                topics::ha_status(&ha.discovery_prefix),
                topics::ha_sweep_filter(&ha.discovery_prefix, base),
            ],
            tx: w.ha.clone(),
        }),
    };
    let session = Session {
        client,
        client_id: config.mqtt.client_id.clone().unwrap_or_default(),
        base: base.clone(),
        terminals: config.terminals.iter().map(|t| t.id.clone()).collect(),
        events: events_rx,
        outbound: out,
        stats: w.stats.clone(),
        drain: DRAIN,
        inbox,
        feed: Publisher::new(
            w.spool.clone(),
            base.clone(),
            durable,
            w.acks.clone(),
            records,
        )
        .with_captures(
            w.router.clone(),
            config
                .terminals
                .iter()
                .filter(|t| t.keeps_captures())
                .map(|t| t.id.clone())
                .collect(),
        ),
        heartbeat: beats.register("publisher"),
    };
    let stage = Stage::default();
    let run = session.run(stage.stop.clone());
    w.sup
        .spawn(&stage.tasks, "mqtt session", Lifetime::UntilShutdown, run);
    Ok((stage, driver))
}

/// One terminal: its record link, its backfill, its command executor and time sync. Returns
/// what the command router needs to reach it.
pub fn spawn_terminal(config: &Config, t: &TerminalConfig, w: &Wiring) -> Result<Route, Failure> {
    let client = TerminalClient::new(Endpoint::of(t).map_err(Failure::Config)?);
    let (trigger_tx, trigger_rx) = watch::channel(0u64);
    let caught_up = Arc::new(AtomicU64::new(0));
    let clock = w.clocks.of(&t.id);
    let (sup, tracker, stop) = (&w.sup, &w.inputs.tasks, &w.inputs.stop);
    let id = &t.id;
    let commands = &config.commands;
    let responder = Responder {
        base: config.mqtt.base_topic.clone(),
        terminal: id.clone(),
        out: w.out.clone(),
    };
    // One executor per terminal, so a terminal that never answers delays only itself.
    let (jobs_tx, jobs_rx) = mpsc::channel(8);
    let executor = Executor {
        client: client.clone(),
        jobs: jobs_rx,
        responder: responder.clone(),
        max_age: commands.max_age,
        require_synchronized_clock: commands.require_synchronized_clock,
        clock_synchronized: Arc::new(command::clock::kernel_clock_synchronized),
        router: w.router.clone(),
        visitors: t
            .commands
            .iter()
            .any(|c| c.is_people())
            .then_some(config.people.refresh),
    };
    sup.spawn(
        tracker,
        format!("commands {id}"),
        Lifetime::UntilShutdown,
        executor.run(stop.clone()),
    );
    let sync = command::time_sync(
        t.time_sync_interval,
        trigger_tx.subscribe(),
        clock.clone(),
        jobs_tx.clone(),
        stop.clone(),
    );
    sup.spawn(
        tracker,
        format!("time sync {id}"),
        Lifetime::UntilDone,
        sync,
    );
    let ingest = Ingest {
        terminal: t.clone(),
        client: client.clone(),
        spool: w.writer.clone(),
        budget: w.budget.clone(),
        outbound: w.out.clone(),
        backfill: trigger_tx,
        caught_up: caught_up.clone(),
        clock: clock.clone(),
        noise: Default::default(),
    };
    sup.spawn(
        tracker,
        format!("ingest {id}"),
        Lifetime::UntilShutdown,
        ingest.run(stop.clone()),
    );
    if config.home_assistant.enabled {
        let details =
            homeassistant::fetch_details(id.clone(), client.clone(), w.ha.clone(), stop.clone());
        sup.spawn(
            tracker,
            format!("device details {id}"),
            Lifetime::UntilDone,
            details,
        );
    }
    let backfill = Backfill {
        terminal: t.clone(),
        client,
        spool: w.spool.clone(),
        writer: w.writer.clone(),
        budget: w.budget.clone(),
        trigger: trigger_rx,
        caught_up,
        clock,
        noise: Default::default(),
    };
    sup.spawn(
        tracker,
        format!("backfill {id}"),
        Lifetime::UntilShutdown,
        backfill.run(stop.clone()),
    );
    let allowed = t.allowed_commands();
    // The lock shows the door open for as long as the gate holds a second open back.
    let lock = allowed
        .contains(&Cmd::Open)
        .then(|| Shown::new(commands.open_hold));
    let gate = Gate::new(commands.max_age, commands.open_hold, allowed);
    Ok(Route {
        gate,
        jobs: jobs_tx,
        responder,
        lock,
    })
}

/// Discovery, its upkeep, diagnostics, and what follows each published record.
pub fn spawn_homeassistant(
    config: &Config,
    w: &Wiring,
    inbox: mpsc::Receiver<HaMsg>,
    records: mpsc::Receiver<Published>,
) {
    let ha = HomeAssistant {
        config: config.home_assistant.clone(),
        base: config.mqtt.base_topic.clone(),
        terminals: config.terminals.clone(),
        buttons: config.buttons.clone(),
        inbox,
        records,
        out: w.out.clone(),
        diagnostics: Diagnostics {
            spool: w.spool.clone(),
            max_bytes: config.spool.max_size.0,
            stats: w.stats.clone(),
            terminals: config.terminals.len(),
            clocks: w.clocks.clone(),
        },
        diagnostics_interval: config.mqtt.diagnostics_interval,
    };
    let run = ha.run(w.inputs.stop.clone());
    w.sup.spawn(
        &w.inputs.tasks,
        "home assistant",
        Lifetime::UntilShutdown,
        run,
    );
}
