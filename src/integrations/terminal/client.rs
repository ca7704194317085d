// Over 450 lines: one short method per endpoint of the terminal's API; the document lists that many.
//! The signed HTTP client for every endpoint in the API document.
//!
//! Each attempt signs afresh (the terminal rejects timestamps more than 5 minutes off), every
//! call has a deadline (hyper has none of its own), and nothing secret — the password or the
//! `sign` in the URL — is ever put into an error: errors name the endpoint path only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use super::model::{ApiCode, ConfigObject, DeviceInfo, Envelope, Page, User};
use super::sign;
use crate::secret::Secret;

/// Where a terminal is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub http_port: u16,
    pub ws_port: u16,
    pub password: Secret,
    /// Deadline for one HTTP attempt, connect to last byte.
    pub timeout: Duration,
}

impl Endpoint {
    /// Where a configured terminal is reached; an error for a terminal without a password
    /// (never an empty one: a sign made from "" is a wrong password the terminal locks out).
    pub fn of(t: &crate::config::TerminalConfig) -> Result<Endpoint, String> {
        let password = t.password.clone().ok_or_else(|| {
            format!(
                "terminal `{}`: no password (give password or password_file)",
                t.id
            )
        })?;
        Ok(Endpoint {
            host: t.host.clone(),
            http_port: t.http_port,
            ws_port: t.ws_port,
            password,
            timeout: t.request_timeout,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("{endpoint}: terminal refused: {code}{}", desc_suffix(.desc))]
    Api {
        endpoint: String,
        code: ApiCode,
        desc: String,
    },
    #[error("{endpoint}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { endpoint: String, after: Duration },
    #[error("{endpoint}: terminal unreachable at {addr}: {reason}")]
    Unreachable {
        endpoint: String,
        addr: String,
        reason: String,
    },
    #[error("{endpoint}: HTTP {status} from the terminal")]
    HttpStatus { endpoint: String, status: u16 },
    #[error("{endpoint}: unexpected answer: {reason}")]
    Protocol { endpoint: String, reason: String },
    #[error("{endpoint}: the terminal's answer is larger than the {} limit", crate::config::ByteSize(*.limit as u64))]
    TooLarge { endpoint: String, limit: usize },
}

pub(super) fn desc_suffix(desc: &str) -> String {
    if desc.is_empty() {
        String::new()
    } else {
        format!(" [terminal says: {desc}]")
    }
}

/// An answer this client cannot use, from `endpoint`.
fn protocol(endpoint: &str, reason: impl ToString) -> TerminalError {
    TerminalError::Protocol {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    }
}

impl TerminalError {
    /// The terminal's error code, when the terminal answered with one.
    pub fn api_code(&self) -> Option<ApiCode> {
        match self {
            TerminalError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Worth another attempt of an idempotent call: the terminal did not answer properly.
    fn is_transient(&self) -> bool {
        match self {
            TerminalError::Timeout { .. } | TerminalError::Unreachable { .. } => true,
            TerminalError::HttpStatus { status, .. } => *status >= 500,
            TerminalError::Api { code, .. } => matches!(code, ApiCode::MultiRequestError),
            TerminalError::Protocol { .. } | TerminalError::TooLarge { .. } => false,
        }
    }
}

enum Body {
    Empty,
    Json(Value),
}

/// Which calls may be repeated after a transient failure. Door and power actions never are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Never,
    Idempotent,
}

const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// The most of one answer the client reads. A records page of [`MAX_RECORD_PAGE`] real records
/// (~60 KB each with its capture) is ~1.2 MB, a user page of 10 with photos less: an answer far
/// beyond that is a broken or hostile terminal, and reading it whole would cost the Pi its
/// memory (a 50 MB answer took the bridge to 363 MB).
pub const MAX_BODY: usize = 4 << 20;

/// The HTTP client's read buffer (see [`TerminalClient::new`]).
const READ_BUF: usize = 64 * 1024;

/// Records asked per page, whatever the caller asks (the API allows 1,000): pages stay well
/// inside [`MAX_BODY`]. Callers page by the `total_pages` the terminal returns, which follows
/// the size actually asked.
pub const MAX_RECORD_PAGE: u64 = 20;

/// Filters for `/api/record`. Times are Unix seconds (the terminal's clock), inclusive.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    pub start: u64,
    pub end: u64,
    /// 0 = everyone, else the user type code.
    pub person_type: i64,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub page: u64,
    /// At most 1,000 per the document.
    pub size: u64,
}

impl RecordQuery {
    pub fn between(start: u64, end: u64) -> RecordQuery {
        RecordQuery {
            start,
            end,
            person_type: 0,
            user_id: None,
            username: None,
            page: 1,
            size: MAX_RECORD_PAGE,
        }
    }
}

/// Filters for `/api/user/list`.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub person_type: Option<i64>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub page: u64,
    /// At most 10 per the document.
    pub size: u64,
}

/// The most users [`TerminalClient::all_users`] reads (the largest terminals hold tens of
/// thousands of faces; past this, a terminal that keeps saying there is another page is wrong).
pub const MAX_USERS: usize = 50_000;
/// The most bytes of users (as JSON, photos dropped) it keeps: a page may hold [`MAX_BODY`] of
/// fields the roster keeps (`extra`), so a count alone does not bound its memory.
pub const MAX_ROSTER_BYTES: usize = 32 << 20;

#[derive(Clone)]
pub struct TerminalClient {
    endpoint: Endpoint,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl TerminalClient {
    pub fn new(endpoint: Endpoint) -> TerminalClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(endpoint.timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            // Small devices drop idle keep-alive connections early; do not reuse stale ones.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(2)
            // hyper's adaptive read buffer grows to ~400 KB and is allocated again after every
            // chunk it hands out: a backfill page of photo records (~1.2 MB) cost a dozen such
            // blocks, each a fresh mapping under the fixed mmap threshold
            // (`service::tune_malloc`). Chunks of a fixed 64 KiB stay in the arenas.
            .http1_read_buf_exact_size(READ_BUF)
            .build(connector);
        TerminalClient { endpoint, http }
    }

    /// `host:port` of the HTTP API, for messages.
    pub fn http_addr(&self) -> String {
        host_port(&self.endpoint.host, self.endpoint.http_port)
    }

    pub fn ws_addr(&self) -> String {
        host_port(&self.endpoint.host, self.endpoint.ws_port)
    }

    /// The signed WebSocket URL for the record push. Contains the sign: never log it.
    pub fn record_ws_url(&self) -> String {
        let (_, q) = sign::signed_query(&self.endpoint.password);
        format!("ws://{}/api/record?{q}", self.ws_addr())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        body: Body,
        retry: Retry,
    ) -> Result<Envelope, TerminalError> {
        let attempts = if retry == Retry::Idempotent {
            IDEMPOTENT_ATTEMPTS
        } else {
            1
        };
        for attempt in 1..attempts {
            match self.attempt(&method, path, params, &body).await {
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await
                }
                done => return done,
            }
        }
        self.attempt(&method, path, params, &body).await
    }

    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        params: &[(&str, String)],
        body: &Body,
    ) -> Result<Envelope, TerminalError> {
        // Signed here, inside the attempt, so a retry carries a fresh timestamp.
        let (_, signed) = sign::signed_query(&self.endpoint.password);
        // A temporary: the serializer is not `Send` and must not live across an await.
        let extra = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let sep = if extra.is_empty() { "" } else { "&" };
        let uri = format!("http://{}{path}?{signed}{sep}{extra}", self.http_addr());

        let mut req = Request::builder().method(method.clone()).uri(uri);
        let payload = match body {
            Body::Empty => Bytes::new(),
            Body::Json(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| protocol(path, format!("cannot build request: {e}")))?;

        let timeout = self.endpoint.timeout;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport_error(path, &e))?;
            let status = resp.status();
            let too_large = || TerminalError::TooLarge {
                endpoint: path.to_string(),
                limit: MAX_BODY,
            };
            // A declared length over the limit is refused before a byte of it is read.
            let declared = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_BODY as u64) {
                return Err(too_large());
            }
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        too_large()
                    } else {
                        protocol(path, format!("answer cut off: {e}"))
                    }
                })?
                .to_bytes();
            Ok::<_, TerminalError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TerminalError::Timeout {
                endpoint: path.to_string(),
                after: timeout,
            })??;

        let env = match Envelope::parse(&bytes) {
            Ok(env) => env,
            Err(_) if !status.is_success() => {
                return Err(TerminalError::HttpStatus {
                    endpoint: path.to_string(),
                    status: status.as_u16(),
                })
            }
            Err(reason) => return Err(protocol(path, reason)),
        };
        if env.code != 200 {
            return Err(TerminalError::Api {
                endpoint: path.to_string(),
                code: ApiCode::from_code(env.code),
                desc: env.desc.clone(),
            });
        }
        Ok(env)
    }

    fn transport_error(&self, path: &str, e: &hyper_util::client::legacy::Error) -> TerminalError {
        // The chain's innermost cause is the useful part ("Connection refused (os error 111)").
        // hyper's own Display of the outer error never includes the URI, and neither does this.
        let reason = std::iter::successors(Some(e as &dyn std::error::Error), |s| s.source())
            .last()
            .map(ToString::to_string)
            .unwrap_or_default();
        if e.is_connect() {
            TerminalError::Unreachable {
                endpoint: path.to_string(),
                addr: self.http_addr(),
                reason,
            }
        } else {
            protocol(path, reason)
        }
    }

    /// A call whose answer says nothing beyond success.
    async fn act(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        body: Body,
    ) -> Result<(), TerminalError> {
        self.call(method, path, params, body, Retry::Never).await?;
        Ok(())
    }

    // ---- device -----------------------------------------------------------------------------

    /// Opens the door. Never retried: a door that opens late is worse than one that does not.
    pub async fn open(&self, remark: Option<&str>) -> Result<(), TerminalError> {
        let params: Vec<(&str, String)> = remark
            .map(|r| ("remark", r.to_string()))
            .into_iter()
            .collect();
        self.act(Method::POST, "/api/device/open", &params, Body::Empty)
            .await
    }

    /// Sets the terminal's clock to this machine's (the signed timestamp is the time to set).
    pub async fn sync_time(&self) -> Result<(), TerminalError> {
        self.act(Method::POST, "/api/device/syncTime", &[], Body::Empty)
            .await
    }

    pub async fn reboot(&self) -> Result<(), TerminalError> {
        self.act(Method::POST, "/api/device/reboot", &[], Body::Empty)
            .await
    }

    /// A vendor JSON command; returns the `json` member of the answer (or `null`).
    pub async fn json_cmd(&self, command: &Value) -> Result<Value, TerminalError> {
        let env = self
            .call(
                Method::POST,
                "/api/device/jsonCmd",
                &[],
                Body::Json(command.clone()),
                Retry::Never,
            )
            .await?;
        Ok(env.body.get("json").cloned().unwrap_or(Value::Null))
    }

    pub async fn information(&self) -> Result<DeviceInfo, TerminalError> {
        let path = "/api/device/information";
        let env = self
            .call(Method::POST, path, &[], Body::Empty, Retry::Idempotent)
            .await?;
        serde_json::from_value(data(path, env)?).map_err(|e| protocol(path, e))
    }

    async fn get_object(&self, path: &str) -> Result<ConfigObject, TerminalError> {
        let env = self
            .call(Method::POST, path, &[], Body::Empty, Retry::Idempotent)
            .await?;
        match data(path, env)? {
            Value::Object(m) => Ok(m),
            _ => Err(protocol(path, "`data` is not an object")),
        }
    }

    async fn set_object(&self, path: &str, object: &ConfigObject) -> Result<(), TerminalError> {
        let body = Body::Json(Value::Object(object.clone()));
        self.act(Method::POST, path, &[], body).await
    }

    pub async fn network(&self) -> Result<ConfigObject, TerminalError> {
        self.get_object("/api/device/network").await
    }

    pub async fn set_network(&self, object: &ConfigObject) -> Result<(), TerminalError> {
        self.set_object("/api/device/networkcfg", object).await
    }

    pub async fn smart_face(&self) -> Result<ConfigObject, TerminalError> {
        self.get_object("/api/device/smartface").await
    }

    pub async fn set_smart_face(&self, object: &ConfigObject) -> Result<(), TerminalError> {
        self.set_object("/api/device/smartfacecfg", object).await
    }

    pub async fn peripheral(&self) -> Result<ConfigObject, TerminalError> {
        self.get_object("/api/device/perpara").await
    }

    pub async fn set_peripheral(&self, object: &ConfigObject) -> Result<(), TerminalError> {
        self.set_object("/api/device/perparacfg", object).await
    }

    // ---- users ------------------------------------------------------------------------------

    pub async fn add_user(&self, user: &User) -> Result<User, TerminalError> {
        self.write_user("/api/user", user).await
    }

    pub async fn update_user(&self, user: &User) -> Result<User, TerminalError> {
        let path = format!("/api/user/update/{}", path_segment(&user.user_id));
        self.write_user(&path, user).await
    }

    async fn write_user(&self, path: &str, user: &User) -> Result<User, TerminalError> {
        let body = serde_json::to_value(user).map_err(|e| protocol(path, e))?;
        let env = self
            .call(Method::POST, path, &[], Body::Json(body), Retry::Never)
            .await?;
        // Some firmware answers without `data`; the user we sent is then what was stored.
        match env.into_data() {
            Some(d @ Value::Object(_)) => serde_json::from_value(d).map_err(|e| protocol(path, e)),
            _ => Ok(user.clone()),
        }
    }

    /// Deletes one user; `"all"` clears every user (the document's convention).
    pub async fn delete_user(&self, user_id: &str) -> Result<(), TerminalError> {
        let path = format!("/api/user/delete/{}", path_segment(user_id));
        let params = [("id", user_id.to_string())];
        self.act(Method::GET, &path, &params, Body::Empty).await
    }

    pub async fn list_users(&self, q: &UserQuery) -> Result<Page<User>, TerminalError> {
        let path = "/api/user/list";
        let mut params = vec![
            ("page", q.page.max(1).to_string()),
            ("size", q.size.clamp(1, 10).to_string()),
        ];
        if let Some(t) = q.person_type {
            params.push(("type", t.to_string()));
        }
        if let Some(id) = &q.user_id {
            params.push(("userId", id.clone()));
        }
        if let Some(n) = &q.name {
            params.push(("name", n.clone()));
        }
        let env = self
            .call(Method::GET, path, &params, Body::Empty, Retry::Idempotent)
            .await?;
        page(path, env)?.try_map(|items| {
            items
                .into_iter()
                .map(|item| serde_json::from_value(item).map_err(|e| protocol(path, e)))
                .collect()
        })
    }

    /// Every user, page after page, without their photos: a registered photo is ~43 KB, and a
    /// roster of a thousand with them would take a Pi's memory (the visitors sensor reads it
    /// every `people.refresh`). The pages are the terminal's word, so the roster is read up to
    /// [`MAX_USERS`] and an error past it, never without end.
    pub async fn all_users(&self, person_type: Option<i64>) -> Result<Vec<User>, TerminalError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut q = UserQuery {
            person_type,
            page: 1,
            size: 10,
            ..UserQuery::default()
        };
        loop {
            let page = self.list_users(&q).await?;
            let n = page.items.len();
            for user in page.items {
                let user = User {
                    photo: None,
                    ..user
                };
                bytes += serde_json::to_vec(&user).map_or(0, |v| v.len());
                out.push(user);
            }
            let over = if out.len() > MAX_USERS {
                Some(format!("more than {MAX_USERS} users"))
            } else if bytes > MAX_ROSTER_BYTES {
                let limit = crate::config::ByteSize(MAX_ROSTER_BYTES as u64);
                Some(format!("users of more than {limit}"))
            } else {
                None
            };
            if let Some(over) = over {
                let reason = format!("{over}: the roster is read whole only up to that");
                return Err(protocol("/api/user/list", reason));
            }
            if n == 0 || q.page >= page.total_pages {
                return Ok(out);
            }
            q.page += 1;
        }
    }

    // ---- records ----------------------------------------------------------------------------

    /// One page of recognition records (newest first), as the terminal sent them.
    ///
    /// A page whose answer is over [`MAX_BODY`] (a record with a huge photo among them) is
    /// fetched again one record at a time, so one such record costs only itself: it is skipped
    /// with an error in the log, and the page is the others. The caller's paging is unchanged.
    pub async fn records(
        &self,
        q: &RecordQuery,
    ) -> Result<Page<Map<String, Value>>, TerminalError> {
        let size = q.size.clamp(1, MAX_RECORD_PAGE);
        let too_large = match self.records_page(q).await {
            Err(e @ TerminalError::TooLarge { .. }) if size > 1 => e,
            other => return other,
        };
        let page = q.page.max(1);
        let first = (page - 1).saturating_mul(size);
        let mut items = Vec::new();
        let mut total = 0;
        let mut answered = false;
        for k in 1..=size {
            let n = first.saturating_add(k);
            let one = RecordQuery {
                page: n,
                size: 1,
                ..q.clone()
            };
            match self.records_page(&one).await {
                Ok(p) => {
                    answered = true;
                    total = p.total;
                    if p.items.is_empty() {
                        break;
                    }
                    items.extend(p.items);
                }
                Err(e @ TerminalError::TooLarge { .. }) => {
                    tracing::error!(
                        position = n,
                        "/api/record: a record is too large to fetch, skipped: {e}"
                    );
                }
                Err(e) => return Err(e),
            }
            if total > 0 && n >= total {
                break;
            }
        }
        // Not one record fit: that is no page of records, but a terminal answering too much.
        if !answered {
            return Err(too_large);
        }
        Ok(Page {
            total,
            page,
            page_size: size,
            total_pages: total.div_ceil(size),
            items,
        })
    }

    async fn records_page(
        &self,
        q: &RecordQuery,
    ) -> Result<Page<Map<String, Value>>, TerminalError> {
        let path = "/api/record";
        let mut params = vec![
            ("type", q.person_type.to_string()),
            ("startTime", q.start.to_string()),
            ("endTime", q.end.to_string()),
            ("page", q.page.max(1).to_string()),
            ("size", q.size.clamp(1, MAX_RECORD_PAGE).to_string()),
        ];
        if let Some(id) = &q.user_id {
            params.push(("userId", id.clone()));
        }
        if let Some(n) = &q.username {
            params.push(("username", n.clone()));
        }
        let env = match self
            .call(Method::GET, path, &params, Body::Empty, Retry::Idempotent)
            .await
        {
            Ok(env) => env,
            // "Search List Null" is how some firmware says "no records in that range".
            Err(TerminalError::Api {
                code: ApiCode::SearchListNull,
                ..
            }) => return Ok(Page::default()),
            Err(e) => return Err(e),
        };
        page(path, env)?.try_map(|items| {
            Ok(items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .collect())
        })
    }
}

/// The answer's `data`, taken out of it (pages are large: not copied).
fn data(path: &str, env: Envelope) -> Result<Value, TerminalError> {
    env.into_data()
        .ok_or_else(|| protocol(path, "answer has no `data`"))
}

/// The answer's `data` as a page of JSON items.
fn page(path: &str, env: Envelope) -> Result<Page<Value>, TerminalError> {
    Page::from_data(data(path, env)?).map_err(|reason| protocol(path, reason))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn path_segment(s: &str) -> String {
    // User ids are short alphanumerics in practice; escape anything else rather than break the path.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_bracketed_in_urls() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("10.0.0.2", 80), "10.0.0.2:80");
    }

    #[test]
    fn user_ids_are_escaped_in_paths() {
        assert_eq!(path_segment("E 1/x"), "E%201%2Fx");
        assert_eq!(path_segment("all"), "all");
    }

    #[test]
    fn errors_name_the_endpoint_but_not_the_signature() {
        let e = TerminalError::Api {
            endpoint: "/api/device/open".into(),
            code: ApiCode::SignatureFailed,
            desc: String::new(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("/api/device/open: terminal refused: 10005"),
            "{text}"
        );
        assert!(!text.contains("sign="));
    }
}
