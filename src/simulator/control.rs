//! The simulator's control API: faults and pushes over plain HTTP on their own port, so they keep
//! working while the simulated terminal is "rebooting". Documented in the README.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use base64::Engine;

use super::Simulator;
use crate::integrations::terminal::PersonType;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    count: Option<u32>,
    /// Someone shows this face: `"last"` (the person of the newest record comes back) or a
    /// base64 JPEG. Whom the terminal recognizes follows from its users (`faces.rs`).
    face: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    silent: Option<bool>,
    refuse_auth: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    http_delay: Option<Duration>,
    http_error: Option<super::state::HttpErrorFault>,
    clock_skew: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootBody {
    #[serde(with = "humantime_serde")]
    down: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    per_second: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    text: Option<String>,
    /// Repeat `text` to this many bytes (oversized-frame tests).
    pad_to: Option<usize>,
    #[serde(default)]
    binary: bool,
}

/// The longest reboot downtime or HTTP delay the control API takes: a test tool, but one on the
/// network, so values from a request never reach clock arithmetic unchecked.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The largest raw frame `pad_to` builds: past the bridge's 16 MiB transport limit, not more.
const MAX_PAD: usize = 64 << 20;

/// `text` repeated to exactly `n` bytes, cut on a character boundary (so possibly a little
/// short of `n` when the text is not ASCII).
fn pad(text: String, n: usize) -> String {
    let unit = if text.is_empty() { "x" } else { &text };
    // One repetition more than fits, so the cut below is always inside the text.
    let mut out = unit.repeat(n / unit.len() + 1);
    let mut cut = n;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}

/// "-90s", "10m", "0s" → milliseconds.
fn parse_skew(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = humantime::parse_duration(body).map_err(|e| format!("clock_skew: {e}"))?;
    if d > MAX_WAIT * 365 {
        return Err(format!("clock_skew: `{s}` is more than a century"));
    }
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("clock_skew: `{s}` is too large"))?;
    Ok(if neg { -ms } else { ms })
}

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = super::http::json_response(body.to_string());
    *r.status_mut() = code;
    r
}

fn bad(msg: String) -> Response<Full<Bytes>> {
    reply(StatusCode::BAD_REQUEST, json!({"error": msg}))
}

fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

async fn handle(
    sim: Simulator,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), 8 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(bad("body too large".into())),
    };
    Ok(route(&sim, method, &path, &body).unwrap_or_else(bad))
}

/// The answer to one control call; `Err` is a 400 with that error.
fn route(
    sim: &Simulator,
    method: Method,
    path: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, String> {
    Ok(match (method, path) {
        (Method::GET, "/sim/status") => reply(StatusCode::OK, sim.status()),
        (Method::POST, "/sim/push") => {
            let req: PushRequest = parse(body)?;
            let kind = match req.kind.as_deref() {
                None | Some("random") => None,
                Some(k) => Some(PersonType::parse(k).ok_or_else(|| {
                    format!("type: `{k}` is not staff, visitor, blacklist, stranger or random")
                })?),
            };
            let face = match req.face.as_deref() {
                None => None,
                Some(_) if kind.is_some() => {
                    return Err(
                        "type: a face is recognized as whoever it is enrolled as; leave type out"
                            .into(),
                    )
                }
                Some("last") => Some(
                    sim.newest_capture()
                        .ok_or("face: \"last\": the newest record has no capture")?,
                ),
                Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                    Ok(jpeg) if super::faces::key(&jpeg).is_some() => Some(jpeg.into()),
                    _ => return Err("face: not \"last\" nor a base64 JPEG".into()),
                },
            };
            let mut pushed = Vec::new();
            for _ in 0..req.count.unwrap_or(1).min(100_000) {
                let r = face
                    .clone()
                    .map_or_else(|| sim.push(kind), |jpeg| sim.push_face(jpeg));
                pushed.push(json!({"id": r["id"], "signTime": r["signTime"], "type": r["type"], "name": r["name"]}));
            }
            reply(StatusCode::OK, json!({"pushed": pushed}))
        }
        (Method::POST, "/sim/raw") => {
            let req: RawBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let mut text = req.text.unwrap_or_default();
            if let Some(n) = req.pad_to {
                if n > MAX_PAD {
                    return Err(format!("pad_to: at most {MAX_PAD} bytes"));
                }
                text = pad(text, n);
            }
            sim.push_raw(if req.binary {
                Message::binary(text.into_bytes())
            } else {
                Message::text(text)
            });
            reply(StatusCode::OK, json!({"sent": true}))
        }
        (Method::POST, "/sim/faults") => {
            let req: FaultsRequest = parse(body)?;
            let skew = req.clock_skew.as_deref().map(parse_skew).transpose()?;
            if let Some(s) = req.silent {
                sim.set_silent(s);
            }
            if let Some(r) = req.refuse_auth {
                sim.set_refuse_auth(r);
            }
            if req.http_delay.is_some_and(|d| d > MAX_WAIT) {
                return Err("http_delay: at most 24h".into());
            }
            if let Some(d) = req.http_delay {
                sim.set_http_delay(d);
            }
            if let Some(e) = req.http_error {
                sim.fail_http(e.code, e.count);
            }
            if let Some(ms) = skew {
                sim.set_clock_skew(ms);
            }
            reply(StatusCode::OK, sim.status())
        }
        (Method::DELETE, "/sim/faults") => {
            sim.clear_faults();
            reply(StatusCode::OK, sim.status())
        }
        (Method::POST, "/sim/close") => {
            sim.close_links();
            reply(StatusCode::OK, json!({"closed": true}))
        }
        (Method::POST, "/sim/reboot") => {
            let r: RebootBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            if r.down > MAX_WAIT {
                return Err("down: at most 24h".into());
            }
            sim.reboot(r.down);
            reply(StatusCode::OK, json!({"rebooting": true}))
        }
        (Method::POST, "/sim/rate") => {
            let r: RateBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            if !(r.per_second.is_finite() && r.per_second >= 0.0) {
                return Err("per_second must be a number >= 0".into());
            }
            sim.set_rate(r.per_second);
            reply(StatusCode::OK, json!({"per_second": r.per_second}))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no such control endpoint: {path}")}),
        ),
    })
}

/// Serves the control API until `shutdown`.
pub async fn serve(sim: Simulator, listener: TcpListener, shutdown: CancellationToken) {
    super::serve_http(listener, shutdown, move |req| handle(sim.clone(), req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skew_reads_signed_durations() {
        assert_eq!(parse_skew("-90s"), Ok(-90_000));
        assert_eq!(parse_skew("10m"), Ok(600_000));
        assert_eq!(parse_skew("+1s"), Ok(1000));
        assert!(parse_skew("soon").is_err());
        assert!(parse_skew("500000000y").is_err());
    }

    #[test]
    fn padding_stops_on_a_character_boundary() {
        assert_eq!(pad("ab".into(), 5), "ababa");
        assert_eq!(pad(String::new(), 3), "xxx");
        // "é" is two bytes: 3 bytes would cut the second one in half.
        assert_eq!(pad("é".into(), 3), "é");
        assert_eq!(pad("long".into(), 2), "lo");
    }
}
