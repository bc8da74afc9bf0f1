//! ACME against Debian's real pebble: pebble-challtestsrv answers DNS with
//! 127.0.0.1 for every name, pebble validates TLS-ALPN-01 on sikker's own
//! HTTPS port, and a client trusting only pebble's root must then verify
//! the chain sikker serves for the domain. Renewal inside the window
//! (clock moved) and a restart that serves the stored certificate with the
//! CA gone are checked on the same data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sikker::app::{self, AppHandle};
use sikker::config::Config;
use sikker::domain::{Clock, UnixMillis};
use tokio::net::{TcpListener, TcpStream};

use crate::packaging::need_tool;

const DOMAIN: &str = "sikker.test";

/// A free loopback port (TCP and UDP both free at the time of asking).
fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Kills the process when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pebble {
    _procs: Vec<Proc>,
    directory: String,
    /// The certificate pebble serves its own HTTPS with (what
    /// --acme-ca-file trusts).
    https_ca: PathBuf,
    /// Pebble's issuing root, fetched from its management interface.
    root_pem: Vec<u8>,
}

/// Starts pebble-challtestsrv (DNS only) and pebble, validating on
/// `tls_port`, with files under `dir`.
async fn start_pebble(dir: &Path, tls_port: u16) -> Pebble {
    let pebble = need_tool("pebble", "pebble (run .ci/install)");
    let challtestsrv = need_tool("pebble-challtestsrv", "pebble (run .ci/install)");
    // Debian's pebble ships no test certificates: make its HTTPS pair.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let https_ca = dir.join("pebble-https.pem");
    std::fs::write(&https_ca, cert.pem()).unwrap();
    std::fs::write(dir.join("pebble-https.key"), key.serialize_pem()).unwrap();
    let (acme_port, mgmt_port, dns_port, cts_port, http_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": https_ca,
            "privateKey": dir.join("pebble-https.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let config_path = dir.join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let dns = Proc(
        Command::new(challtestsrv)
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{cts_port}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca = Proc(
        Command::new(pebble)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order is validated again, renewals included.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap();
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let root_pem = loop {
        let dir_ok = client
            .get(&directory)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let root = match client
            .get(format!("https://127.0.0.1:{mgmt_port}/roots/0"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Some(r.bytes().await.unwrap().to_vec()),
            _ => None,
        };
        if let (true, Some(root)) = (dir_ok, root) {
            break root;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pebble did not come up; see {}",
            dir.join("pebble.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Pebble {
        _procs: vec![dns, ca],
        directory,
        https_ca,
        root_pem,
    }
}

fn real_now() -> UnixMillis {
    UnixMillis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

async fn start_sikker(
    data_dir: &Path,
    listener: TcpListener,
    directory: &str,
    ca_file: &Path,
    clock: Clock,
) -> AppHandle {
    let addr = listener.local_addr().unwrap().to_string();
    let config = Config::from_serve_args([
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        &addr,
        "--acme-domain",
        DOMAIN,
        "--acme-directory",
        directory,
        "--acme-ca-file",
        ca_file.to_str().unwrap(),
        "--acme-contact",
        "mailto:ops@sikker.test",
    ])
    .unwrap();
    app::start(&config, listener, clock).await.unwrap()
}

/// The leaf of the chain served for DOMAIN, if it verifies against `root`
/// (checked by rustls with the real time, as any client would).
async fn verified_leaf(addr: SocketAddr, root_pem: &[u8]) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok(leaf)
}

/// Polls until the served chain verifies against pebble's root.
async fn wait_for_acme_cert(addr: SocketAddr, root_pem: &[u8], logs: &Path) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match verified_leaf(addr, root_pem).await {
            Ok(leaf) => return leaf,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no certificate from pebble served in 60 s (last error: {e}); pebble log in {}",
                logs.display()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET /healthz over HTTPS to DOMAIN (resolved to the listener), trusting
/// only pebble's root.
async fn healthz(addr: SocketAddr, root_pem: &[u8]) -> reqwest::StatusCode {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem).unwrap())
        .resolve(DOMAIN, addr)
        .use_rustls_tls()
        .build()
        .unwrap()
        .get(format!("https://{DOMAIN}:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap()
        .status()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_issued_renewed_and_served_after_restart_without_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pebble = start_pebble(tmp.path(), addr.port()).await;

    // First start: nothing stored, so the self-signed certificate stands in
    // until the order completes and the live configuration swaps.
    let now = real_now();
    let h = start_sikker(
        &data_dir,
        listener,
        &pebble.directory,
        &pebble.https_ca,
        Clock::manual(now),
    )
    .await;
    let first = wait_for_acme_cert(addr, &pebble.root_pem, tmp.path()).await;
    assert_eq!(healthz(addr, &pebble.root_pem).await, 200);
    let acme_dir = data_dir.join("acme");
    assert_eq!(mode(&acme_dir.join("cert.pem")), 0o600);
    assert_eq!(mode(&acme_dir.join("key.pem")), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("account-"))
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
    let stored =
        sikker::acme::CertInfo::parse(&std::fs::read(acme_dir.join("cert.pem")).unwrap()).unwrap();
    assert_eq!(stored.names, [DOMAIN]);
    h.shutdown().await;

    // Restart with the clock ten days before expiry: inside the 30-day
    // window, so the stored account orders a new certificate at once.
    let listener = TcpListener::bind(addr).await.unwrap();
    let late = UnixMillis(stored.not_after.0 - 10 * 86_400_000);
    let h = start_sikker(
        &data_dir,
        listener,
        &pebble.directory,
        &pebble.https_ca,
        Clock::manual(late),
    )
    .await;
    // The old certificate is served until the new one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let leaf = verified_leaf(addr, &pebble.root_pem).await.unwrap();
        if leaf != first {
            break leaf;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not renewed in 60 s; pebble log in {}",
            tmp.path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        std::fs::read_dir(&acme_dir).unwrap().count(),
        3,
        "one account reused"
    );
    h.shutdown().await;

    // The CA goes away; a restart serves the stored certificate at once.
    let (root, directory) = (pebble.root_pem.clone(), pebble.directory.clone());
    drop(pebble);
    let listener = TcpListener::bind(addr).await.unwrap();
    let h = start_sikker(
        &data_dir,
        listener,
        &directory,
        &tmp.path().join("pebble-https.pem"),
        Clock::manual(real_now()),
    )
    .await;
    assert_eq!(verified_leaf(addr, &root).await.unwrap(), renewed);
    assert_eq!(healthz(addr, &root).await, 200);
    h.shutdown().await;
}
