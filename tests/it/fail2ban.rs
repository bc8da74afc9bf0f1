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
