//! The on-disk spool: events are appended as NDJSON to `current.open`,
//! which is fsynced and renamed to a numbered sealed segment once it holds a
//! batch (or the flush interval passed). The shipper deletes a segment only
//! after the server acknowledged it, so an outage loses nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc, watch};

use super::{StartError, Stats, io_err};
use crate::service::sensors::WireEvent;

const OPEN: &str = "current.open";
const SUFFIX: &str = ".ndjson";
/// A segment is sealed before it could exceed the server's body limit.
pub(super) const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

pub fn ensure_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("cannot create spool dir {}", dir.display())))
}

/// Sealed segments, oldest first.
pub fn sealed(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(SUFFIX) && n.len() == 16 + SUFFIX.len())
        })
        .collect();
    out.sort();
    Ok(out)
}

fn seq_of(p: &Path) -> u64 {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(SUFFIX))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct Segment {
    file: tokio::fs::File,
    events: usize,
    bytes: u64,
    opened: Instant,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: Arc<AtomicU64>,
    notify: Arc<Notify>,
    next: u64,
    current: Option<Segment>,
}

impl Spool {
    /// Opens the spool, sealing a segment left open by a crash (keeping its
    /// complete lines only).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, StartError> {
        let what = format!("cannot use spool dir {}", dir.display());
        let segments = sealed(dir).map_err(io_err(what.clone()))?;
        let mut next = segments.last().map_or(1, |p| seq_of(p) + 1);
        let open = dir.join(OPEN);
        if let Ok(data) = std::fs::read(&open) {
            let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete > 0 {
                let target = dir.join(format!("{next:016}{SUFFIX}"));
                std::fs::write(&target, &data[..complete]).map_err(io_err(what.clone()))?;
                next += 1;
            }
            std::fs::remove_file(&open).map_err(io_err(what.clone()))?;
        }
        let used = sealed(dir)
            .map_err(io_err(what))?
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            used: Arc::new(AtomicU64::new(used)),
            notify: Arc::new(Notify::new()),
            next,
            current: None,
        })
    }

    pub fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Bytes on disk; the shipper subtracts what it deletes.
    pub fn used(&self) -> Arc<AtomicU64> {
        self.used.clone()
    }

    /// Writes events until `stop`, then drains the queue and seals.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<WireEvent>,
        batch: usize,
        interval: Duration,
        stats: Arc<Stats>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(20)));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.append(&ev, &stats).await,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.current.as_ref().is_some_and(|c| c.opened.elapsed() >= interval) {
                        self.seal().await;
                    }
                }
                _ = stop.changed() => {
                    while let Ok(ev) = rx.try_recv() {
                        self.append(&ev, &stats).await;
                    }
                    break;
                }
            }
            if self
                .current
                .as_ref()
                .is_some_and(|c| c.events >= batch || c.bytes >= MAX_SEGMENT_BYTES)
            {
                self.seal().await;
            }
        }
        self.seal().await;
    }

    async fn append(&mut self, ev: &WireEvent, stats: &Stats) {
        let Ok(mut line) = serde_json::to_vec(ev) else {
            return;
        };
        line.push(b'\n');
        let len = line.len() as u64;
        if self.used.load(Ordering::Relaxed) + len > self.max_bytes {
            if Stats::get(&stats.events_spool_full).is_multiple_of(1000) {
                tracing::warn!("spool full: events are being dropped until the server catches up");
            }
            Stats::inc(&stats.events_spool_full);
            return;
        }
        if self.current.is_none() {
            let opened = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(OPEN))
                .await;
            match opened {
                Ok(file) => {
                    self.current = Some(Segment {
                        file,
                        events: 0,
                        bytes: 0,
                        opened: Instant::now(),
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the spool segment; event dropped");
                    Stats::inc(&stats.events_spool_full);
                    return;
                }
            }
        }
        let Some(seg) = self.current.as_mut() else {
            return;
        };
        if let Err(e) = seg.file.write_all(&line).await {
            tracing::error!(error = %e, "cannot write to the spool; event dropped");
            Stats::inc(&stats.events_spool_full);
            return;
        }
        seg.events += 1;
        seg.bytes += len;
        self.used.fetch_add(len, Ordering::Relaxed);
    }

    async fn seal(&mut self) {
        let Some(mut seg) = self.current.take() else {
            return;
        };
        let synced = async {
            seg.file.flush().await?;
            seg.file.sync_all().await
        }
        .await;
        drop(seg);
        if let Err(e) = synced {
            tracing::error!(error = %e, "cannot sync the spool segment");
        }
        let target = self.dir.join(format!("{:016}{SUFFIX}", self.next));
        match tokio::fs::rename(self.dir.join(OPEN), &target).await {
            Ok(()) => {
                self.next += 1;
                self.notify.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "cannot seal the spool segment"),
        }
    }
}
