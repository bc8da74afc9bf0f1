//! The foundation: HTTPS with HTTP/1.1 and HTTP/2, security headers, error
//! dialects, the UI handler, TLS versions and reload, data dir ownership,
//! bootstrap token, schema guard, admin socket, redirect and plain HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use sikker::service::admin::AdminRequest;

use crate::common::{TestServer, raw};

const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("strict-transport-security", "max-age="),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'self'"),
    ("permissions-policy", "camera=()"),
];

fn assert_security_headers(r: &reqwest::Response) {
    for (name, needle) in SECURITY_HEADERS {
        let v = r
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{} lacks {name}", r.url()))
            .to_str()
            .unwrap();
        assert!(v.contains(needle), "{name}: {v}");
    }
}

#[tokio::test]
async fn healthz_over_http1_and_http2() {
    let s = TestServer::start().await;
    let r = s.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status":"ok"})
    );

    let pem = crate::common::cert_pem(&s.data_dir, &s.config);
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let r = h1.head(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let s = TestServer::start().await;
    for path in [
        "/healthz",
        "/",
        "/app.css",
        "/v1/key/nothing",
        "/missing.png",
        "/taxii2/x",
        "/api/v2/x",
    ] {
        let r = s.get(path).await;
        assert_security_headers(&r);
    }
    let r = s.client.post(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&r);
}

#[tokio::test]
async fn errors_speak_each_api_dialect() {
    let s = TestServer::start().await;
    let r = s.get("/v1/key/nothing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "no such endpoint"
    );

    let r = s.get("/api/v2/nothing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["status"], 404);
    assert_eq!(v["errors"][0]["detail"], "no such endpoint");

    let r = s.get("/taxii2/nothing/").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.headers()["content-type"],
        "application/taxii+json;version=2.1"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["http_status"], "404");
    assert!(v["title"].is_string());

    let r = s.client.delete(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn ui_is_served_with_types_etags_and_fallback() {
    let s = TestServer::start().await;
    let r = s.get("/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(body.contains("<title>sikker</title>"));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no third-party resources"
    );

    let r = s
        .client
        .get(s.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = s.get("/app.css").await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let r = s.get("/js/main.js").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    let r = s.get("/ip/203.0.113.9").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "page paths fall back to index.html"
    );
    assert!(r.text().await.unwrap().contains("<title>sikker</title>"));
    let r = s.get("/nothing-here.png").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let s = TestServer::start().await;
    let pem = crate::common::cert_pem(&s.data_dir, &s.config);
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = raw::client_config(&pem, Some(&[v]));
        let mut c = raw::tls_connect(s.addr, cfg).await.unwrap();
        assert_eq!(c.get_ref().1.protocol_version(), Some(v.version));
        raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(raw::read_response(&mut c).await.0, 200);
    }
    // A TLS 1.0 ClientHello with no supported_versions extension.
    let mut hello = vec![0x03, 0x01];
    hello.extend_from_slice(&[7_u8; 32]);
    hello.extend_from_slice(&[0, 0, 4, 0x00, 0x2f, 0xc0, 0x13, 1, 0]);
    let mut hs = vec![1, 0, 0, u8::try_from(hello.len()).unwrap()];
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0, u8::try_from(hs.len()).unwrap()];
    record.extend_from_slice(&hs);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    raw::send(&mut tcp, &record).await;
    let (got, closed) = raw::read_until_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "server must close a TLS 1.0 connection");
    assert!(!got.is_empty(), "expected an alert");
    assert_eq!(got[0], 0x15, "expected a TLS alert record, got {got:?}");
    // rustls answers protocol_version (70) or handshake_failure (40); never a ServerHello.
    assert!(
        matches!(got.last(), Some(70 | 40)),
        "expected a fatal alert: {got:?}"
    );
}

fn make_cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

fn peer_der(c: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    c.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn operator_certificates_reload_without_dropping_connections() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der_a) = make_cert(certs.path(), "live");
    let s = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let pem_a = std::fs::read(&cert).unwrap();
    let mut old = raw::tls_connect(s.addr, raw::client_config(&pem_a, None))
        .await
        .unwrap();
    assert_eq!(peer_der(&old), der_a);

    // Replace the files with certificate B and reload.
    let (cert_b, key_b, der_b) = make_cert(certs.path(), "next");
    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    s.handle().reload().unwrap();
    let pem_b = std::fs::read(&cert).unwrap();
    let fresh = raw::tls_connect(s.addr, raw::client_config(&pem_b, None))
        .await
        .unwrap();
    assert_eq!(peer_der(&fresh), der_b);

    // The connection made before the reload still works.
    raw::send(
        &mut old,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw::read_response(&mut old).await.0, 200);

    // A broken file keeps the current certificate in service.
    std::fs::write(&key, "garbage").unwrap();
    let err = s.handle().reload().unwrap_err().to_string();
    assert!(err.contains("SIKKER_TLS_KEY"), "{err}");
    let again = raw::tls_connect(s.addr, raw::client_config(&pem_b, None))
        .await
        .unwrap();
    assert_eq!(peer_der(&again), der_b);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let s = TestServer::start().await;
    let cfg = sikker::config::Config::from_serve_args([
        "--data-dir",
        s.data_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let l = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
    let err = sikker::app::start(&cfg, l, sikker::domain::Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already running"), "{err}");
    assert_eq!(
        s.get("/healthz").await.status(),
        StatusCode::OK,
        "the first server is unaffected"
    );
}

#[tokio::test]
async fn data_dir_is_private_and_bootstrap_token_is_issued_once() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700);
    assert_eq!(mode(&s.data_dir.join("secret.key")), 0o600);
    assert_eq!(mode(&s.data_dir.join("sikker.redb")), 0o600);
    assert_eq!(mode(&s.data_dir.join("admin.sock")), 0o600);
    assert_eq!(mode(&s.data_dir.join("tls/self-signed.key")), 0o600);
    let token = s
        .handle()
        .bootstrap_token
        .clone()
        .expect("first start issues a token");
    let services = s.handle().services.clone();
    assert_eq!(token.len(), 64);
    assert!(services.check_bootstrap_token(&token).await.unwrap());
    assert!(!services.check_bootstrap_token("0000").await.unwrap());
    // The plaintext token is not in the database file.
    let db = std::fs::read(s.data_dir.join("sikker.redb")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
    // It expires after 24 hours.
    s.clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert!(!services.check_bootstrap_token(&token).await.unwrap());
    drop(services);

    let (dir, data) = s.into_dirs().await;
    let s2 = TestServer::start_in(dir, data, &[]).await;
    assert!(
        s2.handle().bootstrap_token.is_none(),
        "no token on later starts"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let s = TestServer::start().await;
    let (dir, data) = s.into_dirs().await;
    let opened = sikker::store::Store::open(&data.join("sikker.redb")).unwrap();
    opened
        .store
        .write_blocking(|t| {
            sikker::store::meta::set_schema_version(t, sikker::store::migrate::CURRENT + 1)
        })
        .unwrap();
    drop(opened);
    let cfg = sikker::config::Config::from_serve_args([
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let l = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
    let err = sikker::app::start(&cfg, l, sikker::domain::Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer version of sikker"), "{err}");
    drop(dir);
}

#[tokio::test]
async fn admin_socket_answers_and_stale_sockets_are_handled() {
    let s = TestServer::start().await;
    let sock = s.data_dir.join("admin.sock");
    let mut c = sikker::admin::client::Client::connect(&sock)
        .await
        .unwrap()
        .expect("server listens");
    let reply = c.call(AdminRequest::Ping).await.unwrap();
    match reply.outcome {
        sikker::admin::Outcome::Ok { result } => assert_eq!(result["mode"], "server"),
        other => panic!("{other:?}"),
    }
    let (dir, data) = s.into_dirs().await;
    assert!(!sock.exists(), "a clean stop removes the socket");

    // Leave a stale socket file behind, as a crash would.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    assert!(
        sikker::admin::client::Client::connect(&sock)
            .await
            .unwrap()
            .is_none()
    );
    let s2 = TestServer::start_in(dir, data, &[]).await;
    let mut c = sikker::admin::client::Client::connect(&sock)
        .await
        .unwrap()
        .expect("stale socket replaced");
    assert!(matches!(
        c.call(AdminRequest::Ping).await.unwrap().outcome,
        sikker::admin::Outcome::Ok { .. }
    ));
    drop(s2);
}

#[tokio::test]
async fn plain_http_redirects_to_https_with_308() {
    let s = TestServer::start_with(&["--http-redirect-listen", "127.0.0.1:0"]).await;
    let redirect = s.handle().redirect_addr.unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!(
            "http://localhost:{}/v1/key/status?x=1",
            redirect.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.headers()["location"],
        format!("https://localhost:{}/v1/key/status?x=1", s.addr.port())
    );
    assert_security_headers(&r);
}

#[tokio::test]
async fn insecure_http_serves_plain_http_only_when_asked() {
    let s = TestServer::start_with(&["--insecure-http", "--trusted-proxy", "127.0.0.1"]).await;
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_security_headers(&r);
    assert!(
        !s.data_dir.join("tls").exists(),
        "no certificate is made for plain HTTP"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = TestServer::start().await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    // A request whose (empty, chunked) body has not finished arriving.
    raw::send(
        &mut c,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handle = s.handle.take().unwrap();
    let stopping = tokio::spawn(handle.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(s.addr).await.is_err(),
        "no new connections while draining"
    );
    raw::send(&mut c, b"0\r\n\r\n").await;
    let (status, head, _) = raw::read_response(&mut c).await;
    assert_eq!(status, 200, "{head}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

/// Answers longer than a packet are sent gzip-compressed to a client that
/// accepts it, whatever the endpoint (a bulk check, a TAXII page, a UI
/// file), and decompress to exactly the identity answer; short answers,
/// errors and clients that do not ask get the identity body.
#[tokio::test]
async fn answers_are_gzip_compressed_when_asked_and_worth_it() {
    use crate::common::gunzip;
    let s = TestServer::start().await;
    let (key, token) = s.key_and_sensor("unlimited").await;
    let ips: Vec<(String, usize)> = (0..300u32)
        .map(|i| (std::net::Ipv4Addr::from(0x5400_0000 + i).to_string(), 12))
        .collect();
    s.attack(&token, &ips).await;
    let ask = |method: reqwest::Method, path: &str, gzip: bool| {
        let mut r = s
            .client
            .request(method, s.url(path))
            .bearer_auth(&key)
            .header("accept", "application/taxii+json;version=2.1");
        if gzip {
            r = r.header("accept-encoding", "gzip, deflate, br");
        }
        r
    };
    let fetch = |r: reqwest::RequestBuilder| async move {
        let r = r.send().await.unwrap();
        let (status, h) = (r.status(), r.headers().clone());
        (status, h, r.bytes().await.unwrap().to_vec())
    };
    let ips: String = (0..2000u32)
        .map(|i| std::net::Ipv4Addr::from(0x5400_0000 + i).to_string() + "\n")
        .collect();
    let bulk = |gzip| {
        ask(reqwest::Method::POST, "/v1/key/bulk-check-inline", gzip)
            .header("content-type", "text/plain")
            .body(ips.clone())
    };
    let taxii = "/taxii2/collections/sikker-threat-intel/objects/?limit=200";
    for (what, identity, coded) in [
        (
            "bulk check",
            fetch(bulk(false)).await,
            fetch(bulk(true)).await,
        ),
        (
            "TAXII page",
            fetch(ask(reqwest::Method::GET, taxii, false)).await,
            fetch(ask(reqwest::Method::GET, taxii, true)).await,
        ),
        (
            "UI file",
            fetch(ask(reqwest::Method::GET, "/app.css", false)).await,
            fetch(ask(reqwest::Method::GET, "/app.css", true)).await,
        ),
    ] {
        let ((st, h, plain), (zst, zh, z)) = (identity, coded);
        assert_eq!((st, zst), (StatusCode::OK, StatusCode::OK), "{what}");
        assert!(plain.len() > 1400, "{what}");
        assert!(h.get("content-encoding").is_none(), "{what}");
        assert_eq!(h["vary"], "accept-encoding", "{what}");
        assert_eq!(zh["content-encoding"], "gzip", "{what}");
        assert_eq!(zh["vary"], "accept-encoding", "{what}");
        assert!(z.len() < plain.len(), "{what}");
        assert_eq!(gunzip(&z), plain, "{what}");
    }
    // The UI file's coded representation has its own validator.
    let (_, h, _) = fetch(ask(reqwest::Method::GET, "/app.css", false)).await;
    let (_, zh, _) = fetch(ask(reqwest::Method::GET, "/app.css", true)).await;
    let (tag, ztag) = (h["etag"].to_str().unwrap(), zh["etag"].to_str().unwrap());
    assert_eq!(ztag, format!("{}-gzip\"", tag.strip_suffix('"').unwrap()));
    let (st, _, _) =
        fetch(ask(reqwest::Method::GET, "/app.css", true).header("if-none-match", ztag)).await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    let (st, _, _) =
        fetch(ask(reqwest::Method::GET, "/app.css", false).header("if-none-match", ztag)).await;
    assert_eq!(st, StatusCode::OK);
    // HEAD says what GET would send.
    let (st, hh, empty) = fetch(ask(reqwest::Method::HEAD, "/app.css", true)).await;
    assert_eq!((st, empty.len()), (StatusCode::OK, 0));
    assert_eq!(hh["content-encoding"], "gzip");
    // A single check, a small file and an error are sent as they are.
    for path in [
        "/v1/key/check/84.0.0.1",
        "/favicon.svg",
        "/v1/key/check/not-an-ip",
    ] {
        let (_, h, body) = fetch(ask(reqwest::Method::GET, path, true)).await;
        assert!(h.get("content-encoding").is_none(), "{path}");
        assert!(h.get("vary").is_none(), "{path}");
        assert!(!body.is_empty(), "{path}");
    }
}
