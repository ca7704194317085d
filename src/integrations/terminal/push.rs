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
    #[error("record push: terminal refused the link: {code}{}", super::client::desc_suffix(.desc))]
    Refused { code: ApiCode, desc: String },
    #[error("record push: unexpected first message: {reason}")]
    Protocol { reason: String },
}

impl PushError {
    pub fn is_auth(&self) -> bool {
        matches!(self, PushError::Refused { .. })
    }
}

/// Connects, signs, and waits for the terminal's `20000`. Each stage has the same deadline.
pub async fn connect(client: &TerminalClient, deadline: Duration) -> Result<PushStream, PushError> {
    let addr = client.ws_addr();
    let timeout = |_| PushError::Timeout {
        addr: addr.clone(),
        after: deadline,
    };
    let protocol = |reason: String| PushError::Protocol { reason };
    let tcp = tokio::time::timeout(deadline, TcpStream::connect(&addr))
        .await
        .map_err(timeout)?
        .map_err(|e| PushError::Unreachable {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let handshake =
        tokio_tungstenite::client_async_with_config(client.record_ws_url(), tcp, Some(config));
    let (mut ws, _response) = tokio::time::timeout(deadline, handshake)
        .await
        .map_err(timeout)?
        // tungstenite's errors describe the failure, not the request URL.
        .map_err(|e| PushError::Handshake {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .map_err(timeout)?
            .ok_or_else(|| protocol("link closed before the terminal answered".into()))?
            .map_err(|e| protocol(e.to_string()))?;
        let text = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => &b[..],
            Message::Close(_) => {
                return Err(protocol(
                    "terminal closed the link without answering".into(),
                ))
            }
            _ => continue,
        };
        let env = Envelope::parse(text).map_err(protocol)?;
        return match env.code {
            20000 => Ok(ws),
            code => Err(PushError::Refused {
                code: ApiCode::from_code(code),
                desc: env.desc,
            }),
        };
    }
}
