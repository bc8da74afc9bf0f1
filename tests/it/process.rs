//! The compiled `sikker` binary as a process: listening line, systemd
//! readiness, healthcheck, admin over the socket and offline, single
//! instance, SIGHUP, SIGTERM → exit 0, and a log free of raw IPs and secrets.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

struct Proc {
    child: Child,
    stdout_lines: Vec<String>,
    port: u16,
}

fn spawn_serve(data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let line = line.trim_end().to_owned();
    assert!(
        line.starts_with("listening on https://127.0.0.1:"),
        "first line was {line:?}"
    );
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    let mut stdout_lines = vec![line];
    // Collect the rest of stdout in the background (the bootstrap line).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    if let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
        stdout_lines.push(l);
    }
    Proc {
        child,
        stdout_lines,
        port,
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not exit in time; stderr:\n{}",
                stderr_of(child)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

async fn https(data: &Path) -> reqwest::Client {
    crate::common::https_client(&std::fs::read(data.join("tls/self-signed.crt")).unwrap())
}

#[tokio::test]
async fn serve_binary_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut p = spawn_serve(
        &data,
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("SIKKER_BOGUS_OPTION", "1"),
        ],
    );
    assert!(
        p.stdout_lines.iter().any(|l| l.contains("/setup#token=")),
        "first start prints a bootstrap link: {:?}",
        p.stdout_lines
    );
    let mut buf = [0_u8; 256];
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");

    let client = https(&data).await;
    let r = client
        .get(format!("https://127.0.0.1:{}/healthz", p.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let hc = Command::new(BIN)
        .args(["healthcheck", "--listen", &format!("0.0.0.0:{}", p.port)])
        .output()
        .unwrap();
    assert!(
        hc.status.success(),
        "{}",
        String::from_utf8_lossy(&hc.stderr)
    );

    let ping = Command::new(BIN)
        .args(["admin", "--data-dir", data.to_str().unwrap(), "ping"])
        .output()
        .unwrap();
    assert!(ping.status.success());
    assert!(String::from_utf8_lossy(&ping.stdout).starts_with("pong: server running"));
    let ping = Command::new(BIN)
        .args([
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "ping",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert_eq!(v["mode"], "server");

    let second = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    signal(&p.child, rustix::process::Signal::HUP);
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"RELOADING=1");
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    let r = client
        .get(format!("https://127.0.0.1:{}/healthz", p.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still serving after SIGHUP");

    signal(&p.child, rustix::process::Signal::TERM);
    let st = wait_exit(&mut p.child, Duration::from_secs(15)).await;
    assert_eq!(st.code(), Some(0), "SIGTERM must exit 0");
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    let err = stderr_of(&mut p.child);
    assert!(
        err.contains("SIKKER_BOGUS_OPTION"),
        "unknown env var is warned about: {err}"
    );

    let hc = Command::new(BIN)
        .args(["healthcheck", "--listen", &format!("127.0.0.1:{}", p.port)])
        .output()
        .unwrap();
    assert!(
        !hc.status.success(),
        "healthcheck fails when nothing listens"
    );

    let ping = Command::new(BIN)
        .args(["admin", "--data-dir", data.to_str().unwrap(), "ping"])
        .output()
        .unwrap();
    assert!(ping.status.success());
    assert!(String::from_utf8_lossy(&ping.stdout).starts_with("database OK, server not running"));

    // SIGINT also shuts down cleanly, and a restart prints no bootstrap link.
    let mut p = spawn_serve(&data, &[], &[]);
    assert_eq!(p.stdout_lines.len(), 1, "{:?}", p.stdout_lines);
    signal(&p.child, rustix::process::Signal::INT);
    assert_eq!(
        wait_exit(&mut p.child, Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
}

#[tokio::test]
async fn logs_hold_no_raw_ips_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = spawn_serve(
        &data,
        &["--trusted-proxy", "127.0.0.0/8", "--log", "debug"],
        &[],
    );
    let token = p
        .stdout_lines
        .iter()
        .find_map(|l| l.split("token=").nth(1))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let client = https(&data).await;
    let base = format!("https://127.0.0.1:{}", p.port);
    let secrets = [
        "sk_free_5ecretva1ue0123456789",
        "Bearer-c0ffee-token-value",
        "refresh-cookie-s3cret",
        "hunter2-password",
    ];
    let paths = [
        "/v1/key/check/203.0.113.77?key=sk_free_5ecretva1ue0123456789&verbose=true",
        "/v1/key/username/rootuser-private",
        "/v1/key/email/alice.private@example.com",
        "/ip/198.51.100.99",
        "/%ff",
    ];
    for path in paths {
        let _ = client
            .get(format!("{base}{path}"))
            .header("authorization", "Bearer Bearer-c0ffee-token-value")
            .header(
                "cookie",
                "refresh_token=refresh-cookie-s3cret; access_token=x",
            )
            .header("x-forwarded-for", "192.0.2.200")
            .header("x-password", "hunter2-password")
            .send()
            .await
            .unwrap();
    }
    // Authenticated requests that reach the handlers.
    let out = Command::new(BIN)
        .args([
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "key",
            "create",
            "--name",
            "logtest",
            "--json",
        ])
        .output()
        .unwrap();
    let key = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .get(format!("{base}/v1/key/check/203.0.113.77"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{base}/v1/key/report"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"ip": "45.45.45.45", "category": "spam", "comment": "from alice.private@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/v1/key/username/rootuser-private"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _ = client.get(format!("{base}/healthz")).send().await.unwrap();
    signal(&p.child, rustix::process::Signal::TERM);
    assert_eq!(
        wait_exit(&mut p.child, Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
    let log = stderr_of(&mut p.child);
    assert!(
        log.contains("route=\"/healthz\""),
        "access log lines are present: {log}"
    );
    assert!(
        log.contains("client=192.0.2.0/24"),
        "forwarded client is logged truncated: {log}"
    );
    assert!(
        log.contains("route=\"/v1/key/check/{ip}\""),
        "templates, not paths: {log}"
    );
    for needle in [
        key.as_str(),
        "45.45.45.45",
        "203.0.113.77",
        "198.51.100.99",
        "192.0.2.200",
        "127.0.0.1",
        "rootuser-private",
        "alice.private@example.com",
        token.as_str(),
    ]
    .into_iter()
    .chain(secrets)
    {
        assert!(!log.contains(needle), "log contains {needle:?}:\n{log}");
    }
}

#[tokio::test]
async fn admin_commands_work_offline_and_online() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let admin = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["admin", "--data-dir", d])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = admin(&["ping"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no data dir"), "{err}");
    // Create the data dir with a first start, then work offline.
    let mut p = spawn_serve(&data, &[], &[]);
    signal(&p.child, rustix::process::Signal::TERM);
    assert_eq!(
        wait_exit(&mut p.child, Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
    let (code, out, _) = admin(&["key", "create", "--name", "fail2ban"]);
    assert_eq!(code, Some(0));
    let key = out.lines().last().unwrap().to_owned();
    assert!(key.starts_with("sk_free_") && key.len() > 20, "{out}");
    let (code, _, err) = admin(&["key", "create", "--name", "x", "--tier", "Bad Tier"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("tier"), "{err}");
    let (code, out, _) = admin(&[
        "whitelist",
        "add",
        "66.249.64.0/19",
        "--reason",
        "Googlebot",
    ]);
    assert_eq!(code, Some(0), "{out}");

    // Online: the same commands go over the admin socket.
    let mut p = spawn_serve(&data, &[], &[]);
    let (_, out, _) = admin(&["key", "list"]);
    assert!(
        out.contains("fail2ban") && !out.contains(&key),
        "keys are listed, never shown again: {out}"
    );
    let (_, out, _) = admin(&["whitelist", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["net"], "66.249.64.0/19");
    let client = https(&data).await;
    let r = client
        .get(format!(
            "https://127.0.0.1:{}/v1/key/check/66.249.66.1",
            p.port
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["isWhitelisted"], true);
    let (code, out, _) = admin(&["sweep", "--json"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"indicators\""), "{out}");
    let (code, _, err) = admin(&["key", "revoke", "999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = admin(&["key", "revoke", "1"]);
    assert_eq!(code, Some(0));
    let r = client
        .get(format!("https://127.0.0.1:{}/v1/key/check/1.1.1.1", p.port))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "revoked over the socket takes effect at once"
    );
    signal(&p.child, rustix::process::Signal::TERM);
    assert_eq!(
        wait_exit(&mut p.child, Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
}
