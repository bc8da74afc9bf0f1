//! `sikker bouncer` against the real server: ETag/304 on the block list
//! (free of quota), the dry-run's delta output across polls, and the real
//! `nft` filled inside a private network namespace.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::packaging::need_tool;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

async fn report(s: &TestServer, key: &str, ip: &str) {
    let r = s
        .client
        .post(s.url("/v1/key/report"))
        .bearer_auth(key)
        .json(&json!({"ip": ip, "category": "brute_force", "protocol": "ssh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn blacklist_used(s: &TestServer, key: &str) -> u64 {
    let v: Value = s
        .client
        .get(s.url("/v1/key/status"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["quotas"]["blacklist"]["used"].as_u64().unwrap()
}

async fn server() -> (TestServer, String) {
    let s = TestServer::start().await;
    let key = s
        .handle()
        .services
        .create_api_key("bouncer", "free", None)
        .await
        .unwrap()
        .0;
    report(&s, &key, "80.0.0.1").await;
    report(&s, &key, "2a02:1::1").await;
    (s, key)
}

#[tokio::test]
async fn blacklist_etag_gives_304_without_charging() {
    let (s, key) = server().await;
    let get = |tag: Option<&str>| {
        let mut r = s
            .client
            .get(s.url("/v1/key/blacklist?plaintext=true&scoreMinimum=1"))
            .bearer_auth(&key);
        if let Some(t) = tag {
            r = r.header("if-none-match", t);
        }
        r.send()
    };
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    assert_eq!(r.text().await.unwrap().lines().count(), 2);
    let used = blacklist_used(&s, &key).await;
    assert_eq!(used, 2);

    let r = get(Some(&tag)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(blacklist_used(&s, &key).await, used, "a 304 costs nothing");
    // Weak form and lists of tags match too; another tag does not.
    let r = get(Some(&format!("\"x\", W/{tag}"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get(Some("\"other\"")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A new address changes the tag.
    report(&s, &key, "80.0.0.2").await;
    let r = get(Some(&tag)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), tag);
    // Other formats of the same list have their own tags.
    let r = s
        .client
        .get(s.url("/v1/key/blacklist?format=nft&scoreMinimum=1"))
        .bearer_auth(&key)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

struct Bouncer {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bouncer(s: &TestServer, key: &str, extra: &[&str], path: Option<&str>) -> Bouncer {
    let mut c = Command::new(BIN);
    c.args(["bouncer", "--url", s.url("").trim_end_matches('/')])
        .arg("--ca-file")
        .arg(s.data_dir.join("tls/self-signed.crt"))
        .args(["--score-minimum", "1", "--interval", "300ms"])
        .args(extra)
        .env("SIKKER_BOUNCER_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let mut child = c.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Bouncer { child, lines }
}

impl Bouncer {
    /// Lines up to and including the next poll summary that satisfies `want`,
    /// then the script lines that follow it.
    fn poll_where(&self, want: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .expect("bouncer printed the expected poll");
            if l.starts_with("# ") && want(&l) {
                let mut script = Vec::new();
                while let Ok(n) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if n.starts_with("# ") {
                        break;
                    }
                    script.push(n);
                }
                return (l, script);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_full_set_then_only_changes() {
    let (s, key) = server().await;
    let b = bouncer(&s, &key, &["--dry-run"], None);
    let (summary, script) = tokio::task::block_in_place(|| b.poll_where(|_| true));
    assert_eq!(summary, "# 2 listed, 2 added, 0 removed");
    assert_eq!(
        script,
        [
            "add table inet sikker",
            "add set inet sikker sikker_block4 { type ipv4_addr; }",
            "flush set inet sikker sikker_block4",
            "add set inet sikker sikker_block6 { type ipv6_addr; }",
            "flush set inet sikker sikker_block6",
            "add element inet sikker sikker_block4 { 80.0.0.1 }",
            "add element inet sikker sikker_block6 { 2a02:1::1 }",
        ]
    );
    // Unchanged list: a 304, no commands, no quota.
    let used = blacklist_used(&s, &key).await;
    tokio::task::block_in_place(|| b.poll_where(|l| l.contains("304")));
    tokio::task::block_in_place(|| b.poll_where(|l| l.contains("304")));
    assert_eq!(blacklist_used(&s, &key).await, used);

    // One more address: only it is added.
    report(&s, &key, "80.0.0.2").await;
    let (summary, script) = tokio::task::block_in_place(|| b.poll_where(|l| !l.contains("304")));
    assert_eq!(summary, "# 3 listed, 1 added, 0 removed");
    assert_eq!(
        script,
        ["add element inet sikker sikker_block4 { 80.0.0.2 }"]
    );

    // Everything ages out of the list: all three are removed.
    s.clock.advance(Duration::from_secs(40 * 86_400));
    let (summary, script) = tokio::task::block_in_place(|| b.poll_where(|l| !l.contains("304")));
    assert_eq!(summary, "# 0 listed, 0 added, 3 removed");
    assert_eq!(
        script,
        [
            "delete element inet sikker sikker_block4 { 80.0.0.1, 80.0.0.2 }",
            "delete element inet sikker sikker_block6 { 2a02:1::1 }",
        ]
    );
}

#[tokio::test]
async fn bad_options_and_a_bad_key_fail_clearly() {
    let out = Command::new(BIN)
        .args([
            "bouncer",
            "--url",
            "https://x",
            "--key",
            "k",
            "--set",
            "a;b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--set"));
    let (s, _) = server().await;
    let out = tokio::task::spawn_blocking({
        let url = s.url("");
        let ca = s.data_dir.join("tls/self-signed.crt");
        move || {
            Command::new(BIN)
                .args([
                    "bouncer",
                    "--once",
                    "--dry-run",
                    "--url",
                    url.trim_end_matches('/'),
                ])
                .arg("--ca-file")
                .arg(ca)
                .env("SIKKER_BOUNCER_KEY", "sk_free_wrong")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
}

/// The real `nft` in a network namespace of its own: the bouncer stays in
/// the test's namespace (to reach the server on loopback) and finds an `nft`
/// on its PATH that enters the private namespace.
#[tokio::test(flavor = "multi_thread")]
async fn applies_deltas_to_real_nft_in_a_network_namespace() {
    let nft = need_tool("nft", "nftables");
    let unshare = need_tool("unshare", "util-linux");
    let nsenter = need_tool("nsenter", "util-linux");
    let mut holder = Command::new(&unshare)
        .args(["-n", "sleep", "120"])
        .spawn()
        .unwrap();
    let pid = holder.id();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _holder = Kill(&mut holder);
    let in_ns = |args: &[&str]| {
        Command::new(&nsenter)
            .args(["-t", &pid.to_string(), "-n"])
            .arg(&nft)
            .args(args)
            .output()
            .unwrap()
    };
    // Wait until the holder is inside its own namespace.
    let probe = (0..50).find(|_| {
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if its.is_some() && its != own {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(probe.is_some(), "unshare -n did not start");
    let first = in_ns(&["list", "ruleset"]);
    if !first.status.success() {
        let err = String::from_utf8_lossy(&first.stderr);
        assert!(
            std::env::var_os("CI").is_none(),
            "nft cannot run in a network namespace here: {err}"
        );
        eprintln!("skipped: nft does not work in a network namespace here: {err}");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("nft");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -t {pid} -n {} \"$@\"\n",
            nsenter.display(),
            nft.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (s, key) = server().await;
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let b = bouncer(
        &s,
        &key,
        &["--table", "sikkertest", "--set", "blk"],
        Some(&path),
    );
    let elements = |set: &str| -> String {
        let out = in_ns(&["list", "set", "inet", "sikkertest", set]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    tokio::task::block_in_place(|| {
        wait_for("first sync", &|| {
            elements("blk4").contains("80.0.0.1") && elements("blk6").contains("2a02:1::1")
        })
    });
    report(&s, &key, "80.0.0.2").await;
    tokio::task::block_in_place(|| {
        wait_for("delta add", &|| elements("blk4").contains("80.0.0.2"))
    });
    assert!(elements("blk4").contains("80.0.0.1"));
    s.clock.advance(Duration::from_secs(40 * 86_400));
    tokio::task::block_in_place(|| {
        wait_for("delta remove", &|| {
            let v4 = elements("blk4");
            !v4.contains("80.0.0.") && !elements("blk6").contains("2a02")
        })
    });
    drop(b);
}
