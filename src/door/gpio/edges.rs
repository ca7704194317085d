//! Edges from a pin's interrupt handler to its button task: bounded, and lossless where it
//! matters.
//!
//! The handler runs on rppal's thread and cannot wait, so backpressure is not possible there. A
//! noisy or chattering line can report edges far faster than any press; an unbounded queue would
//! grow with it. The queue holds [`CAPACITY`] edges; once it is full, later edges are not queued
//! but coalesced into one slot holding the newest, delivered after the queue. The button task
//! may miss bounces it would have debounced away anyway, but never ends up believing a level the
//! line has left.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, Notify};

use super::Edge;

/// Edges queued per pin before coalescing starts; a real press is two.
pub const CAPACITY: usize = 64;

struct Shared {
    /// The newest edge that did not fit. While it is set, every edge goes here, so it is always
    /// newer than everything queued.
    overflow: Mutex<Option<Edge>>,
    wake: Notify,
}

/// The interrupt handler's end.
#[derive(Clone)]
pub struct EdgeSender {
    tx: mpsc::Sender<Edge>,
    shared: Arc<Shared>,
}

/// The button task's end.
pub struct EdgeReceiver {
    rx: mpsc::Receiver<Edge>,
    shared: Arc<Shared>,
}

pub fn channel(capacity: usize) -> (EdgeSender, EdgeReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared {
        overflow: Mutex::new(None),
        wake: Notify::new(),
    });
    (
        EdgeSender {
            tx,
            shared: shared.clone(),
        },
        EdgeReceiver { rx, shared },
    )
}

impl Shared {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Edge>> {
        // Nothing panics while holding it; a poisoned slot is still a valid edge.
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EdgeSender {
    /// Whether the button task is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Never blocks.
    pub fn send(&self, edge: Edge) {
        let mut slot = self.shared.slot();
        if slot.is_some() {
            *slot = Some(edge);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(edge)) = self.tx.try_send(edge) {
            *slot = Some(edge);
            self.shared.wake.notify_one();
        }
    }
}

impl EdgeReceiver {
    /// The next edge, in order; `None` once the sender is gone and everything was delivered.
    pub async fn recv(&mut self) -> Option<Edge> {
        loop {
            match self.rx.try_recv() {
                Ok(edge) => return Some(edge),
                Err(mpsc::error::TryRecvError::Disconnected) => return self.shared.slot().take(),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            // The queue is drained: the coalesced edge is the newest of all.
            if let Some(edge) = self.shared.slot().take() {
                return Some(edge);
            }
            tokio::select! {
                edge = self.rx.recv() => match edge {
                    Some(edge) => return Some(edge),
                    None => return self.shared.slot().take(),
                },
                _ = self.shared.wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn edges(n: usize) -> Vec<Edge> {
        let t0 = Instant::now();
        (0..n)
            .map(|k| (k % 2 == 1, t0 + Duration::from_micros(k as u64)))
            .collect()
    }

    async fn drain(mut rx: EdgeReceiver) -> Vec<Edge> {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn edges_that_fit_arrive_all_and_in_order() {
        let (tx, rx) = channel(8);
        let sent = edges(8);
        for e in &sent {
            tx.send(*e);
        }
        drop(tx);
        assert_eq!(drain(rx).await, sent);
    }

    #[tokio::test]
    async fn a_flood_is_bounded_and_its_last_edge_is_delivered_last() {
        let (tx, rx) = channel(8);
        let sent = edges(100_001);
        for e in &sent {
            tx.send(*e);
        }
        drop(tx);
        let got = drain(rx).await;
        assert_eq!(got.len(), 9, "the queue, then one coalesced edge");
        assert_eq!(got[..8], sent[..8]);
        assert_eq!(got.last(), sent.last(), "the line's final level");
    }

    #[tokio::test]
    async fn after_a_flood_edges_queue_again_in_order() {
        let (tx, mut rx) = channel(2);
        let sent = edges(6);
        for e in &sent[..5] {
            tx.send(*e);
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.expect("edge"));
        }
        tx.send(sent[5]);
        drop(tx);
        got.extend(drain(rx).await);
        assert_eq!(got, vec![sent[0], sent[1], sent[4], sent[5]]);
    }

    #[tokio::test]
    async fn an_overflow_wakes_a_waiting_receiver() {
        let (tx, mut rx) = channel(1);
        let sent = edges(3);
        let waiter = tokio::spawn(async move {
            let a = rx.recv().await;
            let b = rx.recv().await;
            (a, b)
        });
        // The receiver is waiting on an empty queue before the edges come.
        tokio::task::yield_now().await;
        for e in &sent {
            tx.send(*e);
        }
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(a, Some(sent[0]));
        assert_eq!(b, Some(sent[2]), "the newest edge, not a bounce in between");
        drop(tx);
    }
}
