//! The one task that polls rumqttc's event loop.
//!
//! It polls alone (cancelling a poll can lose an ack) and forwards every event to the session.
//! On a failed connection it waits until the session has dropped its ack mapping and stopped
//! submitting, then clears rumqttc's leftovers, so no event of the dead connection is read after
//! the next CONNACK; rumqttc has no reconnect delay of its own, so it backs off here.

use rumqttc::{ConnectionError, Event, EventLoop, Outgoing, Packet, StateError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::tls::Setup;
use crate::backoff::Backoff;

pub enum MqttEvent {
    Event(Event),
    /// The connection failed. Reply on `quiet` once nothing more will be submitted until the next
    /// CONNACK.
    Down {
        reason: String,
        /// The broker sent a message larger than we read (a huge retained message on a
        /// subscribed topic does that on every connect).
        oversized: bool,
        quiet: oneshot::Sender<()>,
    },
}

/// Polls rumqttc's event loop until `stop`, with backoff between failed connections (rumqttc has
/// none of its own).
pub async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::Sender<MqttEvent>,
    mut backoff: Backoff,
    setup: Setup,
    stop: CancellationToken,
) {
    loop {
        // `stop` comes only after the publisher has finished; losing a poll then loses nothing.
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            r = eventloop.poll() => r,
        };
        match polled {
            Ok(event) => {
                let done = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff.reset();
                }
                if events.send(MqttEvent::Event(event)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                let (quiet, quieted) = oneshot::channel();
                if events
                    .send(MqttEvent::Down {
                        reason: super::explain(&e, setup),
                        oversized: oversized(&e),
                        quiet,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = quieted.await;
                // Everything of the dead connection goes: we resend from the spool.
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                let wait = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

fn oversized(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}
