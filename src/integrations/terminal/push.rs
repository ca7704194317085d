//! Opening the record push (`ws://HOST:9000/api/record?timestamp=..&sign=..`).
//!
//! The unit answers a good signature with `{"code":20000,...}` and a bad one with
//! `{"code":20002,...}` before it pushes anything. The URL carries the sign, so it is never part
//! of an error or a log line.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::model::{ApiCode, Envelope};
use super::TerminalClient;

pub type PushStream = WebSocketStream<TcpStream>;

/// The transport's hard limit. Frames of at least 256 KB must pass (a real one is ~58 KB); the
/// ingest skips anything above its own, lower limit with a log line, so only a frame beyond this
/// one costs the link.
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("record push: terminal unreachable at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("record push: no answer from {addr} within {}", humantime::format_duration(*.after))]
    Timeout { addr: String, after: Duration },
    #[error("record push: WebSocket handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("record push: terminal refused the link: {code}{}", if .desc.is_empty() { String::new() } else { format!(" [terminal says: {}]", .desc) })]
    Refused { code: ApiCode, desc: String },
    #[error("record push: unexpected first message: {reason}")]
    Protocol { reason: String },
}

impl PushError {
    pub fn is_auth(&self) -> bool {
        matches!(self, PushError::Refused { .. })
    }
}

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

/// Connects, signs, and waits for the terminal's `20000`. Each stage has the same deadline.
pub async fn connect(client: &TerminalClient, deadline: Duration) -> Result<PushStream, PushError> {
    let addr = client.ws_addr();
    let tcp = match tokio::time::timeout(deadline, TcpStream::connect(&addr)).await {
        Err(_) => {
            return Err(PushError::Timeout {
                addr,
                after: deadline,
            })
        }
        Ok(Err(e)) => {
            return Err(PushError::Unreachable {
                addr,
                reason: e.to_string(),
            })
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let url = client.record_ws_url();
    let handshake = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()));
    let mut ws = match tokio::time::timeout(deadline, handshake).await {
        Err(_) => {
            return Err(PushError::Timeout {
                addr,
                after: deadline,
            })
        }
        // tungstenite's errors describe the failure, not the request URL.
        Ok(Err(e)) => {
            return Err(PushError::Handshake {
                addr,
                reason: e.to_string(),
            })
        }
        Ok(Ok((ws, _response))) => ws,
    };
    loop {
        let msg = match tokio::time::timeout(deadline, ws.next()).await {
            Err(_) => {
                return Err(PushError::Timeout {
                    addr,
                    after: deadline,
                })
            }
            Ok(None) => {
                return Err(PushError::Protocol {
                    reason: "link closed before the terminal answered".into(),
                })
            }
            Ok(Some(Err(e))) => {
                return Err(PushError::Protocol {
                    reason: e.to_string(),
                })
            }
            Ok(Some(Ok(m))) => m,
        };
        let text = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => &b[..],
            Message::Close(_) => {
                return Err(PushError::Protocol {
                    reason: "terminal closed the link without answering".into(),
                })
            }
            _ => continue,
        };
        let env = Envelope::parse(text).map_err(|reason| PushError::Protocol { reason })?;
        return match env.code {
            20000 => Ok(ws),
            code => Err(PushError::Refused {
                code: ApiCode::from_code(code),
                desc: env.desc,
            }),
        };
    }
}
