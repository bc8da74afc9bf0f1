//! Hostile and broken input at the HTTP layer: each gets a clear answer or a
//! closed connection, never a panic, and the server keeps serving others.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{TestServer, raw};

async fn still_serving(s: &TestServer) {
    assert_eq!(
        s.get("/healthz").await.status(),
        StatusCode::OK,
        "server must keep serving"
    );
}

#[tokio::test]
async fn http10_without_host_gets_a_clear_400() {
    let s = TestServer::start().await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(&mut c, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    let (status, _, body) = raw::read_response(&mut c).await;
    assert_eq!(status, 400);
    assert!(body.contains("missing Host header"), "{body}");
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(&mut c, b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut c).await.0, 200);
    still_serving(&s).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let s = TestServer::start().await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    let big = "a".repeat(64 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c, req.as_bytes()).await;
    let (got, _) = raw::read_until_close(&mut c, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(
        &mut c,
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes(),
    )
    .await;
    let (got, _) = raw::read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 431"));
    still_serving(&s).await;
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let s = TestServer::start().await;
    let r = s
        .client
        .get(s.url("/healthz"))
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    // Chunked, without Content-Length: stopped by counting.
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut c).await.0, 413);
    still_serving(&s).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let s = TestServer::start_with(&["--header-timeout", "1s"]).await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: loc").await;
    let started = std::time::Instant::now();
    let (_, closed) = raw::read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(
        closed,
        "a client that never finishes its headers must be disconnected"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    still_serving(&s).await;
}

#[tokio::test]
async fn slow_bodies_get_408() {
    let s = TestServer::start_with(&["--request-timeout", "1s", "--idle-timeout", "5s"]).await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(
        &mut c,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let (status, _, body) = raw::read_response(&mut c).await;
    assert_eq!(status, 408);
    assert!(body.contains("time limit"), "{body}");
    still_serving(&s).await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let s = TestServer::start_with(&["--request-timeout", "1s", "--idle-timeout", "1s"]).await;
    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut c).await.0, 200);
    let (_, closed) = raw::read_until_close(&mut c, Duration::from_secs(4)).await;
    assert!(closed, "an idle keep-alive connection must be closed");
    // A connection that never sends a byte is closed too.
    let mut quiet = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    let (_, closed) = raw::read_until_close(&mut quiet, Duration::from_secs(4)).await;
    assert!(closed);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_slots_come_back() {
    let s = TestServer::start_with(&["--max-connections", "2"]).await;
    let a = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    let mut b = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    assert!(
        raw::tls_connect(s.addr, s.tls_config()).await.is_err(),
        "third connection must be refused"
    );
    raw::send(&mut b, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(
        raw::read_response(&mut b).await.0,
        200,
        "admitted connections keep working"
    );
    drop(a);
    let mut ok = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = raw::tls_connect(s.addr, s.tls_config()).await {
            ok = Some(c);
            break;
        }
    }
    let mut c = ok.expect("a freed slot is reusable");
    raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut c).await.0, 200);
}

#[tokio::test]
async fn tls_garbage_closes_only_that_connection() {
    let s = TestServer::start().await;
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
        &[0_u8; 600],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, junk).await;
        let (got, closed) = raw::read_until_close(&mut tcp, Duration::from_secs(12)).await;
        assert!(closed, "garbage must end in a closed connection");
        assert!(got.len() < 64, "at most an alert comes back");
    }
    // A client that connects and never says anything is dropped after the handshake timeout.
    still_serving(&s).await;
}

#[tokio::test]
async fn non_utf8_and_malformed_paths_are_refused_clearly() {
    let s = TestServer::start().await;
    let r = s.get("/%ff%fe").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    let r = s.get("/v1/key/check/%zz").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
    let mut req = b"GET /caf".to_vec();
    req.extend_from_slice(&[0xc3, 0x28]);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    raw::send(&mut c, &req).await;
    let (got, _) = raw::read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400"),
        "{got:?}"
    );
    still_serving(&s).await;
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_closed() {
    let s = TestServer::start_with(&["--max-connections-per-ip", "3"]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(raw::tls_connect(s.addr, s.tls_config()).await.unwrap());
    }
    assert!(
        raw::tls_connect(s.addr, s.tls_config()).await.is_err(),
        "a fourth connection from 127.0.0.1 must be refused"
    );
    for c in &mut open {
        raw::send(c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(
            raw::read_response(c).await.0,
            200,
            "admitted connections keep working"
        );
    }
    drop(open.pop());
    let mut ok = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = raw::tls_connect(s.addr, s.tls_config()).await {
            ok = Some(c);
            break;
        }
    }
    let mut c = ok.expect("a freed slot is reusable");
    raw::send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut c).await.0, 200);

    // A trusted proxy carries many clients: its connections are not capped per address.
    let p = TestServer::start_with(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxy",
        "127.0.0.1/32",
    ])
    .await;
    let _a = raw::tls_connect(p.addr, p.tls_config()).await.unwrap();
    let mut b = raw::tls_connect(p.addr, p.tls_config()).await.unwrap();
    raw::send(&mut b, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(raw::read_response(&mut b).await.0, 200);
}

async fn too_many(r: reqwest::Response) -> (u64, serde_json::Value) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = crate::common::retry_after(&r);
    (retry, r.json().await.unwrap())
}

#[tokio::test]
async fn requests_beyond_the_per_address_rate_get_429_in_each_dialect() {
    let s = TestServer::start_with(&["--rate-limit-per-ip", "1", "--rate-limit-burst", "3"]).await;
    let key = s
        .handle()
        .services
        .create_api_key("rate", "free", None)
        .await
        .unwrap()
        .0;
    let check = |ip: &'static str| {
        s.client
            .get(s.url(&format!("/v1/key/check/{ip}")))
            .bearer_auth(&key)
            .send()
    };
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(check("192.0.2.1").await.unwrap().status(), StatusCode::OK);
    }
    let (retry, v) = too_many(check("192.0.2.1").await.unwrap()).await;
    assert_eq!(retry, 1);
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("too many requests"),
        "{v}"
    );
    let (_, v) = too_many(
        s.client
            .get(s.url("/api/v2/check?ipAddress=192.0.2.1"))
            .header("Key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["errors"][0]["status"], 429, "{v}");
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{v}"
    );
    let (_, v) = too_many(
        s.client
            .get(s.url("/taxii2/"))
            .header("accept", "application/taxii+json;version=2.1")
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["http_status"], "429", "{v}");
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the refused requests must fall within one refill interval for this test to mean anything"
    );
    // Health checks are never throttled.
    still_serving(&s).await;
    // After the window (one token a second), the client is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(check("192.0.2.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        check("192.0.2.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let s = TestServer::start_with(&[
        "--rate-limit-per-ip",
        "1",
        "--rate-limit-burst",
        "2",
        "--trusted-proxy",
        "127.0.0.0/8",
    ])
    .await;
    let from = |ip: &'static str| {
        s.client
            .get(s.url("/v1/ui/policy"))
            .header("x-forwarded-for", ip)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(from("203.0.113.1").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        from("203.0.113.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy is not affected.
    assert_eq!(from("203.0.113.2").await.unwrap().status(), StatusCode::OK);
    assert_eq!(from("2001:db8::1").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_flood_does_not_starve_lookups() {
    const ATTEMPTS: usize = 64;
    // Wrong passwords from one address, each on its own name and its own
    // connection: the lockout and the per-address limits are lifted so
    // every attempt reaches argon2.
    let s = TestServer::start_with(&[
        "--hash-concurrency",
        "2",
        "--lockout-failures",
        "1000",
        "--rate-limit-per-ip",
        "0",
        "--max-connections-per-ip",
        "1000",
    ])
    .await;
    let key = s
        .handle()
        .services
        .create_api_key("flood", "unlimited", None)
        .await
        .unwrap()
        .0;
    // Its own connection pool, so the flood shares no connection with the lookups.
    let flooder = crate::common::https_client(&crate::common::cert_pem(&s.data_dir, &s.config));
    let login_url = s.url("/v1/session/login");
    let flood_started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..ATTEMPTS {
        let (c, url) = (flooder.clone(), login_url.clone());
        flood.spawn(async move {
            c.post(url)
                .json(&serde_json::json!({"login": format!("nobody{i}"), "password": "wrong password"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let flood = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while let Some(r) = flood.join_next().await {
            statuses.push(r.unwrap());
        }
        (statuses, flood_started.elapsed())
    });
    let mut latencies = Vec::new();
    let mut i = 0_u32;
    while !flood.is_finished() && latencies.len() < 2000 {
        i += 1;
        let started = std::time::Instant::now();
        let r = s
            .client
            .get(s.url(&format!("/v1/key/check/198.51.100.{}", i % 250 + 1)))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "a lookup failed during the flood"
        );
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (statuses, flood_took) = flood.await.unwrap();
    assert_eq!(statuses.len(), ATTEMPTS);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "every flood attempt is a failed sign-in: {statuses:?}"
    );
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let max = *latencies.last().unwrap();
    eprintln!(
        "login flood of {ATTEMPTS}: {flood_took:?}; {} lookups meanwhile, p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 5,
        "lookups must keep answering during the flood (only {} did)",
        latencies.len()
    );
    assert!(
        p99 < flood_took / 4,
        "lookup p99 {p99:?} must stay well below the flood's {flood_took:?}"
    );
}

/// Sensor batches are held until committed, so those in flight share a
/// budget (`--sensor-batch-memory-mib`) taken before their bodies are
/// read. Two uploads that declare 1 MiB each and stall hold all of a
/// 2 MiB budget: a third batch waits, gets 503 with `Retry-After`, and is
/// taken once the stalled uploads have timed out.
#[tokio::test]
async fn sensor_batches_wait_for_memory_held_by_batches_in_flight() {
    let s = TestServer::start_with(&[
        "--sensor-batch-memory-mib",
        "2",
        "--request-timeout",
        "2s",
        "--idle-timeout",
        "30s",
    ])
    .await;
    let (_, token) = s.key_and_sensor("tier_4").await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = raw::tls_connect(s.addr, s.tls_config()).await.unwrap();
        let head = format!(
            "POST /v1/sensor/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{{",
            1 << 20
        );
        raw::send(&mut c, head.as_bytes()).await;
        stalled.push(c);
    }
    // Both are being read before the next batch asks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.send_events(&token, one_event(&s, "81.0.0.7")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = crate::common::retry_after(&r);
    assert!(retry >= 1);
    let body = r.text().await.unwrap();
    assert!(body.contains("too many sensor batches"), "{body}");
    // The stalled uploads end at the request deadline; their room is free.
    for mut c in stalled {
        assert_eq!(raw::read_response(&mut c).await.0, 408);
    }
    let r = s.send_events(&token, one_event(&s, "81.0.0.8")).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    still_serving(&s).await;
}

fn one_event(s: &TestServer, ip: &str) -> String {
    let line = serde_json::json!({"ts": s.clock.now().0, "src_ip": ip, "protocol": "ssh", "session_id": "s1", "kind": "auth", "username": "root"});
    format!("{line}\n")
}
