//! Crash consistency: the compiled server is `kill -9`ed at seeded random
//! points while reports, sensor batches and account changes run
//! concurrently; after each restart every acknowledged write must be there
//! and the in-memory index must equal the database (`sikker admin verify`).
//!
//! `SIKKER_CRASH_SEED` and `SIKKER_CRASH_ROUNDS` change the seed and the
//! number of rounds (default 5) for longer runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sikker");
const PW0: &str = "Harbour-Kettle-4471";
const PW1: &str = "Granite-Meadow-9032";

/// A small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Server {
    child: Child,
    base: String,
}

/// A test that fails leaves no server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: &Path, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--registration",
            "open",
            // Checks sign in from many forwarded addresses so the
            // per-source lockout does not refuse the deliberate failures.
            "--trusted-proxy",
            "127.0.0.0/8",
            // The writers run flat out from one address; this test is about
            // crashes, not throttling.
            "--rate-limit-per-ip",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .trim_end()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
    Server {
        child,
        base: format!("https://127.0.0.1:{port}"),
    }
}

/// An unlimited API key and a sensor token, both named `name`.
fn key_and_sensor(data: &Path, name: &str) -> (String, String) {
    let (ok, out) = admin(
        data,
        &[
            "key",
            "create",
            "--name",
            name,
            "--tier",
            "unlimited",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let key = serde_json::from_str::<Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out) = admin(data, &["sensor", "add", name, "--json"]);
    assert!(ok, "{out}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (key, token)
}

fn admin(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["admin", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    // Standard output only on success: warnings on standard error (such as
    // an unknown SIKKER_* variable in the environment) are not the answer.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        (true, stdout)
    } else {
        (false, stdout + &String::from_utf8_lossy(&out.stderr))
    }
}

/// What the server acknowledged with a success status.
#[derive(Default)]
struct Acked {
    /// Reported IPs.
    reports: Vec<String>,
    /// Source IPs of accepted sensor events, and how many were accepted.
    sensor_ips: Vec<String>,
    sensor_events: u64,
    /// Username → the password that must work now, and one that must not
    /// (when a change was acknowledged). A change in flight at the kill
    /// leaves either password valid.
    accounts: BTreeMap<String, Account>,
}

#[derive(Clone, Debug)]
struct Account {
    must: Option<&'static str>,
    must_not: Option<&'static str>,
}

/// Unique public addresses: reports from 45.0.0.0/8, sensor events from 46.0.0.0/8.
fn ip(prefix: u8, n: u32) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

async fn reporter(
    c: reqwest::Client,
    base: String,
    key: String,
    next: Arc<AtomicU32>,
    acked: Arc<Mutex<Acked>>,
) {
    loop {
        let addr = ip(45, next.fetch_add(1, Ordering::Relaxed));
        let r = c
            .post(format!("{base}/v1/key/report"))
            .bearer_auth(&key)
            .json(&json!({"ip": addr, "category": "brute_force", "protocol": "ssh"}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => acked.lock().unwrap().reports.push(addr),
            Ok(r) => panic!("report refused while the server was up: {}", r.status()),
            Err(_) => return,
        }
    }
}

async fn sensor(
    c: reqwest::Client,
    base: String,
    token: String,
    next: Arc<AtomicU32>,
    acked: Arc<Mutex<Acked>>,
) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let ips: Vec<String> = (0..5)
            .map(|_| ip(46, next.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let body: String = ips
            .iter()
            .map(|a| {
                format!(
                    "{}\n",
                    json!({"ts": now, "src_ip": a, "protocol": "ssh", "dst_port": 22,
                           "session_id": format!("s-{a}"), "kind": "auth",
                           "username": "root"})
                )
            })
            .collect();
        let r = c
            .post(format!("{base}/v1/sensor/events"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => {
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let accepted = v["accepted"].as_u64().unwrap();
                assert_eq!(accepted, 5, "{v}");
                let mut a = acked.lock().unwrap();
                a.sensor_events += accepted;
                a.sensor_ips.extend(ips);
            }
            Ok(r) => panic!("batch refused while the server was up: {}", r.status()),
            Err(_) => return,
        }
    }
}

fn cookies(r: &reqwest::Response) -> (String, Option<String>) {
    let mut jar = Vec::new();
    let mut csrf = None;
    for v in r.headers().get_all("set-cookie") {
        let line = v.to_str().unwrap();
        let kv = line.split(';').next().unwrap();
        if let Some((k, val)) = kv.split_once('=')
            && !val.is_empty()
        {
            if k == "csrf_token" {
                csrf = Some(val.to_owned());
            }
            if k != "refresh_token" {
                jar.push(kv.to_owned());
            }
        }
    }
    (jar.join("; "), csrf)
}

/// Registers accounts and changes their passwords, one after another.
async fn accounts(c: reqwest::Client, base: String, tag: String, acked: Arc<Mutex<Acked>>) {
    for i in 0.. {
        let name = format!("u{tag}x{i}");
        let r = c
            .post(format!("{base}/v1/account/register"))
            .json(
                &json!({"username": name, "email": format!("{name}@example.org"),
                          "password": PW0, "first_name": "Kari", "last_name": "Nordmann",
                          "country": "NO", "age_confirmed": true}),
            )
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::CREATED => {}
            Ok(r) => panic!("register refused: {} {:?}", r.status(), r.text().await),
            Err(_) => return,
        }
        acked.lock().unwrap().accounts.insert(
            name.clone(),
            Account {
                must: Some(PW0),
                must_not: None,
            },
        );
        let Ok(r) = c
            .post(format!("{base}/v1/session/login"))
            .json(&json!({"login": name, "password": PW0}))
            .send()
            .await
        else {
            return;
        };
        assert_eq!(r.status(), StatusCode::OK);
        let (jar, csrf) = cookies(&r);
        // From here the change may or may not land: either password is fine.
        acked.lock().unwrap().accounts.insert(
            name.clone(),
            Account {
                must: None,
                must_not: None,
            },
        );
        let r = c
            .post(format!("{base}/v1/account/password"))
            .header("cookie", jar)
            .header("x-csrf-token", csrf.unwrap())
            .json(&json!({"current_password": PW0, "new_password": PW1}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => {}
            Ok(r) => panic!(
                "password change refused: {} {:?}",
                r.status(),
                r.text().await
            ),
            Err(_) => return,
        }
        acked.lock().unwrap().accounts.insert(
            name,
            Account {
                must: Some(PW1),
                must_not: Some(PW0),
            },
        );
    }
}

static LOGIN_SOURCE: AtomicU32 = AtomicU32::new(1);

async fn login(c: &reqwest::Client, base: &str, name: &str, pw: &str) -> StatusCode {
    let from = ip(47, LOGIN_SOURCE.fetch_add(1, Ordering::Relaxed));
    c.post(format!("{base}/v1/session/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"login": name, "password": pw}))
        .send()
        .await
        .unwrap()
        .status()
}

fn verify(data: &Path) -> Value {
    let (ok, out) = admin(data, &["verify", "--json"]);
    assert!(ok, "index differs from the database: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stored"], v["indexed"], "{v}");
    assert_eq!(v["mismatch_count"], 0, "{v}");
    v
}

/// Proves every acknowledged write is present on the restarted server.
async fn check(c: &reqwest::Client, s: &Server, data: &Path, key: &str, acked: &Acked) {
    let found = |addr: String| {
        let c = c.clone();
        let url = format!("{}/v1/key/check/{addr}", s.base);
        let key = key.to_owned();
        async move {
            let v: Value = c
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["found"], true, "acknowledged write lost for {addr}: {v}");
        }
    };
    for chunk in acked.reports.chunks(16).chain(acked.sensor_ips.chunks(16)) {
        futures_util::future::join_all(chunk.iter().cloned().map(found)).await;
    }
    // The AbuseIPDB dialect sees the raw reports too (a sample: the latest).
    for addr in acked.reports.iter().rev().take(10) {
        let v: Value = c
            .get(format!("{}/api/v2/check", s.base))
            .header("Key", key)
            .header("Accept", "application/json")
            .query(&[("ipAddress", addr.as_str()), ("maxAgeInDays", "30")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["data"]["totalReports"], 1, "{addr}: {v}");
    }
    let (ok, out) = admin(data, &["sensor", "list", "--json"]);
    assert!(ok, "{out}");
    let sensors: Value = serde_json::from_str(&out).unwrap();
    let events = sensors[0]["events"].as_u64().unwrap();
    assert!(
        events >= acked.sensor_events,
        "sensor counts {events} events, {} were acknowledged",
        acked.sensor_events
    );
    for (name, a) in &acked.accounts {
        if let Some(pw) = a.must {
            assert_eq!(
                login(c, &s.base, name, pw).await,
                StatusCode::OK,
                "{name} with {pw}"
            );
        } else {
            let old = login(c, &s.base, name, PW0).await;
            let new = login(c, &s.base, name, PW1).await;
            assert!(
                old == StatusCode::OK || new == StatusCode::OK,
                "{name}: {old} {new}"
            );
        }
        if let Some(pw) = a.must_not {
            assert_eq!(
                login(c, &s.base, name, pw).await,
                StatusCode::UNAUTHORIZED,
                "{name} old password"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let seed: u64 = std::env::var("SIKKER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_C0DE);
    let rounds: u32 = std::env::var("SIKKER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut s = spawn(&data, &log);
    let (key, token) = key_and_sensor(&data, "crash");
    let c = crate::common::https_client(&std::fs::read(data.join("tls/self-signed.crt")).unwrap());
    let acked = Arc::new(Mutex::new(Acked::default()));
    let report_ips = Arc::new(AtomicU32::new(1));
    let sensor_ips = Arc::new(AtomicU32::new(1));
    let mut verified = 0;
    for round in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..3 {
            tasks.spawn(reporter(
                c.clone(),
                s.base.clone(),
                key.clone(),
                report_ips.clone(),
                acked.clone(),
            ));
        }
        for _ in 0..2 {
            tasks.spawn(sensor(
                c.clone(),
                s.base.clone(),
                token.clone(),
                sensor_ips.clone(),
                acked.clone(),
            ));
        }
        tasks.spawn(accounts(
            c.clone(),
            s.base.clone(),
            format!("{round}"),
            acked.clone(),
        ));
        // The index equals the database while writers run, too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = tokio::task::spawn_blocking({
            let data = data.clone();
            move || verify(&data)
        })
        .await
        .unwrap();
        verified += v["stored"].as_u64().unwrap();
        let kill_at = Duration::from_millis(100 + rng.below(1200));
        tokio::time::sleep(kill_at).await;
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        while let Some(r) = tasks.join_next().await {
            r.unwrap(); // a panic in a writer is a refused write while up
        }
        s = spawn(&data, &log);
        let c =
            crate::common::https_client(&std::fs::read(data.join("tls/self-signed.crt")).unwrap());
        let snapshot = {
            let a = acked.lock().unwrap();
            Acked {
                reports: a.reports.clone(),
                sensor_ips: a.sensor_ips.clone(),
                sensor_events: a.sensor_events,
                accounts: a.accounts.clone(),
            }
        };
        check(&c, &s, &data, &key, &snapshot).await;
        let v = verify(&data);
        verified += v["stored"].as_u64().unwrap();
        eprintln!(
            "round {round}: killed after {kill_at:?}; acknowledged so far: {} reports, {} sensor events, {} accounts; index = database ({} indicators)",
            snapshot.reports.len(),
            snapshot.sensor_events,
            snapshot.accounts.len(),
            v["stored"]
        );
    }
    let a = acked.lock().unwrap();
    assert!(!a.reports.is_empty() && a.sensor_events > 0 && !a.accounts.is_empty());
    eprintln!(
        "crash harness: seed {seed:#x}, {rounds} rounds, {} reports + {} sensor events + {} accounts acknowledged and re-checked after every kill, {verified} index entries compared, {:?}",
        a.reports.len(),
        a.sensor_events,
        a.accounts.len(),
        started.elapsed()
    );
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

/// Sensor batches alone: their commits skip the fsync and the ingest log
/// makes them durable, so a kill finds acknowledged batches that only the
/// log holds, and the next start writes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sensor_batches_survive_kill_9_through_the_ingest_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut s = spawn(&data, &log);
    let (key, token) = key_and_sensor(&data, "log");
    let c = crate::common::https_client(&std::fs::read(data.join("tls/self-signed.crt")).unwrap());
    let acked = Arc::new(Mutex::new(Acked::default()));
    let next = Arc::new(AtomicU32::new(1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2 {
        tasks.spawn(sensor(
            c.clone(),
            s.base.clone(),
            token.clone(),
            next.clone(),
            acked.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().sensor_events < 100 {
        assert!(Instant::now() < deadline, "no sensor batch acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_log = data.join("ingest.log");
    let logged = std::fs::metadata(&ingest_log).unwrap().len();
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(
        logged > 0,
        "acknowledged batches went through the ingest log"
    );
    // What the log held at the kill (a checkpoint may have emptied it
    // since the size above was read, then only later batches are in it).
    let held = std::fs::metadata(&ingest_log).unwrap().len();
    s = spawn(&data, &log);
    let snapshot = {
        let a = acked.lock().unwrap();
        Acked {
            sensor_ips: a.sensor_ips.clone(),
            sensor_events: a.sensor_events,
            ..Acked::default()
        }
    };
    check(&c, &s, &data, &key, &snapshot).await;
    // Batches in flight at the kill may be there too, unanswered.
    let v = verify(&data);
    assert!(
        v["stored"].as_u64().unwrap() >= snapshot.sensor_ips.len() as u64,
        "{v}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    if held > 0 {
        assert!(
            text.contains("written again from the ingest log"),
            "{held} bytes of log, no replay: {text}"
        );
    }
    // Replayed, then emptied: a clean stop and start replays nothing.
    assert_eq!(std::fs::metadata(&ingest_log).unwrap().len(), 0);
    // Once batches stop coming, a checkpoint empties the log within
    // `CHECKPOINT_EVERY` (a log replayed long after would meet swept
    // de-duplication keys).
    // Two batches at least: the second follows the first closely, so it
    // is no checkpoint and stays in the log.
    let last = Arc::new(Mutex::new(Acked::default()));
    let more = tokio::spawn(sensor(
        c.clone(),
        s.base.clone(),
        token.clone(),
        next.clone(),
        last.clone(),
    ));
    while last.lock().unwrap().sensor_events < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    more.abort();
    assert!(std::fs::metadata(&ingest_log).unwrap().len() > 0);
    let deadline = Instant::now() + sikker::service::group_commit::CHECKPOINT_EVERY * 3;
    while std::fs::metadata(&ingest_log).unwrap().len() > 0 {
        assert!(
            Instant::now() < deadline,
            "the ingest log stayed after ingest paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} sensor events acknowledged; {held} bytes of ingest log at the kill",
        snapshot.sensor_events
    );
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}
