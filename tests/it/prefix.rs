//! Evidence quality: IPv6 evidence aggregated per prefix (`--ipv6-prefix`)
//! and shown beside an address's own verdict, and repeat offenders
//! recognised from a compact history that expires itself — all on a
//! manual clock.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sikker::domain::{IpKey, UnixMillis};

use crate::common::{T0, TestServer};

const DAY: i64 = 86_400_000;
const BIN: &str = env!("CARGO_BIN_EXE_sikker");
const COL: &str = "/taxii2/collections/sikker-threat-intel";

struct Api {
    s: TestServer,
    key: String,
}

impl Api {
    async fn start(flags: &[&str]) -> Self {
        let s = TestServer::start_with(flags).await;
        let key = s
            .handle()
            .services
            .create_api_key("prefix", "free", None)
            .await
            .unwrap()
            .0;
        Self { s, key }
    }

    async fn report(&self, ip: &str, category: &str) {
        let r = self
            .s
            .client
            .post(self.s.url("/v1/key/report"))
            .bearer_auth(&self.key)
            .json(&json!({"ip": ip, "category": category}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    async fn check(&self, ip: &str) -> Value {
        let r = self
            .s
            .client
            .get(self.s.url(&format!("/v1/key/check/{ip}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn stix(&self, ip: &str) -> Value {
        let r = self
            .s
            .client
            .get(self.s.url(&format!("{COL}/objects/{ip}/")))
            .bearer_auth(&self.key)
            .header("accept", "application/taxii+json;version=2.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "indicator")
            .cloned()
            .unwrap()
    }

    fn at(&self, days: i64) {
        self.s.clock.set(UnixMillis(T0.0 + days * DAY));
    }

    async fn sweep(&self) -> sikker::service::sweep::SweepReport {
        let now = self.s.clock.now();
        self.s.handle().services.sweep(now, 100).await.unwrap()
    }

    async fn history(&self, ip: &str) -> Option<sikker::domain::repeat::History> {
        let ip: IpKey = ip.parse().unwrap();
        self.s
            .handle()
            .services
            .store
            .read(move |txn| sikker::store::repeat::get(txn, ip))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn addresses_of_one_64_share_a_prefix_verdict_that_expires_with_its_newest_member() {
    let a = Api::start(&[]).await;
    a.report("2a01:4f8:c0c:1::1", "brute_force").await;
    a.at(10);
    a.report("2a01:4f8:c0c:1::2", "brute_force").await;
    a.report("2a01:4f8:c0c:1::3", "web_exploit").await;
    // One address of another /64: below the two-address threshold.
    a.report("2a01:4f8:c0c:2::1", "brute_force").await;

    // A fourth address of the /64, with no evidence of its own.
    let v = a.check("2a01:4f8:c0c:1::4").await;
    assert_eq!(v["found"], false, "{v}");
    assert_eq!(
        v["confidenceLevel"], 0,
        "its own score is not inflated: {v}"
    );
    let p = &v["prefix"];
    assert_eq!(p["network"], "2a01:4f8:c0c:1::/64", "{v}");
    assert_eq!(p["prefixLength"], 64);
    assert_eq!(p["distinctAddresses"], 3);
    assert_eq!(p["totalReports"], 3);
    let cats: Vec<&str> = p["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cats, ["brute_force", "web_exploit"]);
    let prefix_score = p["confidenceLevel"].as_u64().unwrap();
    assert!(
        prefix_score > 0 && prefix_score <= 38,
        "one account only: capped at 38, got {prefix_score}"
    );
    assert_eq!(p["lastSeen"], UnixMillis(T0.0 + 10 * DAY).rfc3339());
    assert_eq!(p["validUntil"], UnixMillis(T0.0 + 40 * DAY).rfc3339());
    // A member sees the same prefix verdict next to its own.
    let m = a.check("2a01:4f8:c0c:1::2").await;
    assert_eq!(m["found"], true);
    assert_eq!(m["prefix"], v["prefix"]);
    assert!(m["confidenceLevel"].as_u64().unwrap() > 0);

    // A different /64 is not affected, nor is IPv4.
    for other in ["2a01:4f8:c0c:2::9", "2a01:4f8:c0c:3::1", "81.2.69.160"] {
        let o = a.check(other).await;
        assert_eq!(o["prefix"], Value::Null, "{other}: {o}");
    }

    // Day 30: the first member has expired — not counted even before a sweep.
    a.at(30);
    let v = a.check("2a01:4f8:c0c:1::4").await;
    assert_eq!(v["prefix"]["distinctAddresses"], 2, "{v}");
    assert_eq!(v["prefix"]["totalReports"], 2);
    let cats = v["prefix"]["categories"].as_array().unwrap().len();
    assert_eq!(cats, 2, "both categories still have a live member");
    a.at(31);
    a.sweep().await;
    assert_eq!(
        a.check("2a01:4f8:c0c:1::4").await["prefix"]["distinctAddresses"],
        2
    );
    // Day 40: the newest members expire and the aggregate with them.
    a.at(40);
    assert_eq!(a.check("2a01:4f8:c0c:1::4").await["prefix"], Value::Null);
    a.at(41);
    let r = a.sweep().await;
    assert_eq!(r.indicators, 3);
    assert_eq!(a.s.handle().services.indicator_count(), 0);
    assert_eq!(a.check("2a01:4f8:c0c:1::4").await["prefix"], Value::Null);
}

#[tokio::test]
async fn a_48_prefix_groups_what_a_64_keeps_apart() {
    let ips = ["2a01:4f8:c0c:1::1", "2a01:4f8:c0c:2::1"];
    let wide = Api::start(&["--ipv6-prefix", "48"]).await;
    let narrow = Api::start(&[]).await;
    for a in [&wide, &narrow] {
        for ip in ips {
            a.report(ip, "port_scan").await;
        }
    }
    let v = wide.check("2a01:4f8:c0c:3::1").await;
    assert_eq!(v["prefix"]["network"], "2a01:4f8:c0c::/48", "{v}");
    assert_eq!(v["prefix"]["prefixLength"], 48);
    assert_eq!(v["prefix"]["distinctAddresses"], 2);
    assert_eq!(
        wide.check("2a01:4f8:c0d::1").await["prefix"],
        Value::Null,
        "outside the /48"
    );
    for probe in ["2a01:4f8:c0c:3::1", "2a01:4f8:c0c:1::2"] {
        assert_eq!(
            narrow.check(probe).await["prefix"],
            Value::Null,
            "a /64 holds one reported address only: {probe}"
        );
    }
    assert_eq!(
        wide.s.handle().services.ipv6_prefix_len().unwrap().get(),
        48
    );
}

fn config_check(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("config").arg("check").args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn bad_prefix_lengths_are_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "/0", "31", "129", "/129", "300", "sixty-four"] {
        let out = config_check(&["--ipv6-prefix", bad], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            err.contains("--ipv6-prefix") && err.contains("SIKKER_IPV6_PREFIX"),
            "{bad}: {err}"
        );
    }
    let out = config_check(&["--ipv6-prefix", "129"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/32 to /128"));
    let out = config_check(&[], &[("SIKKER_IPV6_PREFIX", "0")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIKKER_IPV6_PREFIX"));
    let file = dir.path().join("sikker.toml");
    std::fs::write(&file, "ipv6_prefix = 129\n").unwrap();
    let out = config_check(&["--config", file.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ipv6"), "{err}");
    for (good, len) in [("32", 32), ("/48", 48), ("64", 64), ("128", 128)] {
        let out = config_check(&["--ipv6-prefix", good], &[]);
        assert!(
            out.status.success(),
            "{good}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("\nipv6_prefix = {len}\n")), "{text}");
    }
    let out = config_check(&[], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nipv6_prefix = 64\n"));
}

#[tokio::test]
async fn repeat_offenders_score_higher_for_longer_and_their_history_expires() {
    let a = Api::start(&[]).await;
    let (back, first, gone) = ("81.2.69.10", "81.2.69.11", "81.2.69.12");
    a.report(back, "brute_force").await;
    a.report(gone, "brute_force").await;
    // Day 31: both indicators expired; the sweep notes it in the history.
    a.at(31);
    let r = a.sweep().await;
    assert_eq!(r.indicators, 2);
    for ip in [back, gone] {
        let h = a.history(ip).await.unwrap();
        assert_eq!(h.expiries, 1, "{ip}");
        assert_eq!(h.last_expiry_day, UnixMillis(T0.0 + 30 * DAY).day());
    }
    assert_eq!(a.check(back).await["found"], false);

    // The same evidence on a returning IP and on a first-timer.
    a.report(back, "brute_force").await;
    a.report(first, "brute_force").await;
    assert!(a.history(first).await.is_none());
    let b = a.check(back).await;
    let f = a.check(first).await;
    let (bs, fs) = (
        b["confidenceLevel"].as_u64().unwrap(),
        f["confidenceLevel"].as_u64().unwrap(),
    );
    assert!(bs > fs, "repeat offender {bs} vs first-timer {fs}");
    let factors = |v: &Value| -> Vec<String> {
        v["scoreExplanation"]["factors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(factors(&b).contains(&"repeat_offender".to_owned()), "{b}");
    assert!(!factors(&f).contains(&"repeat_offender".to_owned()));
    let now = UnixMillis(T0.0 + 31 * DAY);
    assert_eq!(f["validUntil"], UnixMillis(now.0 + 30 * DAY).rfc3339());
    assert_eq!(b["validUntil"], UnixMillis(now.0 + 45 * DAY).rfc3339());
    // TAXII says the same.
    let (bx, fx) = (a.stix(back).await, a.stix(first).await);
    assert_eq!(fx["valid_until"], "2026-05-21T12:00:00.000Z");
    assert_eq!(bx["valid_until"], "2026-06-05T12:00:00.000Z");
    assert!(bx["confidence"].as_u64() > fx["confidence"].as_u64());
    assert_eq!(bx["confidence"].as_u64(), Some(bs));
    // The block list serves the boosted score too.
    let scores =
        a.s.handle()
            .services
            .scores_in_range("81.2.69.0".parse().unwrap(), "81.2.69.255".parse().unwrap());
    let scores = scores.unwrap();
    assert_eq!(scores.len(), 2);
    assert_eq!(u64::from(scores[0].confidence), bs);
    assert_eq!(u64::from(scores[1].confidence), fs);

    // The history of an IP that never came back is kept through its last
    // expiry day + 30 days, then purged; a returning IP keeps its history
    // while its indicator lives.
    a.at(60);
    assert_eq!(a.sweep().await.repeat_histories, 0);
    assert!(a.history(gone).await.is_some());
    a.at(61);
    let r = a.sweep().await;
    assert_eq!(r.repeat_histories, 1);
    assert!(a.history(gone).await.is_none());
    assert_eq!(a.history(back).await.unwrap().expiries, 1);
    // Day 62: the returning IP expires a second time.
    a.at(62);
    assert_eq!(a.sweep().await.indicators, 2);
    assert_eq!(a.history(back).await.unwrap().expiries, 2);
    assert_eq!(a.history(first).await.unwrap().expiries, 1);
    a.at(92);
    assert_eq!(a.sweep().await.repeat_histories, 2);
    assert!(a.history(back).await.is_none());
    let counts =
        a.s.handle()
            .services
            .store
            .read(sikker::store::repeat::count)
            .await
            .unwrap();
    assert_eq!(counts, 0);
    let check = a.s.handle().services.verify_index().await.unwrap();
    assert_eq!(check.mismatch_count, 0);
}
