//! Pipeline benchmark: `cargo bench --bench pipeline` (needs Mosquitto; `scripts/test` installs
//! it; Node-RED is installed into `target/node-red` with npm, or skipped with a line saying so).
//!
//! Everything runs on this one machine: the simulators (in this process), the bridge (the release
//! binary, a separate process, as deployed), Mosquitto, Node-RED and a subscriber. Figures are
//! end to end and include the simulator's own cost of printing frames; compare the rows of one
//! run with each other (ratios), not with another machine's. Every scenario has its own broker,
//! simulator and bridge. `BENCH_SCALE=0.1` scales record counts and waits down for a quick run.
//!
//! Progress goes to stderr; stdout ends with one markdown table of issue 10's goal rows, for
//! BENCHMARKS.md.
//!
//! `BENCH_BASELINE_BIN=<an older build's face2mqtt>` (`scripts/bench-baseline <commit>` builds
//! one) runs the drain and backlog scenarios with that binary too, in turn with this build's,
//! `BENCH_ROUNDS` rounds (default 2 with a baseline, else 1); a table per scenario then lists
//! every run, labelled current / baseline, with the ratios.

#[path = "../../tests/common/mod.rs"]
mod common;

mod backfill;
mod backlog;
mod bridge;
mod burst;
mod drain;
mod latency;
mod measure;
mod nodered;
mod scale;
mod sustained;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use face2mqtt::simulator::SimConfig;
use measure::{count, factor, mib, ms, scale, scaled, secs};

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "{cpu}, {cores} cores, {:.1} GiB RAM, Linux {} {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        std::env::consts::ARCH
    )
}

/// The report: one row per figure, face2mqtt beside Node-RED where both were measured.
struct Table(Vec<[String; 5]>);

impl Table {
    fn row(&mut self, measure: String, ours: String, goal: &str) {
        self.0
            .push([measure, ours, "".into(), "".into(), goal.to_string()]);
    }

    fn versus(&mut self, measure: String, ours: String, theirs: String, ratio: String, goal: &str) {
        self.0
            .push([measure, ours, theirs, ratio, goal.to_string()]);
    }

    fn print(&self) {
        println!("| measure | face2mqtt | Node-RED | Node-RED ÷ face2mqtt | goal (issue 10) |");
        println!("|---|---|---|---|---|");
        for r in &self.0 {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

fn ratio(theirs: f64, ours: f64) -> String {
    if ours > 0.0 {
        format!("{:.1}x", theirs / ours)
    } else {
        "–".into()
    }
}

fn lat(l: &latency::Latency) -> String {
    let lost = if l.lost > 0 {
        format!(" ({} lost)", l.lost)
    } else {
        String::new()
    };
    format!("{} / {}{lost}", ms(l.p50), ms(l.p99))
}

fn rss_after(b: &burst::Burst) -> String {
    let diff = b.rss_after as f64 - b.idle_rss as f64;
    let fresh = b
        .fresh_rss
        .map(|f| format!("; fresh start {}", mib(f)))
        .unwrap_or_default();
    format!(
        "{} → {} ({}{}{fresh})",
        mib(b.idle_rss),
        mib(b.rss_after),
        if diff >= 0.0 { "+" } else { "−" },
        mib(diff.abs() as u64)
    )
}

fn step(what: &str) -> Instant {
    eprintln!("== {what}");
    Instant::now()
}

fn done(t: Instant) {
    eprintln!("   ({})", secs(t.elapsed()));
}

/// Whether the scenario `name` runs: all of them, or those named in `BENCH_ONLY`
/// (comma-separated: ready, latency, sustained, burst, drain, backlog, backfill, scale).
fn wanted(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|w| w.trim() == name))
}

/// `BENCH_BASELINE_BIN`: an older build to run beside this one (drain, backlog).
fn baseline() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("BENCH_BASELINE_BIN").filter(|b| !b.is_empty())?);
    assert!(
        bin.is_file(),
        "BENCH_BASELINE_BIN={}: no such file (scripts/bench-baseline <commit> builds one)",
        bin.display()
    );
    Some(bin)
}

/// `BENCH_ROUNDS`: how often each build runs the scenarios compared (default 2 with a baseline).
fn rounds(with_baseline: bool) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(if with_baseline { 2 } else { 1 })
}

/// One run of a compared scenario: its round, which build, what it measured.
struct Run<T> {
    round: usize,
    build: &'static str,
    r: T,
}

/// The builds a compared scenario runs, in the order of each round: this one, then the baseline.
fn builds(baseline: Option<&Path>) -> Vec<(&'static str, Option<&Path>)> {
    let mut b = vec![("current", None)];
    if let Some(bin) = baseline {
        b.push(("baseline", Some(bin)));
    }
    b
}

/// "current ÷ baseline" of `f`, round by round and over all rounds (sum over sum); empty without
/// a baseline.
fn ratios<T>(runs: &[Run<T>], what: &str, f: impl Fn(&T) -> f64) -> String {
    let of = |build: &str, round: Option<usize>| -> f64 {
        runs.iter()
            .filter(|x| x.build == build && round.is_none_or(|r| x.round == r))
            .map(|x| f(&x.r))
            .sum()
    };
    if !runs.iter().any(|x| x.build == "baseline") {
        return String::new();
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "–".into()
        }
    };
    let last = runs.iter().map(|x| x.round).max().unwrap_or(0);
    let by_round: Vec<String> = (1..=last)
        .map(|r| {
            format!(
                "round {r} {}",
                ratio(of("current", Some(r)), of("baseline", Some(r)))
            )
        })
        .collect();
    format!(
        "- current ÷ baseline, {what}: {}; all rounds {}",
        by_round.join(", "),
        ratio(of("current", None), of("baseline", None))
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let machine = machine();
    println!("machine: {machine}");
    // The spool fsyncs before it publishes, and an fsync waits behind the disk's other dirty
    // pages: right after `cargo bench` built this (100+ MB of them), the latency rows' p99 was
    // 21-24 ms instead of 6 ms. Flushed first, so the rows measure the bridge.
    match std::process::Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => eprintln!("warning: `sync` before the run failed ({other:?}); the first rows may wait on the disk"),
    }
    let mut t = Table(Vec::new());
    let baseline = baseline();
    let builds = builds(baseline.as_deref());
    let rounds = rounds(baseline.is_some());
    // The tables of the compared scenarios, printed after the main one.
    let mut compared: Vec<String> = Vec::new();
    rt.block_on(async {
        if wanted("ready") {
            let s = step("start to READY, empty spool");
            let ready_empty = {
                let broker = common::Mosquitto::start();
                let sim = common::simulator(SimConfig::default()).await;
                bridge::ready_empty(broker.port, &sim.sim, 5).await
            };
            t.row(
                "start → READY=1, empty spool (median of 5)".into(),
                ms(ready_empty),
                "",
            );
            done(s);
        }

        let n_lat = scale(400);
        for photos in [true, false].into_iter().filter(|_| wanted("latency")) {
            let s = step(&format!("latency, photos: {photos}"));
            let (l, peak) = latency::run(photos, n_lat).await;
            let with = if photos { "with" } else { "without" };
            t.row(
                format!("latency push → MQTT p50 / p99, {n_lat} records at 50/s {with} photos"),
                lat(&l),
                if photos { "" } else { "p99 ≤ 10 ms" },
            );
            t.row(format!("… peak RSS ({with} photos)"), mib(peak), "≤ 24 MiB");
            done(s);
        }

        for (photos, n, goal) in [
            (true, scale(5_000), "≥ 2,000 records/s"),
            (false, scale(20_000), "≥ 10,000 records/s"),
        ]
        .into_iter()
        .filter(|_| wanted("sustained"))
        {
            let with = if photos { "with" } else { "without" };
            let s = step(&format!("sustained, {with} photos"));
            let r = sustained::run(photos, n).await;
            let lost = if r.lost > 0 {
                format!(" ({} lost)", r.lost)
            } else {
                String::new()
            };
            t.row(
                format!("sustained, {} records {with} photos pushed as fast as the simulator prints them", count(r.n as f64)),
                format!("{} records/s{lost}", count(r.rate)),
                goal,
            );
            t.row(format!("… peak RSS ({with} photos)"), mib(r.peak_rss), "≤ 24 MiB");
            t.row(
                format!("… disk bytes written per record ({with} photos) vs its spooled size (record JSON + photo)"),
                format!(
                    "{:.1} KiB per {:.1} KiB: {:.1}×",
                    r.written / 1024.0,
                    r.spooled / 1024.0,
                    r.written / r.spooled
                ),
                "≤ 3×",
            );
            let per_record = |d: Duration| d.as_secs_f64() * 1e6 / r.n as f64;
            t.row(
                format!("… CPU per record ({with} photos): the bridge / the bench (simulator + subscriber) / Mosquitto; cores busy, the three together"),
                format!(
                    "{:.0} / {:.0} / {:.0} µs; {:.2} of {} cores (the bridge alone: {} records/s per core)",
                    per_record(r.cpu.bridge),
                    per_record(r.cpu.bench),
                    per_record(r.cpu.broker),
                    r.cpu.cores(),
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                    count(1e6 / per_record(r.cpu.bridge).max(1e-9)),
                ),
                "reported",
            );
            done(s);
        }

        let settle = scaled(Duration::from_secs(60));
        let n_burst = scale(5_000);
        if wanted("burst") {
            let s = step("burst");
            let b = burst::run(n_burst, settle).await;
            done(s);
            let s = step("Node-RED");
            let nr = match nodered::install() {
                Ok(red) => Some(nodered::run(&red, scale(400), n_burst, settle).await),
                Err(why) => {
                    println!("SKIPPED: Node-RED side by side: {why}");
                    None
                }
            };
            done(s);
            burst_rows(&mut t, &b, nr.as_ref(), n_burst);
        }

        if wanted("drain") {
            let n_drain = scale(20_000);
            let mut runs = Vec::new();
            for round in 1..=rounds {
                for (build, bin) in &builds {
                    let s = step(&format!("drain, round {round}, {build}"));
                    let r = drain::run(n_drain, *bin, build).await;
                    eprintln!("   drain {}, peak RSS {}, lost {}", secs(r.drain), mib(r.peak_rss), r.lost);
                    done(s);
                    runs.push(Run { round, build, r });
                }
            }
            drain_rows(&mut t, &runs);
            compared.extend(drain_table(&runs, baseline.as_deref()));
        }

        if wanted("backlog") {
            let n_backlog = scale(100_000);
            let mut runs = Vec::new();
            for round in 1..=rounds {
                for (build, bin) in &builds {
                    let s = step(&format!("backlog, round {round}, {build}"));
                    let r = backlog::run(n_backlog, 3, *bin).await;
                    eprintln!("   drain {}, peak RSS {}, lost {}", secs(r.drain), mib(r.peak_rss), r.lost);
                    done(s);
                    runs.push(Run { round, build, r });
                }
            }
            backlog_rows(&mut t, &runs[0].r);
            if runs.len() > 1 {
                compared.extend(backlog_table(&runs, baseline.as_deref()));
            }
        }

        if wanted("backfill") {
            let s = step("backfill");
            let bf = backfill::run(scale(10_000)).await;
            done(s);
            t.row(
                format!("backfill: {} photo records kept by the terminal while the link was down, fetched after it returns", count(bf.n as f64)),
                format!("{} ({} records/s)", secs(bf.time), count(bf.n as f64 / bf.time.as_secs_f64())),
                "",
            );
            t.row("… peak RSS".into(), mib(bf.peak_rss), "≤ 24 MiB");
            t.row("… lost".into(), bf.lost.to_string(), "0");
        }

        if wanted("scale") {
            let s = step("16 terminals");
            let sc = scale::run(16, 5.0, scaled(Duration::from_secs(60))).await;
            done(s);
            t.row(
                format!(
                    "{} terminals at {} records/s each with photos for {} ({} records): p50 / p99",
                    sc.terminals, sc.per_second, secs(sc.wall), count(sc.n as f64)
                ),
                lat(&sc.latency),
                "p99 ≤ 20 ms",
            );
            t.row("… peak RSS".into(), mib(sc.peak_rss), "≤ 24 MiB");
            t.row(
                "… bridge CPU (user + system over wall time, % of one core)".into(),
                format!("{:.1} %", sc.cpu_percent),
                "reported",
            );
        }
    });
    println!();
    println!(
        "{machine}; BENCH_SCALE={}; whole run {}",
        factor(),
        secs(started.elapsed())
    );
    println!();
    t.print();
    for line in compared {
        println!("{line}");
    }
}

/// The binaries compared, for the header of their tables.
fn binaries(baseline: Option<&Path>) -> String {
    let current = std::env::var_os("FACE2MQTT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_face2mqtt")));
    match baseline {
        Some(b) => format!("current: {}; baseline: {}", current.display(), b.display()),
        None => format!("current: {}", current.display()),
    }
}

/// The drain's rows in the main table: this build's runs.
fn drain_rows(t: &mut Table, runs: &[Run<drain::Drain>]) {
    let ours: Vec<&drain::Drain> = runs
        .iter()
        .filter(|x| x.build == "current")
        .map(|x| &x.r)
        .collect();
    let list = |f: &dyn Fn(&drain::Drain) -> String| {
        ours.iter().map(|d| f(d)).collect::<Vec<_>>().join(", ")
    };
    let n = ours.first().map_or(0, |d| d.n);
    t.row(
        format!("drain: {} records without photos spooled with the broker down, then the broker back while the bridge runs: broker start → last record", count(n as f64)),
        list(&|d| format!("{:.2} s ({} records/s)", d.drain.as_secs_f64(), count(d.n as f64 / d.drain.as_secs_f64()))),
        "",
    );
    t.row(
        "… peak RSS (whole run; before the broker returned)".into(),
        list(&|d| format!("{} ({})", mib(d.peak_rss), mib(d.peak_rss_spooling))),
        "≤ 24 MiB",
    );
    t.row("… lost".into(), list(&|d| d.lost.to_string()), "0");
}

/// Every drain run, labelled current / baseline, and the ratios.
fn drain_table(runs: &[Run<drain::Drain>], baseline: Option<&Path>) -> Vec<String> {
    let n = runs.first().map_or(0, |x| x.r.n);
    let mut out = vec![
        String::new(),
        format!(
            "drain: {} records without photos spooled with the broker down, then the broker back while the bridge keeps running ({})",
            count(n as f64),
            binaries(baseline)
        ),
        String::new(),
        "| round | build | broker start → last record | records/s | peak RSS (before the broker returned) | bridge CPU over the drain | disk written over the drain | spooling | lost |".into(),
        "|---|---|---|---|---|---|---|---|---|".into(),
    ];
    for x in runs {
        let d = &x.r;
        out.push(format!(
            "| {} | {} | {:.2} s | {} | {} ({}) | {:.2} s | {} | {} | {} |",
            x.round,
            x.build,
            d.drain.as_secs_f64(),
            count(d.n as f64 / d.drain.as_secs_f64()),
            mib(d.peak_rss),
            mib(d.peak_rss_spooling),
            d.cpu.as_secs_f64(),
            mib(d.written),
            secs(d.spooling),
            d.lost
        ));
    }
    let lines = [
        ratios(runs, "drain time", |d: &drain::Drain| d.drain.as_secs_f64()),
        ratios(runs, "bridge CPU over the drain", |d: &drain::Drain| {
            d.cpu.as_secs_f64()
        }),
        ratios(runs, "peak RSS", |d: &drain::Drain| d.peak_rss as f64),
    ];
    if !lines[0].is_empty() {
        out.push(String::new());
        out.extend(lines);
    }
    out
}

/// Every backlog run, labelled current / baseline, and the ratios.
fn backlog_table(runs: &[Run<backlog::Backlog>], baseline: Option<&Path>) -> Vec<String> {
    let n = runs.first().map_or(0, |x| x.r.n);
    let mut out = vec![
        String::new(),
        format!(
            "backlog: {} records (1 in 10 with a photo) spooled with the broker down, the bridge restarted on the spool, then the broker back ({})",
            count(n as f64),
            binaries(baseline)
        ),
        String::new(),
        "| round | build | spooling | start → READY=1 (median of 3) | drain | records/s | peak RSS (spooling) | lost |".into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    for x in runs {
        let b = &x.r;
        out.push(format!(
            "| {} | {} | {} | {} | {:.2} s | {} | {} ({}) | {} |",
            x.round,
            x.build,
            secs(b.spooling),
            ms(b.ready),
            b.drain.as_secs_f64(),
            count(b.n as f64 / b.drain.as_secs_f64()),
            mib(b.peak_rss),
            mib(b.peak_rss_spooling),
            b.lost
        ));
    }
    let lines = [
        ratios(runs, "drain time", |b: &backlog::Backlog| {
            b.drain.as_secs_f64()
        }),
        ratios(runs, "peak RSS", |b: &backlog::Backlog| b.peak_rss as f64),
        ratios(runs, "start → READY=1", |b: &backlog::Backlog| {
            b.ready.as_secs_f64()
        }),
    ];
    if !lines[0].is_empty() {
        out.push(String::new());
        out.extend(lines);
    }
    out
}

/// The burst rows, with Node-RED beside face2mqtt where it ran.
fn burst_rows(t: &mut Table, b: &burst::Burst, nr: Option<&nodered::Comparison>, n_burst: usize) {
    let skipped = || "skipped".to_string();
    let n_cmp = scale(400);
    match nr {
        Some(c) => {
            t.versus(
                format!("latency p50 / p99, {n_cmp} records at 50/s, half with photos (same simulator and broker, one after the other)"),
                lat(&c.ours.latency),
                lat(&c.theirs.latency),
                format!(
                    "{} / {}",
                    ratio(c.theirs.latency.p50.as_secs_f64(), c.ours.latency.p50.as_secs_f64()),
                    ratio(c.theirs.latency.p99.as_secs_f64(), c.ours.latency.p99.as_secs_f64())
                ),
                "",
            );
            t.versus(
                "… peak RSS (Node-RED: the node process)".into(),
                mib(c.ours.peak_rss),
                mib(c.theirs.peak_rss),
                ratio(c.theirs.peak_rss as f64, c.ours.peak_rss as f64),
                "≤ 24 MiB",
            );
        }
        None => t.versus(
            format!("latency p50 / p99, {n_cmp} records at 50/s, half with photos"),
            "skipped with Node-RED".into(),
            skipped(),
            "".into(),
            "",
        ),
    }
    let theirs = |f: &dyn Fn(&burst::Burst) -> String| nr.map_or_else(skipped, |c| f(&c.burst));
    let burst_ratio = nr.map_or(String::new(), |c| {
        ratio(c.burst.peak_rss as f64, b.peak_rss as f64)
    });
    t.versus(
        format!(
            "burst: {} photo records pushed while the broker is down, then drained: peak RSS",
            count(n_burst as f64)
        ),
        mib(b.peak_rss),
        theirs(&|x: &burst::Burst| mib(x.peak_rss)),
        burst_ratio,
        "≤ 24 MiB",
    );
    t.versus(
        "… lost (event ids pushed but never published)".into(),
        b.lost.to_string(),
        theirs(&|x: &burst::Burst| format!("{} of {}", x.lost, x.n)),
        "".into(),
        "0",
    );
    t.versus(
        "… drain: broker start → last record".into(),
        secs(b.drain),
        theirs(&|x: &burst::Burst| {
            if x.lost == x.n {
                "nothing to drain".into()
            } else {
                secs(x.drain)
            }
        }),
        "".into(),
        "",
    );
    t.versus(
        format!(
            "… RSS idle before the burst (the bridge: after {} photo records published) → {} after the drain (difference)",
            burst::WARM_UP,
            secs(b.settle)
        ),
        rss_after(b),
        theirs(&rss_after),
        "".into(),
        "within 2 MiB of idle",
    );
}

/// The backlog rows.
fn backlog_rows(t: &mut Table, bl: &backlog::Backlog) {
    t.row(
        format!("backlog: {} records (1 in 10 with a photo) spooled with the broker down: time, spool on disk", count(bl.n as f64)),
        format!("{}, {}", secs(bl.spooling), mib(bl.spool_bytes)),
        "",
    );
    t.row(
        "… drain after the broker returns (bridge restarted on the spool)".into(),
        format!(
            "{} ({} records/s)",
            secs(bl.drain),
            count(bl.n as f64 / bl.drain.as_secs_f64())
        ),
        "≤ 60 s",
    );
    t.row(
        "… peak RSS (spooling / draining, the higher)".into(),
        format!(
            "{} (spooling {})",
            mib(bl.peak_rss),
            mib(bl.peak_rss_spooling)
        ),
        "≤ 24 MiB",
    );
    t.row("… lost".into(), bl.lost.to_string(), "0");
    t.row(
        format!(
            "start → READY=1 with the {} records spooled, broker down (median of {})",
            count(bl.n as f64),
            bl.ready_runs
        ),
        ms(bl.ready),
        "≤ 300 ms",
    );
}
