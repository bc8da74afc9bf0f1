//! fail2ban with sikker's report action: the real fail2ban-server, in the
//! foreground with a private configuration directory, watches a synthetic
//! auth log in two jails whose bans go through
//! `packaging/fail2ban/action.d/sikker.conf` only (no firewall), and the
//! reports must arrive in sikker with the category mapped from the jail.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{TestServer, eventually};
use crate::packaging::need_tool;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Kills fail2ban-server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_ips_are_reported_with_the_jails_category() {
    let f2b = need_tool("fail2ban-server", "fail2ban");
    need_tool("curl", "curl");
    let s = TestServer::start().await;
    let key = s
        .handle()
        .services
        .create_api_key("fail2ban", "free", None)
        .await
        .unwrap()
        .0;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let log = dir.path().join("auth.log");
    let ca = s.data_dir.join("tls/self-signed.crt");
    write(&log, "");
    write(
        &conf.join("fail2ban.conf"),
        &format!(
            "[Definition]\nloglevel = INFO\nlogtarget = STDERR\nsocket = {0}/f2b.sock\npidfile = {0}/f2b.pid\ndbfile = :memory:\n",
            dir.path().display()
        ),
    );
    write(
        &conf.join("filter.d/synthetic.conf"),
        "[Definition]\nfailregex = ^ auth failure for \\S+ from <HOST>$\n              ^ bad request from <HOST>$\n",
    );
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/fail2ban/action.d/sikker.conf"
        ),
        {
            std::fs::create_dir_all(conf.join("action.d")).unwrap();
            conf.join("action.d/sikker.conf")
        },
    )
    .unwrap();
    let action = format!(
        "sikker[sikker_url=\"{}\", sikker_key=\"{key}\", sikker_curl_opts=\"--cacert {}\"]",
        s.url("").trim_end_matches('/'),
        ca.display()
    );
    // The sshd jail sees "auth failure", the botsearch jail "bad request".
    write(
        &conf.join("jail.conf"),
        &format!(
            "[DEFAULT]\nbackend = polling\nlogpath = {log}\nfilter = synthetic\nmaxretry = 3\nfindtime = 600\nbantime = 600\n\
             datepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\nbanaction = \naction = {action}\n\n\
             [sshd]\nenabled = true\nfailregex = ^ auth failure for \\S+ from <HOST>$\n\n\
             [nginx-botsearch]\nenabled = true\nfailregex = ^ bad request from <HOST>$\n",
            log = log.display(),
        ),
    );
    let child = Command::new(&f2b)
        .args(["-f", "-x", "-c"])
        .arg(&conf)
        .args(["--logtarget", "STDERR", "--loglevel", "INFO"])
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("f2b.err")).unwrap())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let f2b_log = || std::fs::read_to_string(dir.path().join("f2b.err")).unwrap_or_default();
    // Wait until both jails are watching, then append the failures.
    eventually("fail2ban jails started", || async {
        let l = f2b_log();
        (l.contains("Jail 'sshd' started") && l.contains("Jail 'nginx-botsearch' started"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // fail2ban compares the line's time with its own clock (real time).
    // (it runs with TZ=UTC, so UTC stamps read right).
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    for i in 0..4 {
        writeln!(f, "{stamp} auth failure for user{i} from 1.2.3.4").unwrap();
        writeln!(f, "{stamp} bad request from 5.6.7.8").unwrap();
        // Below the threshold: must not be banned or reported.
        if i < 1 {
            writeln!(f, "{stamp} auth failure for root from 9.9.9.9").unwrap();
        }
    }
    f.flush().unwrap();
    drop(f);

    let check = |ip: &'static str| {
        let s = &s;
        let key = key.clone();
        async move {
            let r = s
                .client
                .get(s.url(&format!("/v1/key/check/{ip}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    for (ip, category, protocol) in [
        ("1.2.3.4", "brute_force", Some("ssh")),
        ("5.6.7.8", "bad_bot", Some("http")),
    ] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let v = loop {
            let v = check(ip).await;
            if v["found"] == true {
                break v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no report of {ip} arrived; fail2ban log:\n{}",
                f2b_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let cats: Vec<&str> = v["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cats, [category], "{ip}: {v}\nfail2ban log:\n{}", f2b_log());
        assert_eq!(v["totalReports"], 1, "{ip}: one ban, one report");
        if let Some(p) = protocol {
            assert_eq!(v["protocols"][0]["protocol"], p, "{v}");
        }
    }
    let log_text = f2b_log();
    assert!(log_text.contains("[sshd] Ban 1.2.3.4"), "{log_text}");
    assert!(!log_text.contains("Ban 9.9.9.9"), "{log_text}");
    assert_eq!(check("9.9.9.9").await["found"], false);
    assert!(!log_text.contains("ERROR"), "an action failed: {log_text}");
}

/// `sikker admin import fail2ban` reads the ban history from the database
/// of a running fail2ban-server: each ban one report dated when it
/// happened, with the jail's category; bans older than the retention and
/// unusable addresses are reported by row, the rest imported.
#[tokio::test(flavor = "multi_thread")]
async fn the_ban_history_is_imported_from_fail2bans_database() {
    let f2b = need_tool("fail2ban-server", "fail2ban");
    let client = need_tool("fail2ban-client", "fail2ban");
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let db = dir.path().join("fail2ban.sqlite3");
    let sock = dir.path().join("f2b.sock");
    write(&dir.path().join("auth.log"), "");
    write(
        &conf.join("fail2ban.conf"),
        &format!(
            "[Definition]\nloglevel = INFO\nlogtarget = STDERR\nsocket = {sock}\npidfile = {0}/f2b.pid\ndbfile = {db}\n",
            dir.path().display(),
            sock = sock.display(),
            db = db.display(),
        ),
    );
    write(
        &conf.join("filter.d/synthetic.conf"),
        "[Definition]\nfailregex = ^ auth failure from <HOST>$\n",
    );
    write(
        &conf.join("jail.conf"),
        &format!(
            "[DEFAULT]\nbackend = polling\nlogpath = {}/auth.log\nfilter = synthetic\nbantime = 600\nbanaction = \naction = \n\n\
             [sshd]\nenabled = true\n\n[nginx-botsearch]\nenabled = true\n",
            dir.path().display()
        ),
    );
    let child = Command::new(&f2b)
        .args(["-f", "-x", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("f2b.err")).unwrap())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let f2b_log = || std::fs::read_to_string(dir.path().join("f2b.err")).unwrap_or_default();
    eventually("fail2ban jails started", || async {
        let l = f2b_log();
        (l.contains("Jail 'sshd' started") && l.contains("Jail 'nginx-botsearch' started"))
            .then_some(())
    })
    .await;
    let ban = |jail: &str, ips: &[&str]| {
        let out = Command::new(&client)
            .arg("-s")
            .arg(&sock)
            .args(["set", jail, "banip"])
            .args(ips)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}\n{}", f2b_log());
    };
    ban("sshd", &["1.2.3.5", "1.2.3.6", "10.1.2.3"]);
    ban("nginx-botsearch", &["5.6.7.9"]);
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    // One ban from before the 30-day retention, as fail2ban keeps them
    // (its dbpurgeage can be longer than sikker's retention).
    let py = format!(
        "import sqlite3; c = sqlite3.connect({db:?}); c.execute(\"INSERT INTO bans (jail, ip, timeofban, bantime, bancount, data) VALUES ('sshd', '1.2.3.7', {old}, 600, 1, '{{}}')\"); c.commit()",
        db = db.display().to_string(),
        old = now_s - 40 * 86_400,
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    s.clock
        .set(sikker::domain::UnixMillis(now_s * 1000 + 60_000));

    let out = Command::new(env!("CARGO_BIN_EXE_sikker"))
        .args(["admin", "--data-dir"])
        .arg(&s.data_dir)
        .args(["import", "fail2ban"])
        .arg(&db)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["bans"], 5, "{v}");
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["rejected"], 2, "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("older than the 30-day report retention"),
        "{errors}"
    );
    assert!(errors.contains("Private, reserved"), "{errors}");

    let key = s
        .handle()
        .services
        .create_api_key("reader", "free", None)
        .await
        .unwrap()
        .0;
    let check = |ip: &'static str| {
        let (s, key) = (&s, key.clone());
        async move {
            s.client
                .get(s.url(&format!("/v1/key/check/{ip}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    for (ip, category, protocol) in [
        ("1.2.3.5", "brute_force", "ssh"),
        ("1.2.3.6", "brute_force", "ssh"),
        ("5.6.7.9", "bad_bot", "http"),
    ] {
        let v = check(ip).await;
        assert_eq!(v["found"], true, "{ip}: {v}");
        assert_eq!(v["categories"][0]["name"], category, "{ip}: {v}");
        assert_eq!(v["protocols"][0]["protocol"], protocol, "{ip}: {v}");
        // Dated when fail2ban banned it, not when it was imported.
        let first = time::OffsetDateTime::parse(
            v["firstSeen"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp();
        // (fail2ban rounds the ban time to the nearest second, so it can
        // be one second past `now_s`; the import ran a minute later.)
        assert!(
            (now_s - 120..=now_s + 1).contains(&first),
            "{ip}: banned near {now_s}, imported at {}: {v}",
            now_s + 60
        );
    }
    assert_eq!(check("1.2.3.7").await["found"], false);

    // Another program's SQLite file is refused, and nothing changes.
    let other = dir.path().join("other.sqlite3");
    let py = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('CREATE TABLE t (x)'); c.commit()",
        other.display().to_string()
    );
    assert!(
        Command::new("python3")
            .args(["-c", &py])
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sikker"))
        .args(["admin", "--data-dir"])
        .arg(&s.data_dir)
        .args(["import", "fail2ban"])
        .arg(&other)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not fail2ban's"), "{err}");
}
