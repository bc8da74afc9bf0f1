//! Reads fail2ban's own database (`/var/lib/fail2ban/fail2ban.sqlite3`):
//! the ban history in its `bans` table, a chunk at a time, read-only, so a
//! running fail2ban is not disturbed.

use std::path::Path;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// The first bytes of every SQLite 3 database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Bans read per query; memory stays bounded whatever the history's size.
const CHUNK: i64 = 10_000;

/// Whether `file` is an SQLite database (by its header).
pub fn is_sqlite(file: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0_u8; 16];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == MAGIC)
}

/// One ban: its row id, jail, address and time (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub row: i64,
    pub jail: String,
    pub ip: String,
    pub at_ms: i64,
}

pub struct BanReader {
    conn: Connection,
    after: i64,
}

impl BanReader {
    pub fn open(file: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {} as an SQLite database", file.display()))?;
        // fail2ban may be writing; wait for its lock rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let has_bans: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'bans'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if !has_bans {
            bail!(
                "{} is an SQLite database but not fail2ban's (it has no `bans` table)",
                file.display()
            );
        }
        Ok(Self {
            conn,
            after: i64::MIN,
        })
    }

    /// The next bans in the order fail2ban wrote them; empty at the end.
    /// A row whose columns have unexpected types comes back as `Err` with
    /// its row id, so it can be reported and the rest imported.
    pub fn next_chunk(&mut self) -> anyhow::Result<Vec<Result<Ban, (i64, String)>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, jail, ip, timeofban FROM bans WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let mut rows = stmt.query((self.after, CHUNK))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let row: i64 = r.get(0)?;
            self.after = row;
            let ban = (|| -> rusqlite::Result<Ban> {
                let secs: i64 = r.get(3)?;
                Ok(Ban {
                    row,
                    jail: r.get(1)?,
                    ip: r.get(2)?,
                    at_ms: secs.saturating_mul(1000),
                })
            })();
            out.push(ban.map_err(|e| (row, format!("unreadable ban: {e}"))));
        }
        Ok(out)
    }
}
