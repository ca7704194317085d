//! One byte budget for records on their way from a terminal to the spool.
//!
//! A record read from the WebSocket (or fetched by backfill) takes a [`Ticket`] for its size
//! before it is handed to the spool writer, and gives it back once the writer has stored it. When
//! the budget is used up, the reader waits for a ticket instead of reading the next frame: TCP
//! pushes back on the terminal, which keeps its records, and backfill covers whatever the
//! terminal gave up on meanwhile. Nothing is dropped to stay inside it. Counting by bytes, not
//! by records, is the point: 4,096 queued records were 4 MB without photos and 180 MB with them.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB: a budget of up to 4 TiB fits the semaphore's `u32` acquisitions.
const UNIT: u64 = 1024;

#[derive(Clone, Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// Bytes held against the budget; given back on drop.
#[derive(Debug)]
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Budget {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Budget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The units `bytes` costs: rounded up, and never more than the whole budget, so a record
    /// larger than the budget waits for everything else to drain, then passes alone.
    fn cost(&self, bytes: usize) -> u32 {
        let units = u64::try_from(bytes).unwrap_or(u64::MAX).div_ceil(UNIT);
        u32::try_from(units)
            .unwrap_or(u32::MAX)
            .clamp(1, self.units)
    }

    /// Waits until `bytes` fit. Cancel-safe: dropping the future takes nothing.
    pub async fn take(&self, bytes: usize) -> Ticket {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.cost(bytes))
            .await
            // The semaphore is never closed; a closed one would only mean "no limit".
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"));
        Ticket { _permit: permit }
    }

    /// Takes `bytes` now, or `None` when they do not fit.
    #[cfg(test)]
    pub fn try_take(&self, bytes: usize) -> Option<Ticket> {
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(self.cost(bytes))
            .ok()?;
        Some(Ticket { _permit: permit })
    }

    /// Bytes held now (rounded to KiB).
    #[cfg(test)]
    pub fn in_use(&self) -> u64 {
        let free = u64::try_from(self.permits.available_permits()).unwrap_or(u64::MAX);
        u64::from(self.units).saturating_sub(free) * UNIT
    }

    #[cfg(test)]
    pub fn size(&self) -> u64 {
        u64::from(self.units) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tickets_hold_bytes_until_dropped() {
        let b = Budget::new(100 * 1024);
        let t = b.try_take(60 * 1024).expect("fits");
        assert_eq!(b.in_use(), 60 * 1024);
        assert!(b.try_take(50 * 1024).is_none(), "over the budget");
        drop(t);
        assert_eq!(b.in_use(), 0);
        assert!(b.try_take(50 * 1024).is_some());
    }

    #[test]
    fn a_record_smaller_than_a_unit_still_costs_one() {
        let b = Budget::new(2 * 1024);
        let _a = b.try_take(1).expect("fits");
        let _b = b.try_take(1).expect("fits");
        assert!(b.try_take(1).is_none());
    }

    #[test]
    fn a_record_larger_than_the_budget_takes_all_of_it_rather_than_never_passing() {
        let b = Budget::new(64 * 1024);
        let t = b.try_take(10 << 20).expect("passes alone");
        assert_eq!(b.in_use(), b.size());
        assert!(b.try_take(1).is_none());
        drop(t);
        assert!(b.try_take(usize::MAX).is_some());
    }

    #[test]
    fn an_absurd_budget_is_clamped_not_overflowed() {
        let b = Budget::new(u64::MAX);
        assert_eq!(b.size(), u64::from(u32::MAX) * 1024);
        assert_eq!(Budget::new(0).size(), 1024);
    }

    #[tokio::test]
    async fn a_reader_waits_for_room_and_goes_on_once_the_writer_gives_bytes_back() {
        let b = Budget::new(64 * 1024);
        let held = b.take(64 * 1024).await;
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.take(1024).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room yet");
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken once bytes are given back")
            .expect("task");
    }
}
