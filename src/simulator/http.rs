//! The terminal's HTTP API, served from the simulator's state.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::state::{HttpErrorFault, State};
use super::{cjson, Shared};
use crate::integrations::terminal::model::User;

/// User photos are ~60 KB of base64; leave room for larger ones.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub type HttpResponse = Response<Full<Bytes>>;

pub fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `{"code":..,"message":..,"desc":..}` printed the cJSON way, plus any extra members.
pub fn envelope(
    code: i64,
    message: &str,
    desc: &str,
    extra: Option<(&str, Value)>,
) -> HttpResponse {
    let mut m = Map::new();
    m.insert("code".into(), json!(code));
    m.insert("message".into(), json!(message));
    m.insert("desc".into(), json!(desc));
    if let Some((k, v)) = extra {
        m.insert(k.into(), v);
    }
    json_response(cjson::print(&Value::Object(m)))
}

/// A 200 with this JSON text.
pub fn json_response(json: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn ok(data: Option<Value>) -> HttpResponse {
    envelope(200, "OK", "", data.map(|d| ("data", d)))
}

fn api_error(code: i64) -> HttpResponse {
    let code_ = crate::integrations::terminal::ApiCode::from_code(code);
    let desc = match code {
        40001 => "device-not-support",
        _ => "",
    };
    envelope(code, code_.message(), desc, None)
}

fn status(code: StatusCode, text: &str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = code;
    r
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = query_map(req.uri().query());
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };

    let (delay, injected) = {
        let mut st = shared.state();
        let injected = st.faults.http_error.filter(|f| f.count > 0);
        st.faults.http_error = injected
            .map(|f| HttpErrorFault {
                count: f.count - 1,
                ..f
            })
            .filter(|f| f.count > 0);
        (st.faults.http_delay, injected.map(|f| f.code))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = injected {
        return Ok(
            match u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(s) if code < 1000 => status(s, "injected failure"),
                _ => api_error(code),
            },
        );
    }

    // A unit whose clock is off must still take the time that sets it right: the sync's own
    // timestamp is the time to set, so only its signature is checked (an assumption: the API
    // document is silent, docs/terminal-dialect.md).
    let sync = path.trim_end_matches('/') == "/api/device/syncTime";
    let auth = shared.state().check_auth(&query, !sync);
    if let Err(code) = auth {
        return Ok(api_error(code));
    }

    let form = form_fields(&content_type, &body);
    Ok(route(&shared, &method, &path, &query, &form, &body))
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    form: &BTreeMap<String, String>,
    body: &Bytes,
) -> HttpResponse {
    let post = method == Method::POST;
    let get = method == Method::GET;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "device", _] if !post => api_error(50004),
        ["api", "device", "open"] => {
            let remark = query.get("remark").or_else(|| form.get("remark")).cloned();
            let mut st = shared.state();
            let at_ms = st.terminal_now_ms();
            st.opens.push(super::state::OpenEvent { remark, at_ms });
            ok(None)
        }
        ["api", "device", "syncTime"] => {
            let Some(ts) = query.get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
                return api_error(30003);
            };
            let mut st = shared.state();
            let now =
                i64::try_from(crate::integrations::terminal::sign::now_ms()).unwrap_or(i64::MAX);
            st.clock_skew_ms = ts.saturating_sub(now);
            st.sync_times.push(u64::try_from(ts).unwrap_or(0));
            ok(None)
        }
        ["api", "device", "reboot"] => {
            shared.state().reboots += 1;
            // Answer first, then go down, as a unit does.
            let _ = shared.reboot_tx.try_send(super::RebootRequest {
                down: shared.reboot_downtime,
                after_answer: true,
            });
            ok(None)
        }
        ["api", "device", "jsonCmd"] => {
            let cmd = json_body(body, form).unwrap_or(Value::Null);
            shared.state().json_cmds.push(cmd);
            envelope(200, "OK", "", Some(("json", json!({}))))
        }
        ["api", "device", name @ ("information" | "network" | "smartface" | "perpara")] => ok(
            Some(Value::Object(settings(&mut shared.state(), name).clone())),
        ),
        ["api", "device", cfg @ ("networkcfg" | "smartfacecfg" | "perparacfg")] => {
            let Some(Value::Object(update)) = json_body(body, form) else {
                return api_error(30001);
            };
            // Unknown fields are stored as sent: firmware spellings drift.
            settings(&mut shared.state(), cfg.trim_end_matches("cfg")).extend(update);
            ok(None)
        }
        ["api", "device", _] => api_error(40001),
        ["api", "user"] if post => {
            let Some(user) =
                json_body(body, form).and_then(|v| serde_json::from_value::<User>(v).ok())
            else {
                return api_error(30001);
            };
            if user.user_id.is_empty() || user.name.is_empty() {
                return api_error(30003);
            }
            let mut st = shared.state();
            if let Err(code) = super::faces::check_photo(user.photo.as_deref(), st.min_face()) {
                return api_error(code);
            }
            if st.users.contains_key(&user.user_id) {
                return api_error(30001);
            }
            st.users.insert(user.user_id.clone(), user.clone());
            ok(Some(serde_json::to_value(&user).unwrap_or(Value::Null)))
        }
        ["api", "user", "update", id] if post => {
            let Some(Value::Object(update)) = json_body(body, form) else {
                return api_error(30001);
            };
            let mut st = shared.state();
            let Some(existing) = st.users.get(*id) else {
                return api_error(20001);
            };
            let Ok(Value::Object(mut merged)) = serde_json::to_value(existing) else {
                return api_error(50002);
            };
            merged.extend(update);
            merged.insert("userId".into(), json!(id));
            let Ok(user) = serde_json::from_value::<User>(Value::Object(merged)) else {
                return api_error(30001);
            };
            if let Err(code) = super::faces::check_photo(user.photo.as_deref(), st.min_face()) {
                return api_error(code);
            }
            st.users.insert(id.to_string(), user.clone());
            ok(Some(serde_json::to_value(&user).unwrap_or(Value::Null)))
        }
        ["api", "user", "delete", id] if get => {
            let mut st = shared.state();
            if *id == "all" || query.get("id").map(String::as_str) == Some("all") {
                st.users.clear();
                return ok(None);
            }
            match st.users.remove(*id) {
                Some(u) => ok(Some(serde_json::to_value(&u).unwrap_or(Value::Null))),
                None => api_error(20001),
            }
        }
        ["api", "user", "list"] if get => ok(Some(shared.state().user_page(query))),
        ["api", "record"] if get => ok(Some(shared.state().record_page(query))),
        ["api", ..] => api_error(50004),
        _ => status(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The settings object `GET /api/device/<name>` reads and `POST /api/device/<name>cfg` merges
/// into (`information` is the device's).
fn settings<'a>(st: &'a mut State, name: &str) -> &'a mut Map<String, Value> {
    match name {
        "network" => &mut st.network,
        "smartface" => &mut st.smart_face,
        "perpara" => &mut st.peripheral,
        _ => &mut st.device,
    }
}

fn json_body(body: &Bytes, form: &BTreeMap<String, String>) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Some(v);
    }
    // form-data as the document says: the JSON object sits in some field.
    form.values().find_map(|v| {
        serde_json::from_str::<Value>(v)
            .ok()
            .filter(Value::is_object)
    })
}

/// Text fields of an `application/x-www-form-urlencoded` or `multipart/form-data` body.
pub fn form_fields(content_type: &str, body: &[u8]) -> BTreeMap<String, String> {
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        return form_urlencoded::parse(body).into_owned().collect();
    }
    if !ct.starts_with("multipart/form-data") {
        return BTreeMap::new();
    }
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
    else {
        return BTreeMap::new();
    };
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut out = BTreeMap::new();
    for part in text.split(delimiter.as_str()) {
        let Some((headers, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = headers
            .split(';')
            .find_map(|h| h.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_string());
        if let Some(name) = name {
            out.insert(name, value.trim_end_matches("\r\n").to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_text_fields_are_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"remark\"\r\n\r\nfront gate\r\n--XyZ--\r\n";
        let f = form_fields("multipart/form-data; boundary=XyZ", body);
        assert_eq!(f.get("remark").map(String::as_str), Some("front gate"));
    }

    #[test]
    fn urlencoded_fields_are_read() {
        let f = form_fields("application/x-www-form-urlencoded", b"remark=a%20b&x=1");
        assert_eq!(f.get("remark").map(String::as_str), Some("a b"));
    }
}
