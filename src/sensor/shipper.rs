//! The shipper: posts sealed spool segments, oldest first, to the server's
//! `POST /v1/sensor/events` and deletes each once acknowledged. Failures
//! back off exponentially (1 s to 60 s); a batch the server refuses as
//! invalid is kept aside as `*.rejected` instead of blocking the queue.
//!
//! Consecutive segments waiting together (a backlog after an outage, or
//! events arriving faster than one post per segment) go in one post of
//! up to 10,000 events: the server commits each post durably before it
//! answers, so a backlog of 500-event segments sent one by one paid a
//! commit per segment. A combined post the server refuses is sent again
//! segment by segment, so only an invalid segment is kept aside.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::spool::{MAX_SEGMENT_BYTES, sealed};
use super::{StartError, Stats};
use crate::service::sensors::MAX_BATCH_EVENTS;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// On shutdown, delivery is tried for this long; the rest stays spooled.
const FINAL_PASS: Duration = Duration::from_secs(5);

/// The HTTPS client, trusting `ca_pem` in addition to the system roots.
pub fn client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, StartError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("sikker-sensor/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| StartError::Other(format!("--ca-file is not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(StartError::Other("--ca-file holds no certificate".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| StartError::Other(format!("cannot build the HTTPS client: {e}")))
}

enum Outcome {
    Done,
    Retry,
}

/// What the server made of a post.
enum Posted {
    Accepted(String),
    /// Refused as invalid or too large (400 or 413), with the answer.
    Refused(u16, String),
    Retry,
}

/// A sealed segment read for sending.
struct Segment {
    path: PathBuf,
    body: Vec<u8>,
    events: u64,
}

impl Segment {
    fn size(&self) -> u64 {
        self.body.len() as u64
    }
}

/// A post holds at most the server's batch of events, and at most one
/// segment's worth of bytes (half the server's body limit).
const POST_EVENTS: u64 = MAX_BATCH_EVENTS as u64;
const POST_BYTES: u64 = MAX_SEGMENT_BYTES;

pub struct Shipper {
    pub client: reqwest::Client,
    pub url: String,
    pub token: String,
    pub dir: std::path::PathBuf,
    pub stats: Arc<Stats>,
    pub used: Arc<AtomicU64>,
}

impl Shipper {
    pub async fn run(self, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                let _ = tokio::time::timeout(FINAL_PASS, self.pass()).await;
                return;
            }
            if self.pass().await {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    () = notify.notified() => {}
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Ships every sealed segment; false when one must be retried later.
    async fn pass(&self) -> bool {
        let files = match sealed(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the spool");
                return false;
            }
        };
        let mut files = files.into_iter();
        // A segment read but left for the next post.
        let mut next: Option<Segment> = None;
        // A segment that cannot be read ends the pass (after the post
        // gathered before it), to be tried again later.
        let mut unreadable = false;
        loop {
            let mut post: Vec<Segment> = Vec::new();
            let (mut events, mut bytes) = (0, 0);
            loop {
                let seg = if let Some(seg) = next.take() {
                    seg
                } else {
                    let Some(path) = files.next() else { break };
                    let Some(seg) = self.read(path).await else {
                        unreadable = true;
                        break;
                    };
                    seg
                };
                if seg.events == 0 {
                    self.remove(&seg.path, seg.size()).await;
                    continue;
                }
                if !post.is_empty()
                    && (events + seg.events > POST_EVENTS || bytes + seg.size() > POST_BYTES)
                {
                    next = Some(seg);
                    break;
                }
                events += seg.events;
                bytes += seg.size();
                post.push(seg);
            }
            if !post.is_empty() && matches!(self.ship(post).await, Outcome::Retry) || unreadable {
                Stats::inc(&self.stats.ship_failures);
                return false;
            }
            if next.is_none() && files.len() == 0 {
                return true;
            }
        }
    }

    /// The segment at `path`; `None` when it cannot be read (left for
    /// the next pass).
    async fn read(&self, path: PathBuf) -> Option<Segment> {
        let body = tokio::fs::read(&path).await.ok()?;
        #[allow(clippy::naive_bytecount)] // once per segment; not worth a dependency
        let events = body.iter().filter(|&&b| b == b'\n').count() as u64;
        Some(Segment { path, body, events })
    }

    /// Posts `segments` together; a refused combined post is sent again
    /// segment by segment.
    async fn ship(&self, mut segments: Vec<Segment>) -> Outcome {
        if segments.len() == 1
            && let Some(seg) = segments.pop()
        {
            return self.ship_one(seg).await;
        }
        let mut body = Vec::with_capacity(segments.iter().map(|s| s.body.len() + 1).sum());
        for seg in &segments {
            body.extend_from_slice(&seg.body);
            if !body.ends_with(b"\n") {
                body.push(b'\n');
            }
        }
        match self.post(body).await {
            Posted::Accepted(text) => {
                let events: u64 = segments.iter().map(|s| s.events).sum();
                tracing::debug!(events, segments = segments.len(), answer = %text, "batch delivered");
                self.delivered(events);
                for seg in &segments {
                    self.remove(&seg.path, seg.size()).await;
                }
                Outcome::Done
            }
            Posted::Refused(status, text) => {
                tracing::warn!(status, answer = %text, segments = segments.len(), "server refused a combined batch; sending its segments one by one");
                for seg in segments {
                    if matches!(self.ship_one(seg).await, Outcome::Retry) {
                        return Outcome::Retry;
                    }
                }
                Outcome::Done
            }
            Posted::Retry => Outcome::Retry,
        }
    }

    async fn ship_one(&self, seg: Segment) -> Outcome {
        let (events, size) = (seg.events, seg.size());
        match self.post(seg.body).await {
            Posted::Accepted(text) => {
                tracing::debug!(events, answer = %text, "batch delivered");
                self.delivered(events);
                self.remove(&seg.path, size).await;
                Outcome::Done
            }
            Posted::Refused(status, text) => {
                tracing::error!(status, answer = %text, file = %seg.path.display(), "server refused a batch; kept aside as .rejected");
                Stats::inc(&self.stats.batches_rejected);
                let _ = tokio::fs::rename(&seg.path, seg.path.with_extension("rejected")).await;
                self.used.fetch_sub(
                    size.min(self.used.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                Outcome::Done
            }
            Posted::Retry => Outcome::Retry,
        }
    }

    fn delivered(&self, events: u64) {
        self.stats
            .events_shipped
            .fetch_add(events, Ordering::Relaxed);
        Stats::inc(&self.stats.batches_shipped);
    }

    async fn post(&self, body: Vec<u8>) -> Posted {
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the server; events stay spooled");
                return Posted::Retry;
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200 => Posted::Accepted(text),
            400 | 413 => Posted::Refused(status, text),
            401 | 403 => {
                tracing::error!(status, answer = %text, "the server does not accept this sensor token (--token / SIKKER_SENSOR_TOKEN)");
                Posted::Retry
            }
            _ => {
                tracing::warn!(status, "server busy or failing; events stay spooled");
                Posted::Retry
            }
        }
    }

    async fn remove(&self, path: &Path, size: u64) {
        if tokio::fs::remove_file(path).await.is_ok() {
            self.used.fetch_sub(
                size.min(self.used.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
    }
}
