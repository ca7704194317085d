//! The spool alone, no network: `cargo bench --bench spool`.
//!
//! What the disk costs per record, with the writer's own pattern: a batch of records appended,
//! then one `flush` (group commit), then every entry read back and acknowledged (the drain).
//! Realistic records: the simulator's, normalized as ingest does, with its ~43 KB JPEG photos.
//! Reports records/s and bytes the kernel wrote to the block device per record (`write_bytes` of
//! /proc/self/io, fsyncs included) against the record's own spooled size. The spool lives in
//! `target/` (a real disk: /tmp may be a tmpfs, whose fsync costs nothing). `BENCH_SCALE=0.2`
//! makes a quick run.

use std::time::Instant;

use face2mqtt::integrations::terminal::PersonType;
use face2mqtt::pipeline::record::{self, Normalized, Source};
use face2mqtt::pipeline::spool::Spool;
use face2mqtt::simulator::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

fn scale(n: usize) -> usize {
    let f: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * f) as usize).max(10)
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `n` records as the simulator pushes them, normalized.
fn records(n: usize, photos: bool) -> Vec<Normalized> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let stop = CancellationToken::new();
        let sim = Simulator::bind(
            SimConfig {
                photos,
                rate: 0.0,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
            stop.clone(),
        )
        .await
        .expect("simulator");
        let out = (0..n)
            .map(|_| {
                let v = sim.push(Some(PersonType::Staff));
                record::normalize("t", v.as_object().expect("object"), Source::Live)
                    .expect("normalizes")
            })
            .collect();
        stop.cancel();
        out
    })
}

/// Bytes the directory takes on disk (allocated blocks, as `du` counts them).
fn du(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for item in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = item.metadata() else { continue };
        total += m.blocks() * 512;
        if m.is_dir() {
            total += du(&item.path());
        }
    }
    total
}

struct Run {
    records_per_s: f64,
    /// The spool directory on disk, full, against what it holds.
    on_disk: u64,
    spooled: u64,
    /// The directory on disk once every entry left.
    empty: u64,
    drain_per_s: f64,
    written_per_record: f64,
    spooled_per_record: f64,
}

fn run(recs: &[Normalized], batch: usize) -> Run {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).expect("tmp dir");
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 40).expect("spool");
    let before = write_bytes();
    let start = Instant::now();
    let mut spooled = 0u64;
    for chunk in recs.chunks(batch) {
        for r in chunk {
            let b = spool.bytes();
            spool
                .append("t", r, r.photo.as_deref(), true)
                .expect("append");
            spooled += spool.bytes() - b;
        }
        spool.flush().expect("flush");
    }
    let filled = start.elapsed();
    let on_disk = du(dir.path());
    let start = Instant::now();
    let mut after = None;
    loop {
        let b = spool.next_batch(after, 256).expect("read");
        let Some((last, _)) = b.entries.last() else {
            break;
        };
        after = Some(*last);
        for (seq, e) in &b.entries {
            let _photo = spool.photo(*seq, e).expect("photo");
            spool.ack(*seq).expect("ack");
        }
    }
    spool.flush().expect("flush");
    let drained = start.elapsed();
    let empty = du(dir.path());
    let written = write_bytes() - before;
    let n = recs.len() as f64;
    Run {
        records_per_s: n / filled.as_secs_f64(),
        on_disk,
        spooled,
        empty,
        drain_per_s: n / drained.as_secs_f64(),
        written_per_record: written as f64 / n,
        spooled_per_record: spooled as f64 / n,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks what is here: nothing to list.
    }
    println!("| records | batch | append+flush, records/s | drain, records/s | spooled per record | written per record | written / spooled | on disk full / spooled / drained |");
    println!("|---|---|---|---|---|---|---|---|");
    for (photos, n, batches) in [
        (true, scale(2_000), &[1usize, 16, 64][..]),
        (false, scale(20_000), &[1usize, 64, 256][..]),
    ] {
        let recs = records(n, photos);
        for &batch in batches {
            // Batches of one are slow by design (a flush per record): fewer of them.
            let recs = if batch == 1 {
                &recs[..n / 10]
            } else {
                &recs[..]
            };
            let r = run(recs, batch);
            println!(
                "| {} {} | {batch} | {:.0} | {:.0} | {:.1} KiB | {:.1} KiB | {:.1}x | {:.1} / {:.1} / {:.1} MiB |",
                recs.len(),
                if photos { "with photos" } else { "without photos" },
                r.records_per_s,
                r.drain_per_s,
                r.spooled_per_record / 1024.0,
                r.written_per_record / 1024.0,
                r.written_per_record / r.spooled_per_record,
                r.on_disk as f64 / (1 << 20) as f64,
                r.spooled as f64 / (1 << 20) as f64,
                r.empty as f64 / (1 << 20) as f64,
            );
        }
    }
}
