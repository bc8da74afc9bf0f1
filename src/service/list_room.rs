//! Memory for block lists being built and sent. A list holds its entries
//! (48 bytes each) from the index scan until its last byte is sent, which
//! for a remote client may take many seconds; twenty firewalls asking for
//! a 1M-entry list at the same minute would otherwise hold a gigabyte.
//! Each list takes room in a budget (`--blocklist-memory-mib`) before it
//! is built, gives back what the built list does not need, and holds the
//! rest until its body is dropped (sent, or the connection closed). A
//! request that finds no room waits for it; one larger than the whole
//! budget waits until it can have all of it, so it is still served, alone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Result, Services};
use crate::service::blockshape::ShapedEntry;
use crate::service::reputation::Blocklist;

/// The budget when none is configured.
pub const DEFAULT_BYTES: usize = 128 << 20;

/// The room budget, counted in entries.
#[derive(Debug)]
pub struct ListRooms {
    entries: Arc<Semaphore>,
    total: usize,
}

impl ListRooms {
    /// A budget of `bytes` (at least one entry; 0 means the default).
    pub fn new(bytes: usize) -> Self {
        let bytes = if bytes == 0 { DEFAULT_BYTES } else { bytes };
        // Room is taken in `u32` counts.
        let most = usize::try_from(u32::MAX)
            .map_or(Semaphore::MAX_PERMITS, |m| m.min(Semaphore::MAX_PERMITS));
        let total = (bytes / std::mem::size_of::<ShapedEntry>()).clamp(1, most);
        Self {
            entries: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Entries the budget holds.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Entries free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.entries.available_permits()
    }
}

/// Room for one list's entries; given back when dropped.
#[derive(Debug)]
pub struct ListRoom {
    permit: OwnedSemaphorePermit,
}

impl ListRoom {
    /// Gives back the room beyond `entries` (a list shorter than the index
    /// it was scanned from).
    pub fn keep(&mut self, entries: usize) {
        let keep = entries.max(1);
        if self.permit.num_permits() > keep {
            drop(self.permit.split(self.permit.num_permits() - keep));
        }
    }

    /// Entries this room holds.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.permit.num_permits()
    }
}

impl Services {
    /// Room for a list scanned from the whole index (its vector is sized
    /// for every indexed address, and its first share is copied out to be
    /// sent while the rest is sorted), waiting at most `wait` for other
    /// lists to be sent: then 503, with the time to come back.
    pub async fn list_room(&self, wait: Duration) -> Result<ListRoom> {
        let indexed = self.threat.with_index(crate::index::IpIndex::len)?;
        let entries = Blocklist::most_held(indexed).clamp(1, self.list_rooms.total());
        let what = "block lists are being sent";
        let permit = super::room::wait_for(&self.list_rooms.entries, entries, wait, what).await?;
        Ok(ListRoom { permit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_entries_and_is_never_empty() {
        let size = std::mem::size_of::<ShapedEntry>();
        assert_eq!(ListRooms::new(1 << 20).total(), (1 << 20) / size);
        assert_eq!(ListRooms::new(1).total(), 1);
        assert_eq!(ListRooms::new(0).total(), DEFAULT_BYTES / size);
    }

    #[tokio::test]
    async fn kept_room_is_held_until_dropped_and_the_rest_given_back() {
        let rooms = ListRooms::new(100 * std::mem::size_of::<ShapedEntry>());
        let mut room = ListRoom {
            permit: rooms.entries.clone().acquire_many_owned(100).await.unwrap(),
        };
        assert_eq!(rooms.free(), 0);
        room.keep(30);
        assert_eq!((room.entries(), rooms.free()), (30, 70));
        room.keep(0);
        assert_eq!((room.entries(), rooms.free()), (1, 99));
        drop(room);
        assert_eq!(rooms.free(), 100);
    }
}
