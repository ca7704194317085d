//! The fuzz targets' findings, replayed in the normal suite (CI runs these, never the fuzzers).
//!
//! Every input in `fuzz/regressions/<target>/` (a crash `scripts/fuzz` found, copied there from
//! `fuzz/artifacts/<target>/` once fixed) goes through the same function its target calls. The
//! inputs of issue 9 are here too, so each entry point is exercised even with no file saved.

#[path = "../fuzz/entries.rs"]
mod entries;

use std::path::Path;

/// Replays every saved input of `target`; returns how many there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.file_name().is_some_and(|f| f == ".gitkeep") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable regression input");
        eprintln!("replaying {}", path.display());
        run(&bytes);
        n += 1;
    }
    n
}

/// Mode byte 0: the whole-frame path of the `frame` target.
fn frame(text: &str) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(text.as_bytes());
    b
}

#[test]
fn saved_frame_findings_and_the_issues_frames_do_not_panic() {
    replay("frame", entries::frame);
    for t in [
        "1e30",
        "300000000000000",
        "\"253402300800000\"",
        "-1",
        "1.7976931348623157e308",
    ] {
        entries::frame(&frame(&format!(
            r#"{{"code":30000,"data":{{"id":1,"signTime":{t},"temperature":1.7976931348623157e308}}}}"#
        )));
    }
}

#[test]
fn saved_request_findings_and_the_issues_requests_do_not_panic() {
    replay("request", entries::request);
    for p in [
        &br#"{"time":1e25}"#[..],
        b"xyzzy 123",
        b"[1,2]",
        b"null",
        &[0xff; 64],
    ] {
        let mut b = vec![0u8];
        b.extend_from_slice(p);
        entries::request(&b);
    }
}

#[test]
fn saved_http_findings_and_hostile_pages_do_not_panic() {
    replay("http", entries::http);
    entries::http(br#" {"code":200,"data":{"total":1e30,"pageNum":-1,"totalPage":"x","data":[{"signTime":1e30}]}}"#);
    entries::http(b"\x01page=9223372036854775807&size=1000\nremark=x");
}

#[test]
fn saved_config_findings_and_the_issues_configs_do_not_panic() {
    replay("config", entries::config);
    entries::config(
        b"[mqtt]\nurl = \"mqtt://h\"\n[spool]\nmax_size = \"99999999999999999999GiB\"\n",
    );
    entries::config("[mqtt]\nurl = \"\u{e9}\"\nx = ".as_bytes());
}
