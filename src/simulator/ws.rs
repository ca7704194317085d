//! The record push: `ws://HOST:PORT/api/record?timestamp=..&sign=..`.
//!
//! After the handshake the unit answers `20000 Connected!` (or `20002 Permission Denied!` and
//! closes), then pushes each recognition as a cJSON-printed text frame. In the "silent" fault the
//! link stays open but is neither written nor read, so pings go unanswered: a half-open link.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{cjson, http::query_map, Shared};

const SEND_TIMEOUT: Duration = Duration::from_secs(5);

fn answer(code: i64, message: &str, desc: &str) -> Message {
    Message::text(cjson::print(
        &json!({"code": code, "message": message, "desc": desc}),
    ))
}

/// Sends within [`SEND_TIMEOUT`]: false when the link failed or is stuck.
async fn send(ws: &mut WebSocketStream<TcpStream>, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Keeps the client count right however the link ends.
struct ClientGuard(Arc<Shared>);

impl ClientGuard {
    fn new(shared: Arc<Shared>) -> ClientGuard {
        shared.ws_clients.send_modify(|n| *n += 1);
        ClientGuard(shared)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.ws_clients.send_modify(|n| *n = n.saturating_sub(1));
    }
}

pub async fn serve_link(shared: Arc<Shared>, stream: TcpStream, down: CancellationToken) {
    let mut silent = shared.silent.subscribe();
    if *silent.borrow_and_update() {
        // Accepted by the kernel, never answered.
        tokio::select! {
            _ = down.cancelled() => {}
            _ = silent.wait_for(|s| !*s) => {}
        }
        return;
    }
    let (uri_tx, uri_rx) = oneshot::channel();
    // The callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| {
        let _ = uri_tx.send(req.uri().query().map(str::to_string));
        Ok(resp)
    };
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let mut ws = tokio::select! {
        _ = down.cancelled() => return,
        r = tokio::time::timeout(Duration::from_secs(10), handshake) => match r {
            Ok(Ok(ws)) => ws,
            _ => return,
        },
    };
    let query = query_map(uri_rx.await.ok().flatten().as_deref());
    if shared.state().check_auth(&query, true).is_err() {
        send(
            &mut ws,
            answer(20002, "Permission Denied!", "app key not exist"),
        )
        .await;
        let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(None)).await;
        return;
    }
    let mut pushes = shared.pushes.subscribe();
    let mut close = shared.close_links.subscribe();
    close.borrow_and_update();
    if !send(&mut ws, answer(20000, "Connected!", "Connected!")).await {
        return;
    }
    let _guard = ClientGuard::new(shared.clone());

    loop {
        let is_silent = *silent.borrow_and_update();
        tokio::select! {
            // A reboot: the link vanishes without a close frame.
            _ = down.cancelled() => return,
            _ = close.changed() => {
                let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(None)).await;
                return;
            }
            _ = silent.changed() => continue,
            frame = pushes.recv() => match frame {
                // Silence read again now, not at the top of the loop: when the link went silent
                // just before this push, both branches were ready and either may have won.
                Ok(msg) if !*silent.borrow() => if !send(&mut ws, msg).await {
                    return;
                },
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = ws.next(), if !is_silent => match incoming {
                // Pings are answered by tungstenite while we read; nothing else is expected.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
