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
//!
//! Up to four posts are in flight at once: the next are sent while the
//! server commits the one before, so the server's group commit can take
//! several into one transaction. Each post's segments are deleted when
//! that post is acknowledged, so they may be acknowledged out of order; a
//! post that fails stays spooled for the next pass (the server
//! de-duplicates whatever was sent twice).
//!
//! A link too slow for that (a post timed out, or the server answered 408
//! because the body came too slowly) is served one segment per post and
//! one post at a time, as before coalescing, until a pass empties the
//! spool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, watch};

use super::spool::{MAX_SEGMENT_BYTES, sealed};
use super::{StartError, Stats};
use crate::service::sensors::MAX_BATCH_EVENTS;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// On shutdown, delivery is tried for this long; the rest stays spooled.
const FINAL_PASS: Duration = Duration::from_secs(5);

/// How long a post may take, sent and answered; past it, the post is
/// retried and the link treated as slow.
const POST_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTPS client, trusting `ca_pem` in addition to the system roots.
pub fn client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, StartError> {
    client_timing_out(ca_pem, POST_TIMEOUT)
}

fn client_timing_out(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, StartError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
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
    body: Bytes,
    events: u64,
}

impl Segment {
    fn size(&self) -> u64 {
        self.body.len() as u64
    }
}

/// Events in a segment: its lines, the last one counted even without
/// its newline (the spool always writes one).
fn events_in(body: &[u8]) -> u64 {
    let lines = body.split(|&b| b == b'\n').count() as u64;
    if body.is_empty() || body.ends_with(b"\n") {
        lines - 1
    } else {
        lines
    }
}

/// A post holds at most the server's batch of events, and at most one
/// segment's worth of bytes (half the server's body limit).
const POST_EVENTS: u64 = MAX_BATCH_EVENTS as u64;
const POST_BYTES: u64 = MAX_SEGMENT_BYTES;
/// Posts sent before one is answered. Draining a backlog of 500,000
/// events into a server holding 1,000,000 indicators: 82–89k events/s
/// with one, 100–111k with two, 110–122k with four (the sensor's peak
/// memory 50–56 MiB against 40–41 MiB with two).
const IN_FLIGHT: usize = 4;

/// The sealed segments of one pass, in order.
struct Backlog {
    files: std::vec::IntoIter<PathBuf>,
    /// A segment read but left for the next post.
    next: Option<Segment>,
    /// A segment could not be read: the pass ends after the posts
    /// gathered before it.
    unreadable: bool,
}

pub struct Shipper {
    client: reqwest::Client,
    url: String,
    token: String,
    dir: PathBuf,
    stats: Arc<Stats>,
    used: Arc<AtomicU64>,
    /// A post timed out: one segment per post, one post at a time, until
    /// a pass empties the spool.
    slow: AtomicBool,
}

impl Shipper {
    /// Posts to `url` with `token` what the spool seals in `dir`;
    /// `used` is the spool's byte count, lowered as segments go.
    pub fn new(
        client: reqwest::Client,
        url: String,
        token: String,
        dir: PathBuf,
        stats: Arc<Stats>,
        used: Arc<AtomicU64>,
    ) -> Self {
        Self {
            client,
            url,
            token,
            dir,
            stats,
            used,
            slow: AtomicBool::new(false),
        }
    }

    pub async fn run(self, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                // This pass gathers even though `stop` is set.
                let (_, last) = watch::channel(false);
                let _ = tokio::time::timeout(FINAL_PASS, self.pass(&last)).await;
                return;
            }
            if self.pass(&stop).await {
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
    /// Once `stop` is set no new post is gathered (the posts in flight
    /// are answered), so shutting down waits for at most four posts.
    async fn pass(&self, stop: &watch::Receiver<bool>) -> bool {
        let files = match sealed(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the spool");
                return false;
            }
        };
        let mut backlog = Backlog {
            files: files.into_iter(),
            next: None,
            unreadable: false,
        };
        // Posts in flight: the next are gathered and sent while the
        // server commits the one before.
        let mut in_flight = FuturesUnordered::new();
        let (mut failed, mut stopped) = (false, false);
        loop {
            let slow = self.slow.load(Ordering::Relaxed);
            let most = if slow { 1 } else { IN_FLIGHT };
            while !failed && in_flight.len() < most {
                if *stop.borrow() {
                    stopped = true;
                    break;
                }
                let Some(post) = self.gather(&mut backlog, slow).await else {
                    break;
                };
                in_flight.push(self.ship(post));
            }
            match in_flight.next().await {
                Some(Outcome::Done) => {}
                // The posts already sent are answered; no more are sent.
                Some(Outcome::Retry) => failed = true,
                None => break,
            }
        }
        if failed || backlog.unreadable {
            Stats::inc(&self.stats.ship_failures);
            return false;
        }
        if !stopped && self.slow.swap(false, Ordering::Relaxed) {
            tracing::info!("spool emptied; posts combine segments again");
        }
        true
    }

    /// The next post: consecutive segments up to [`POST_EVENTS`] events
    /// and [`POST_BYTES`] bytes (one segment when `slow`); `None` when the
    /// backlog is done or a segment cannot be read (to be tried again on a
    /// later pass).
    async fn gather(&self, backlog: &mut Backlog, slow: bool) -> Option<Vec<Segment>> {
        let mut post: Vec<Segment> = Vec::new();
        let (mut events, mut bytes) = (0, 0);
        while !backlog.unreadable {
            let seg = if let Some(seg) = backlog.next.take() {
                seg
            } else {
                let Some(path) = backlog.files.next() else {
                    break;
                };
                let Some(seg) = self.read(path).await else {
                    backlog.unreadable = true;
                    break;
                };
                seg
            };
            if seg.events == 0 {
                self.remove(&seg.path, seg.size()).await;
                continue;
            }
            if !post.is_empty()
                && (slow || events + seg.events > POST_EVENTS || bytes + seg.size() > POST_BYTES)
            {
                backlog.next = Some(seg);
                break;
            }
            events += seg.events;
            bytes += seg.size();
            post.push(seg);
        }
        (!post.is_empty()).then_some(post)
    }

    /// The segment at `path`; `None` when it cannot be read (left for
    /// the next pass).
    async fn read(&self, path: PathBuf) -> Option<Segment> {
        let body = tokio::fs::read(&path).await.ok()?;
        let events = events_in(&body);
        Some(Segment {
            path,
            body: Bytes::from(body),
            events,
        })
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
        let mut ranges = Vec::with_capacity(segments.len());
        for seg in &segments {
            let start = body.len();
            body.extend_from_slice(&seg.body);
            ranges.push(start..body.len());
            if !body.ends_with(b"\n") {
                body.push(b'\n');
            }
        }
        // Each segment is kept as its part of the post (for a resend),
        // not as a second copy.
        let body = Bytes::from(body);
        for (seg, range) in segments.iter_mut().zip(ranges) {
            seg.body = body.slice(range);
        }
        match self.post(body).await {
            Posted::Accepted(text) => {
                self.delivered(&segments, &text).await;
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
        match self.post(seg.body.clone()).await {
            Posted::Accepted(text) => {
                self.delivered(std::slice::from_ref(&seg), &text).await;
                Outcome::Done
            }
            Posted::Refused(status, text) => {
                tracing::error!(status, answer = %text, file = %seg.path.display(), "server refused a batch; kept aside as .rejected");
                Stats::inc(&self.stats.batches_rejected);
                if let Err(e) =
                    tokio::fs::rename(&seg.path, seg.path.with_extension("rejected")).await
                {
                    // Left in the queue, it would be refused on every pass.
                    tracing::error!(error = %e, file = %seg.path.display(), "cannot set the refused batch aside");
                    return Outcome::Retry;
                }
                self.lower_used(seg.size());
                Outcome::Done
            }
            Posted::Retry => Outcome::Retry,
        }
    }

    /// Counts `segments`, acknowledged in one post, and deletes them.
    async fn delivered(&self, segments: &[Segment], answer: &str) {
        let events: u64 = segments.iter().map(|s| s.events).sum();
        tracing::debug!(events, segments = segments.len(), answer, "batch delivered");
        self.stats
            .events_shipped
            .fetch_add(events, Ordering::Relaxed);
        Stats::inc(&self.stats.batches_shipped);
        for seg in segments {
            self.remove(&seg.path, seg.size()).await;
        }
    }

    async fn post(&self, body: Bytes) -> Posted {
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
                if e.is_timeout() {
                    self.slow_down();
                }
                return Posted::Retry;
            }
        };
        let status = resp.status().as_u16();
        if status == 408 {
            // The server's deadline passed before the body arrived.
            self.slow_down();
        }
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
            self.lower_used(size);
        }
    }

    /// The spool's byte count, less `size` (never below zero: posts in
    /// flight lower it at once).
    fn lower_used(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(size))
            });
    }

    /// From now on, one segment per post and one post at a time.
    fn slow_down(&self) {
        if !self.slow.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a post timed out; sending one segment at a time until the spool is empty"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;

    use super::*;

    /// What the test server saw of one post.
    #[derive(Clone, Debug)]
    struct Seen {
        events: usize,
        /// Posts waiting for their answer when this one arrived.
        waiting: usize,
        first_line: String,
    }

    type Answer = fn(&Seen) -> StatusCode;
    type Hold = fn(&Seen) -> Duration;

    /// A server that answers a post once the next one has arrived (or
    /// 300 ms passed), with the status `answer` gives, recording what it
    /// saw of each post.
    async fn holding_server(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
        holding_server_for(answer, |_| Duration::from_millis(300)).await
    }

    /// `holding_server`, holding each post at most as long as `hold` says.
    async fn holding_server_for(answer: Answer, hold: Hold) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let (arrived, _) = watch::channel(0usize);
        let seen = posts.clone();
        let (arrived, waiting) = (Arc::new(arrived), Arc::new(AtomicU64::new(0)));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (seen, arrived, waiting) = (seen.clone(), arrived.clone(), waiting.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, arrived, waiting) =
                            (seen.clone(), arrived.clone(), waiting.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let text = String::from_utf8_lossy(&body);
                            let mut rx = arrived.subscribe();
                            let before = waiting.fetch_add(1, Ordering::SeqCst);
                            let post = Seen {
                                events: text.lines().count(),
                                waiting: usize::try_from(before).unwrap(),
                                first_line: text.lines().next().unwrap_or_default().to_owned(),
                            };
                            let index = {
                                let mut seen = seen.lock().unwrap();
                                seen.push(post.clone());
                                seen.len() - 1
                            };
                            arrived.send_modify(|n| *n += 1);
                            let _ =
                                tokio::time::timeout(hold(&post), rx.wait_for(|&n| n > index + 1))
                                    .await;
                            waiting.fetch_sub(1, Ordering::SeqCst);
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(b"{\"accepted\":1}")));
                            *resp.status_mut() = answer(&post);
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/v1/sensor/events"), posts)
    }

    /// Segment `seq` of `events` lines, each naming the segment.
    fn segment(dir: &Path, seq: u64, events: usize) {
        let body = format!("{{\"segment\":{seq}}}\n").repeat(events);
        std::fs::write(dir.join(format!("{seq:016}.ndjson")), body).unwrap();
    }

    /// A shipper posting to `url`, its spool holding segments `seqs` of
    /// `events` each.
    fn spooled(
        url: String,
        seqs: std::ops::RangeInclusive<u64>,
        events: usize,
    ) -> (tempfile::TempDir, Shipper) {
        spooled_with(client(None).unwrap(), url, seqs, events)
    }

    /// `spooled`, posting with `client`.
    fn spooled_with(
        client: reqwest::Client,
        url: String,
        seqs: std::ops::RangeInclusive<u64>,
        events: usize,
    ) -> (tempfile::TempDir, Shipper) {
        let dir = tempfile::tempdir().unwrap();
        for seq in seqs {
            segment(dir.path(), seq, events);
        }
        let s = Shipper::new(
            client,
            url,
            "t".into(),
            dir.path().to_path_buf(),
            Arc::new(Stats::default()),
            Arc::new(AtomicU64::new(0)),
        );
        (dir, s)
    }

    /// Whether the post starts with segment `seq`.
    fn starts_with(p: &Seen, seq: u64) -> bool {
        p.first_line == format!("{{\"segment\":{seq}}}")
    }

    fn left(dir: &Path) -> Vec<String> {
        sealed(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    async fn pass(s: &Shipper) -> bool {
        let (_, stop) = watch::channel(false);
        s.pass(&stop).await
    }

    #[tokio::test]
    async fn the_next_post_is_sent_while_the_one_before_waits_for_its_answer() {
        let (url, posts) = holding_server(|_| StatusCode::OK).await;
        // 6,000 events each: no two fit one post.
        let (dir, s) = spooled(url, 1..=4, 6_000);
        assert!(pass(&s).await);
        let posts = posts.lock().unwrap().clone();
        assert_eq!(
            posts.iter().map(|p| p.events).collect::<Vec<_>>(),
            [6_000; 4]
        );
        // Each post after the first arrived while another was unanswered.
        assert!(
            posts[1..].iter().all(|p| p.waiting >= 1),
            "posts were sent one at a time: {posts:?}"
        );
        assert_eq!(Stats::get(&s.stats.events_shipped), 24_000);
        assert!(left(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_failed_post_stays_spooled_while_the_others_sent_with_it_go() {
        let (url, posts) = holding_server(|p| {
            if starts_with(p, 2) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        })
        .await;
        let (dir, s) = spooled(url, 1..=3, 6_000);
        assert!(!pass(&s).await, "a pass with a failed post must be retried");
        assert_eq!(posts.lock().unwrap().len(), 3);
        assert_eq!(left(dir.path()), ["0000000000000002.ndjson"]);
        assert_eq!(Stats::get(&s.stats.events_shipped), 12_000);
        assert_eq!(Stats::get(&s.stats.ship_failures), 1);
        assert_eq!(Stats::get(&s.stats.batches_rejected), 0);
    }

    #[tokio::test]
    async fn after_a_timeout_segments_go_one_at_a_time_until_the_spool_is_empty() {
        // The server's deadline passes for the first post.
        let (url, posts) = holding_server(|p| {
            if p.events == 2_000 && starts_with(p, 1) {
                StatusCode::REQUEST_TIMEOUT
            } else {
                StatusCode::OK
            }
        })
        .await;
        let (dir, s) = spooled(url, 1..=4, 500);
        assert!(!pass(&s).await);
        assert_eq!(left(dir.path()).len(), 4);
        // Slow: one 500-event segment per post, one post at a time.
        assert!(pass(&s).await);
        assert!(left(dir.path()).is_empty());
        // The spool emptied: posts combine segments again.
        for seq in 5..=8 {
            segment(dir.path(), seq, 500);
        }
        assert!(pass(&s).await);
        let posts = posts.lock().unwrap().clone();
        let sizes: Vec<_> = posts.iter().map(|p| (p.events, p.waiting)).collect();
        assert_eq!(
            sizes,
            [
                (2_000, 0),
                (500, 0),
                (500, 0),
                (500, 0),
                (500, 0),
                (2_000, 0)
            ]
        );
        assert_eq!(Stats::get(&s.stats.events_shipped), 4_000);
    }

    #[tokio::test]
    async fn a_post_unanswered_in_time_is_kept_and_segments_go_one_at_a_time() {
        // The combined post gets no answer before the client's deadline;
        // one segment alone is answered at once.
        let (url, posts) = holding_server_for(
            |_| StatusCode::OK,
            |p| {
                if p.events > 500 {
                    Duration::from_secs(5)
                } else {
                    Duration::ZERO
                }
            },
        )
        .await;
        let client = client_timing_out(None, Duration::from_secs(1)).unwrap();
        let (dir, s) = spooled_with(client, url, 1..=4, 500);
        assert!(!pass(&s).await);
        assert_eq!(
            left(dir.path()).len(),
            4,
            "an unanswered post's segments stay"
        );
        assert_eq!(Stats::get(&s.stats.events_shipped), 0);
        assert!(s.slow.load(Ordering::SeqCst));
        assert!(pass(&s).await);
        assert!(left(dir.path()).is_empty());
        assert!(
            !s.slow.load(Ordering::SeqCst),
            "an empty spool ends the slow mode"
        );
        let sizes: Vec<_> = posts.lock().unwrap().iter().map(|p| p.events).collect();
        assert_eq!(sizes, [2_000, 500, 500, 500, 500]);
        assert_eq!(Stats::get(&s.stats.events_shipped), 2_000);
    }

    #[test]
    fn a_segments_events_are_its_lines() {
        assert_eq!(events_in(b""), 0);
        assert_eq!(events_in(b"{}\n"), 1);
        assert_eq!(events_in(b"{}\n{}"), 2);
        assert_eq!(events_in(b"{}"), 1);
    }
}
