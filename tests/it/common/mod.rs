//! `TestServer`: a real server in-process on a free port, with a temp data
//! dir, a manual clock, and HTTPS clients that trust its certificate.

pub mod cdp;
pub mod mmdb;
pub mod python;
pub mod raw;
pub mod smtp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sikker::app::{self, AppHandle};
use sikker::config::Config;
use sikker::domain::{Clock, UnixMillis};
use tokio::net::TcpListener;

/// 2026-03-21T12:00:00Z, the fixed "now" tests start from.
pub const T0: UnixMillis = UnixMillis(1_774_094_400_000);

pub struct TestServer {
    pub handle: Option<AppHandle>,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra `sikker serve` flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Self::start_in(dir, data_dir, extra).await
    }

    /// Starts on an existing data dir (for restart tests).
    pub async fn start_in(dir: tempfile::TempDir, data_dir: PathBuf, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::from_serve_args(&args).unwrap();
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let clock = Clock::manual(T0);
        let handle = app::start(&config, listener, clock.clone()).await.unwrap();
        let addr = handle.local_addr;
        let client = if config.insecure_http {
            reqwest::Client::builder().build().unwrap()
        } else {
            https_client(&cert_pem(&data_dir, &config))
        };
        Self {
            handle: Some(handle),
            dir,
            data_dir,
            addr,
            clock,
            client,
            config,
        }
    }

    pub fn handle(&self) -> &AppHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.config.insecure_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A new API key of `tier` (named after it) and a new sensor's token.
    pub async fn key_and_sensor(&self, tier: &str) -> (String, String) {
        let services = &self.handle().services;
        let key = services.create_api_key(tier, tier, None).await.unwrap().0;
        let token = services.create_sensor("hp").await.unwrap().0;
        (key, token)
    }

    /// Feeds `events` SSH login attempts per address through the sensor
    /// API as the sensor holding `token` (sessions of three attempts, a
    /// millisecond apart), in one batch.
    pub async fn attack(&self, token: &str, ips: &[(String, usize)]) {
        let t = self.clock.now().0;
        let mut body = String::new();
        for (ip, n) in ips {
            for i in 0..*n {
                let line = serde_json::json!({"ts": t + i as i64, "src_ip": ip, "protocol": "ssh", "session_id": format!("{ip}-{}", i / 3), "kind": "auth", "username": "root"});
                body.push_str(&line.to_string());
                body.push('\n');
            }
        }
        let r = self.send_events(token, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "{}",
            &text[..text.len().min(300)]
        );
    }

    /// Posts an NDJSON batch to the sensor ingest endpoint as the sensor
    /// holding `token`, as `sikker sensor` does.
    pub async fn send_events(
        &self,
        token: &str,
        ndjson: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/sensor/events"))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(ndjson)
            .send()
            .await
            .unwrap()
    }

    /// A rustls client config trusting this server's certificate.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        raw::client_config(&cert_pem(&self.data_dir, &self.config), None)
    }

    /// Stops the server (graceful), keeping the temp dir.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Stops and hands back the temp dir and data dir for a restart.
    pub async fn into_dirs(mut self) -> (tempfile::TempDir, PathBuf) {
        self.stop().await;
        let data = self.data_dir.clone();
        (self.dir, data)
    }
}

pub fn cert_pem(data_dir: &Path, config: &Config) -> Vec<u8> {
    let path = config
        .tls_cert
        .clone()
        .unwrap_or_else(|| data_dir.join("tls/self-signed.crt"));
    std::fs::read(path).unwrap()
}

pub fn https_client(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most 20 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A gzip body, decompressed.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The `Retry-After` header of `r`, in seconds (panics when absent or not
/// a number of seconds).
pub fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
