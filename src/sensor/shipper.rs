//! The shipper: posts sealed spool segments, oldest first, to the server's
//! `POST /v1/sensor/events` and deletes each once acknowledged. Failures
//! back off exponentially (1 s to 60 s); a batch the server refuses as
//! invalid is kept aside as `*.rejected` instead of blocking the queue.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::spool::sealed;
use super::{StartError, Stats};

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
        for f in files {
            if matches!(self.ship(&f).await, Outcome::Retry) {
                Stats::inc(&self.stats.ship_failures);
                return false;
            }
        }
        true
    }

    async fn ship(&self, path: &Path) -> Outcome {
        let Ok(body) = tokio::fs::read(path).await else {
            return Outcome::Retry;
        };
        let size = body.len() as u64;
        #[allow(clippy::naive_bytecount)] // once per batch; not worth a dependency
        let lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
        if lines == 0 {
            self.remove(path, size).await;
            return Outcome::Done;
        }
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
                return Outcome::Retry;
            }
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => {
                tracing::debug!(events = lines, answer = %text, "batch delivered");
                self.stats
                    .events_shipped
                    .fetch_add(lines, Ordering::Relaxed);
                Stats::inc(&self.stats.batches_shipped);
                self.remove(path, size).await;
                Outcome::Done
            }
            400 | 413 => {
                tracing::error!(status = status.as_u16(), answer = %text, file = %path.display(), "server refused a batch; kept aside as .rejected");
                Stats::inc(&self.stats.batches_rejected);
                let _ = tokio::fs::rename(path, path.with_extension("rejected")).await;
                self.used.fetch_sub(
                    size.min(self.used.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                Outcome::Done
            }
            401 | 403 => {
                tracing::error!(status = status.as_u16(), answer = %text, "the server does not accept this sensor token (--token / SIKKER_SENSOR_TOKEN)");
                Outcome::Retry
            }
            _ => {
                tracing::warn!(
                    status = status.as_u16(),
                    "server busy or failing; events stay spooled"
                );
                Outcome::Retry
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
