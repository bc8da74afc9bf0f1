//! Memory for sensor batches being received and ingested. A batch's body
//! (up to 16 MiB) is held from its first byte until its group commits, and
//! its parsed events beside it; after a server outage every sensor sends
//! its backlog at once, several posts each. Each batch takes room for its
//! declared length (the route's whole limit when none is declared) in a
//! budget (`--sensor-batch-memory-mib`) before its body is read; a batch
//! that finds no room waits a moment, its bytes left in the connection,
//! and gets 503 with the time to come back if none frees in time. A batch
//! larger than the whole budget waits until it can have all of it, so it
//! is still served, alone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Result, Services};

/// Bytes of sensor batch bodies in flight at once when none is
/// configured (`--sensor-batch-memory-mib`): a dozen posts of 10,000
/// typical events, two of the largest allowed.
pub const DEFAULT_BYTES: usize = 32 << 20;

/// Room is counted in KiB.
const UNIT: usize = 1024;

/// The budget of room.
#[derive(Debug)]
pub struct BatchRooms {
    units: Arc<Semaphore>,
    total: usize,
}

impl BatchRooms {
    /// A budget of `bytes` (0 means the default).
    pub fn new(bytes: usize) -> Self {
        let bytes = if bytes == 0 { DEFAULT_BYTES } else { bytes };
        let total = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(total)),
            total,
        }
    }
}

/// Room for one batch; given back when dropped.
#[derive(Debug)]
pub struct BatchRoom {
    _permit: OwnedSemaphorePermit,
}

impl Services {
    /// Room for a sensor batch of `bytes`, waiting at most `wait` for
    /// other batches to be committed: then 503, with the time to come
    /// back.
    pub async fn batch_room(&self, bytes: usize, wait: Duration) -> Result<BatchRoom> {
        rooms_for(&self.batch_rooms, bytes, wait).await
    }
}

async fn rooms_for(rooms: &BatchRooms, bytes: usize, wait: Duration) -> Result<BatchRoom> {
    let units = bytes.div_ceil(UNIT).clamp(1, rooms.total);
    let what = "sensor batches are being received";
    let permit = super::room::wait_for(&rooms.units, units, wait, what).await?;
    Ok(BatchRoom { _permit: permit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Error;

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn batches_wait_for_room_and_get_it_back_when_done() {
        let rooms = BatchRooms::new(10 * UNIT);
        let a = rooms_for(&rooms, 6 * UNIT, WAIT).await.unwrap();
        // 4 KiB left: a 5 KiB batch finds no room in time.
        let refused = rooms_for(&rooms, 5 * UNIT, WAIT).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Unavailable {
                    retry_after_secs: Some(1),
                    ..
                }
            ),
            "{refused:?}"
        );
        let b = rooms_for(&rooms, 4 * UNIT, WAIT).await.unwrap();
        drop(a);
        // A batch larger than the budget takes all of it, once free.
        assert!(rooms_for(&rooms, 64 * UNIT, WAIT).await.is_err());
        drop(b);
        let whole = rooms_for(&rooms, 64 * UNIT, WAIT).await.unwrap();
        assert!(rooms_for(&rooms, 1, WAIT).await.is_err());
        drop(whole);
        assert!(rooms_for(&rooms, 1, WAIT).await.is_ok());
    }
}
