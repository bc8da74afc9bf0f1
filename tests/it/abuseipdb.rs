//! The AbuseIPDB APIv2 surface against the real server: every endpoint, the
//! `Key` header, upstream's error shapes and statuses, parameters from every
//! source, the 15-minute duplicate rule, data shared with `/v1`, quota
//! headers, fail2ban's exact curl command and a Python client library.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sikker::store::reports::RawReport;

use crate::common::{T0, TestServer};

const AUTH_FAILED: &str = "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.";
const INVALID_IP: &str =
    "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).";

struct Api {
    s: TestServer,
    key: String,
}

async fn new_key(s: &TestServer, tier: &str) -> String {
    s.handle()
        .services
        .create_api_key("abuseipdb-test", tier, None)
        .await
        .unwrap()
        .0
}

impl Api {
    async fn start() -> Self {
        Self::with(TestServer::start().await).await
    }

    async fn with(s: TestServer) -> Self {
        let key = new_key(&s, "free").await;
        Self { s, key }
    }

    fn url(&self, path: &str) -> String {
        self.s.url(&format!("/api/v2/{path}"))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.s
            .client
            .get(self.url(path))
            .header("Key", &self.key)
            .header("Accept", "application/json")
            .query(query)
            .send()
            .await
            .unwrap()
    }

    async fn report(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.s
            .client
            .post(self.url("report"))
            .header("Key", &self.key)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn raw_reports(&self) -> Vec<RawReport> {
        self.s
            .handle()
            .services
            .store
            .read(sikker::store::reports::all)
            .await
            .unwrap()
    }

    async fn check(&self, ip: &str) -> Value {
        let r = self
            .get("check", &[("ipAddress", ip), ("verbose", "")])
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["data"].clone()
    }
}

async fn indicator(s: &TestServer, ip: &str) -> Option<sikker::domain::Indicator> {
    let ip = sikker::domain::IpKey::from_ip(ip.parse().unwrap());
    s.handle()
        .services
        .store
        .read(move |t| sikker::store::indicators::get(t, ip))
        .await
        .unwrap()
}

fn key_ip(ip: &str) -> u128 {
    sikker::domain::IpKey::from_ip(ip.parse().unwrap()).0
}

/// Asserts the upstream error shape and returns the first error object.
async fn error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    let e = v["errors"][0].clone();
    assert_eq!(e["status"], json!(status), "status is an integer: {v}");
    assert!(e["detail"].is_string(), "{v}");
    e
}

fn is_atom(s: &Value) -> bool {
    let s = s.as_str().unwrap_or_default();
    let b = s.as_bytes();
    s.len() == 25
        && s.ends_with("+00:00")
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

#[tokio::test]
async fn authentication_failures_are_401_in_upstream_words() {
    let a = Api::start().await;
    let (_, revoked) = {
        let (k, rec) =
            a.s.handle()
                .services
                .create_api_key("gone", "free", None)
                .await
                .unwrap();
        a.s.handle().services.revoke_api_key(rec.id).await.unwrap();
        (rec, k)
    };
    let c = &a.s.client;
    let cases = [
        ("GET", "check?ipAddress=1.2.3.4"),
        ("GET", "reports?ipAddress=1.2.3.4"),
        ("GET", "blacklist"),
        ("POST", "report"),
        ("GET", "check-block?network=1.2.3.0/24"),
        ("POST", "bulk-report"),
        ("DELETE", "clear-address?ipAddress=1.2.3.4"),
    ];
    for (method, path) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for key in [None, Some("sk_free_wrong"), Some(revoked.as_str())] {
            let mut rb = c.request(m.clone(), a.url(path));
            if let Some(k) = key {
                rb = rb.header("Key", k);
            }
            let e = error(rb.send().await.unwrap(), 401).await;
            assert_eq!(e["detail"], AUTH_FAILED, "{method} {path} {key:?}");
            assert!(e.get("source").is_none());
        }
    }
    // The legacy `key` parameter works; the header name is case-insensitive.
    let r = c
        .get(a.url("check"))
        .query(&[("ipAddress", "1.2.3.4"), ("key", a.key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(a.url("check?ipAddress=1.2.3.4"))
        .header("key", &a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The native surface does not accept the `Key` header, nor /api/v2 a bearer token.
    let r = c
        .get(a.url("check?ipAddress=1.2.3.4"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown path and wrong method speak the same dialect.
    let e = error(a.get("nothing", &[]).await, 404).await;
    assert!(e["detail"].is_string());
    let r = c
        .get(a.url("report"))
        .header("Key", &a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    error(r, 405).await;
}

#[tokio::test]
async fn check_shapes_and_bad_input() {
    let a = Api::start().await;
    let r = a
        .report(&[
            ("ip", "81.2.69.45"),
            ("categories", "18,22"),
            ("comment", "sshd: x"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = a.get("check", &[("ipAddress", "81.2.69.45")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    for k in [
        "ipAddress",
        "isPublic",
        "ipVersion",
        "isWhitelisted",
        "abuseConfidenceScore",
        "countryCode",
        "usageType",
        "isp",
        "domain",
        "hostnames",
        "isTor",
        "totalReports",
        "numDistinctUsers",
        "lastReportedAt",
    ] {
        assert!(d.get(k).is_some(), "missing {k}: {d}");
    }
    assert!(d.get("countryName").is_none() && d.get("reports").is_none());
    assert_eq!(d["ipAddress"], "81.2.69.45");
    assert_eq!(d["isPublic"], true);
    assert_eq!(d["ipVersion"], 4);
    assert_eq!(d["isWhitelisted"], false);
    // From the embedded GeoIP tables (81.2.69.0/24: Andrews & Arnold, GB).
    assert_eq!(d["countryCode"], "GB");
    assert_eq!(d["isp"], "Andrews & Arnold Ltd");
    assert_eq!(d["hostnames"], json!([]));
    assert_eq!(d["isTor"], false);
    assert_eq!(d["totalReports"], 1);
    assert_eq!(d["numDistinctUsers"], 1);
    assert!(is_atom(&d["lastReportedAt"]), "{}", d["lastReportedAt"]);
    assert!(d["abuseConfidenceScore"].as_u64().unwrap() > 0);

    let d = a.check("81.2.69.45").await;
    assert!(d.get("countryName").is_some());
    let rep = &d["reports"][0];
    assert_eq!(rep["categories"], json!([18, 22]));
    assert_eq!(rep["comment"], "sshd: x");
    assert!(is_atom(&rep["reportedAt"]));
    let id = rep["reporterId"].as_u64().unwrap();
    assert!(id > 0 && id < (1 << 53));
    assert_eq!(rep["reporterCountryCode"], Value::Null);
    for off in ["false", "0"] {
        let r = a
            .get("check", &[("ipAddress", "81.2.69.45"), ("verbose", off)])
            .await;
        assert!(
            r.json::<Value>().await.unwrap()["data"]
                .get("reports")
                .is_none()
        );
    }

    // IPv6 (URL-encoded by the client) and IPv4-mapped IPv6.
    let d = a.check("2001:DB8:0:0::1").await;
    assert_eq!(d["ipAddress"], "2001:db8::1");
    assert_eq!(d["ipVersion"], 6);
    assert_eq!(d["isPublic"], false);
    assert_eq!(d["usageType"], "Reserved");
    assert_eq!(d["totalReports"], 0);
    assert_eq!(d["lastReportedAt"], Value::Null);
    let d = a.check("::ffff:81.2.69.45").await;
    assert_eq!(d["ipAddress"], "81.2.69.45");
    assert_eq!(d["totalReports"], 1);

    for bad in ["", "1.2.3", "81.2.69.256", "abc", "1.2.3.4/24"] {
        let e = error(a.get("check", &[("ipAddress", bad)]).await, 422).await;
        assert_eq!(e["source"]["parameter"], "ipAddress", "{bad}");
        if !bad.is_empty() {
            assert_eq!(e["detail"], INVALID_IP);
        }
    }
    for bad in ["0", "366", "abc"] {
        let r = a
            .get("check", &[("ipAddress", "1.2.3.4"), ("maxAgeInDays", bad)])
            .await;
        let e = error(r, 422).await;
        assert_eq!(
            e["detail"],
            "The max age in days must be between 1 and 365."
        );
        assert_eq!(e["source"]["parameter"], "maxAgeInDays");
    }
    // A report older than the window is not counted in it.
    a.s.clock.advance(Duration::from_secs(2 * 86_400));
    let r = a
        .get(
            "check",
            &[("ipAddress", "81.2.69.45"), ("maxAgeInDays", "1")],
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["totalReports"], 0);
}

#[tokio::test]
async fn report_from_every_parameter_source() {
    let a = Api::start().await;
    let c = &a.s.client;
    // urlencoded body (fail2ban, curl)
    let r = a
        .report(&[("ip", "89.160.20.1"), ("categories", "18,22")])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["ipAddress"], "89.160.20.1");
    let score = d["abuseConfidenceScore"].as_u64().unwrap();
    assert!(score > 0);
    assert_eq!(a.check("89.160.20.1").await["abuseConfidenceScore"], score);
    // query string (upstream's Python example)
    let r = c
        .post(a.url("report"))
        .header("Key", &a.key)
        .query(&[
            ("ip", "89.160.20.2"),
            ("categories", "14"),
            ("comment", "q"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // multipart (kristuff/abuseipdb)
    let form = Form::new()
        .text("ip", "89.160.20.3")
        .text("categories", "21")
        .text("comment", "multi");
    let r = c
        .post(a.url("report"))
        .header("Key", &a.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // JSON (the official client): array, single number, string
    for (ip, cats) in [
        ("89.160.20.4", json!([18, 22])),
        ("89.160.20.5", json!(21)),
        ("89.160.20.6", json!("4,15")),
    ] {
        let r = c
            .post(a.url("report"))
            .header("Key", &a.key)
            .json(&json!({"ip": ip, "categories": cats, "timestamp": "2026-03-21T11:00:00+00:00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{ip}");
    }
    // PHP-style repeated keys
    let r = c
        .post(a.url("report"))
        .header("Key", &a.key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("ip=89.160.20.7&categories%5B%5D=18&categories%5B%5D=5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let mut raws = a.raw_reports().await;
    raws.sort_by_key(|r| r.ip);
    let ids: Vec<Vec<u8>> = raws
        .iter()
        .map(|r| r.abuseipdb_categories.clone())
        .collect();
    assert_eq!(
        ids,
        [
            vec![18, 22],
            vec![14],
            vec![21],
            vec![18, 22],
            vec![21],
            vec![4, 15],
            vec![18, 5]
        ]
    );
    assert_eq!(raws[1].comment.as_deref(), Some("q"));
    assert_eq!(raws[2].comment.as_deref(), Some("multi"));
    // 18,22 → brute_force over ssh; 4,15 → ddos and other; 18,5 → ftp.
    assert_eq!(raws[0].protocol.as_deref(), Some("ssh"));
    assert_eq!(raws[5].categories(), [3, 16]);
    assert_eq!(raws[6].protocol.as_deref(), Some("ftp"));
    assert_eq!(raws[3].at_ms, T0.0 - 3_600_000, "timestamp honoured");
    let d = a.check("89.160.20.4").await;
    assert_eq!(d["reports"][0]["reportedAt"], "2026-03-21T11:00:00+00:00");
}

#[tokio::test]
async fn bad_reports_change_nothing() {
    let a = Api::start().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("categories", "18")], "ip"),
        (vec![("ip", "89.160.20.300"), ("categories", "18")], "ip"),
        (vec![("ip", "10.0.0.1"), ("categories", "18")], "ip"),
        (vec![("ip", "89.160.20.1")], "categories"),
        (
            vec![("ip", "89.160.20.1"), ("categories", "0")],
            "categories",
        ),
        (
            vec![("ip", "89.160.20.1"), ("categories", "24")],
            "categories",
        ),
        (
            vec![("ip", "89.160.20.1"), ("categories", "abc")],
            "categories",
        ),
        (
            vec![("ip", "89.160.20.1"), ("categories", "18,99")],
            "categories",
        ),
        (
            vec![
                ("ip", "89.160.20.1"),
                ("categories", "18"),
                ("timestamp", "soon"),
            ],
            "timestamp",
        ),
        (
            vec![
                ("ip", "89.160.20.1"),
                ("categories", "18"),
                ("timestamp", "2026-03-21T13:00:00+00:00"),
            ],
            "timestamp",
        ),
        (
            vec![
                ("ip", "89.160.20.1"),
                ("categories", "18"),
                ("timestamp", "2026-01-01T00:00:00+00:00"),
            ],
            "timestamp",
        ),
    ];
    for (form, param) in cases {
        let e = error(a.report(&form).await, 422).await;
        assert_eq!(e["source"]["parameter"], param, "{form:?}");
    }
    let e = error(
        a.report(&[("ip", "1.2.3"), ("categories", "18")]).await,
        422,
    )
    .await;
    assert_eq!(e["detail"], INVALID_IP);
    let r =
        a.s.client
            .post(a.url("report"))
            .header("Key", &a.key)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
    error(r, 422).await;
    assert!(a.raw_reports().await.is_empty());
    assert_eq!(a.s.handle().services.indicator_count(), 0);
    let key_id =
        a.s.handle()
            .services
            .authenticate_api_key(Some(&a.key))
            .unwrap()
            .key_id;
    assert_eq!(
        a.s.handle()
            .services
            .usage_today(key_id, sikker::service::quotas::Bucket::Reports)
            .await
            .unwrap(),
        0
    );

    // Over-long comments are cut to 1,024 bytes (never refused), lossily decoded.
    let long = "é".repeat(700);
    let r = a
        .report(&[
            ("ip", "89.160.20.9"),
            ("categories", "18"),
            ("comment", &long),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let c = a.raw_reports().await[0].comment.clone().unwrap();
    assert_eq!(c.len(), 1024);
}

#[tokio::test]
async fn duplicate_within_15_minutes_is_429_and_writes_nothing() {
    let a = Api::start().await;
    let form = [("ip", "89.160.20.10"), ("categories", "18")];
    assert_eq!(a.report(&form).await.status(), StatusCode::OK);
    let before = indicator(&a.s, "89.160.20.10").await;
    a.s.clock.advance(Duration::from_secs(14 * 60));
    let r = a.report(&form).await;
    let remaining: u64 = r.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining, 999, "the refused duplicate is not charged");
    let retry = crate::common::retry_after(&r);
    assert_eq!(retry, 60);
    let e = error(r, 429).await;
    assert_eq!(
        e["detail"],
        "You can only report the same IP address (`89.160.20.10`) once in 15 minutes."
    );
    assert_eq!(e["source"]["parameter"], "ip");
    assert_eq!(a.raw_reports().await.len(), 1);
    let after = indicator(&a.s, "89.160.20.10").await;
    assert_eq!(before, after, "indicator untouched");
    // Another account may report it; the first one again after 15 minutes.
    let other = new_key(&a.s, "free").await;
    let r =
        a.s.client
            .post(a.url("report"))
            .header("Key", &other)
            .form(&form)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    a.s.clock.advance(Duration::from_secs(60));
    assert_eq!(a.report(&form).await.status(), StatusCode::OK);
    assert_eq!(a.raw_reports().await.len(), 3);
    // SikkerAPI's own report endpoint keeps accepting and counting once.
    let r =
        a.s.client
            .post(a.s.url("/v1/key/report"))
            .bearer_auth(&a.key)
            .json(&json!({"ip": "89.160.20.10", "category": "brute_force"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["counted"], false);
}

#[tokio::test]
async fn data_is_shared_with_the_sikker_surface() {
    let a = Api::start().await;
    // Native report, seen on /api/v2 with upstream category ids.
    let r =
        a.s.client
            .post(a.s.url("/v1/key/report"))
            .bearer_auth(&a.key)
            .json(&json!({"ip": "8.8.4.4", "category": "sql_injection", "comment": "native"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d = a.check("8.8.4.4").await;
    assert_eq!(d["totalReports"], 1);
    assert_eq!(d["reports"][0]["categories"], json!([16, 21]));
    assert_eq!(d["reports"][0]["comment"], "native");
    let v1: Value =
        a.s.client
            .get(a.s.url("/v1/key/check/8.8.4.4"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(v1["confidenceLevel"], d["abuseConfidenceScore"]);
    // AbuseIPDB report, seen natively.
    a.report(&[("ip", "8.8.8.8"), ("categories", "21")]).await;
    let v1: Value =
        a.s.client
            .get(a.s.url("/v1/key/check/8.8.8.8"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(v1["confidenceLevel"].as_u64().unwrap() > 0, "{v1}");
    assert_eq!(
        v1["confidenceLevel"],
        a.check("8.8.8.8").await["abuseConfidenceScore"]
    );
    // Reporter ids: stable per reporter and IP, different across IPs, never the account.
    let other = new_key(&a.s, "free").await;
    a.s.client
        .post(a.url("report"))
        .header("Key", &other)
        .form(&[("ip", "8.8.8.8"), ("categories", "18")])
        .send()
        .await
        .unwrap();
    a.s.clock.advance(Duration::from_secs(16 * 60));
    a.report(&[("ip", "8.8.8.8"), ("categories", "14")]).await;
    let reps = a.check("8.8.8.8").await["reports"].clone();
    let ids: Vec<u64> = reps
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reporterId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[2], "same reporter, same id (newest first)");
    assert_ne!(ids[0], ids[1]);
    let elsewhere = a.check("8.8.4.4").await["reports"][0]["reporterId"]
        .as_u64()
        .unwrap();
    assert_ne!(elsewhere, ids[0], "not linkable across addresses");
    let accounts: Vec<u64> = a.raw_reports().await.iter().map(|r| r.account).collect();
    assert!(ids.iter().all(|i| !accounts.contains(i)));
    assert_eq!(a.check("8.8.8.8").await["numDistinctUsers"], 2);
}

#[tokio::test]
async fn reports_are_paginated() {
    let a = Api::start().await;
    for i in 0..5 {
        a.report(&[
            ("ip", "89.160.20.20"),
            ("categories", "18"),
            ("comment", &format!("n{i}")),
        ])
        .await;
        a.s.clock.advance(Duration::from_secs(16 * 60));
    }
    let r = a
        .get(
            "reports",
            &[
                ("ipAddress", "89.160.20.20"),
                ("page", "2"),
                ("perPage", "2"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["total"], 5);
    assert_eq!(d["page"], 2);
    assert_eq!(d["count"], 2);
    assert_eq!(d["perPage"], 2);
    assert_eq!(d["lastPage"], 3);
    assert_eq!(d["results"][0]["comment"], "n2", "newest first");
    let next = d["nextPageUrl"].as_str().unwrap();
    assert!(
        next.ends_with("/api/v2/reports?ipAddress=89.160.20.20&maxAgeInDays=30&perPage=2&page=3"),
        "{next}"
    );
    assert!(d["previousPageUrl"].as_str().unwrap().ends_with("page=1"));
    assert!(!next.contains("key="));
    let d = a
        .get(
            "reports",
            &[
                ("ipAddress", "89.160.20.20"),
                ("page", "3"),
                ("perPage", "2"),
            ],
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone();
    assert_eq!(d["count"], 1);
    assert_eq!(d["nextPageUrl"], Value::Null);
    let d = a
        .get("reports", &[("ipAddress", "89.160.20.20")])
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone();
    assert_eq!(d["previousPageUrl"], Value::Null);
    assert_eq!(d["perPage"], 25);
    assert_eq!(d["lastPage"], 1);
    for (k, v) in [
        ("perPage", "0"),
        ("perPage", "101"),
        ("page", "0"),
        ("page", "x"),
    ] {
        let e = error(
            a.get("reports", &[("ipAddress", "89.160.20.20"), (k, v)])
                .await,
            422,
        )
        .await;
        assert_eq!(e["source"]["parameter"], k);
    }
}

#[tokio::test]
async fn blacklist_json_and_plaintext() {
    let a = Api::start().await;
    let mut keys = vec![a.key.clone()];
    for _ in 0..3 {
        keys.push(new_key(&a.s, "free").await);
    }
    // Accounts older than 30 days report with full weight.
    a.s.clock.advance(Duration::from_secs(31 * 86_400));
    // Several reporters make a high score; one report a low one.
    for k in &keys {
        for ip in ["8.8.8.8", "2606:4700::1111"] {
            let r =
                a.s.client
                    .post(a.url("report"))
                    .header("Key", k)
                    .form(&[("ip", ip), ("categories", "21,16,20")])
                    .send()
                    .await
                    .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    }
    for k in &keys[..2] {
        a.s.client
            .post(a.url("report"))
            .header("Key", k)
            .form(&[("ip", "9.9.9.9"), ("categories", "14")])
            .send()
            .await
            .unwrap();
    }
    let score = |ip: &str| {
        let a = &a;
        let ip = ip.to_owned();
        async move { a.check(&ip).await["abuseConfidenceScore"].as_u64().unwrap() }
    };
    let high = score("8.8.8.8").await;
    let low = score("9.9.9.9").await;
    assert!(high > low && low >= 25, "{high} {low}");

    let r = a.get("blacklist", &[("confidenceMinimum", "25")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    let v: Value = r.json().await.unwrap();
    assert!(is_atom(&v["meta"]["generatedAt"]));
    let data = v["data"].as_array().unwrap();
    let ips: Vec<&str> = data
        .iter()
        .map(|e| e["ipAddress"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 3);
    assert_eq!(ips[2], "9.9.9.9", "ordered by score");
    assert_eq!(data[2]["countryCode"], "US");
    assert_eq!(data[2]["abuseConfidenceScore"], low);
    let e = &data[0];
    assert_eq!(
        e.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "abuseConfidenceScore",
            "countryCode",
            "ipAddress",
            "lastReportedAt"
        ]
    );
    assert!(is_atom(&e["lastReportedAt"]));
    let low_s = low.to_string();
    let v: Value = a
        .get(
            "blacklist",
            &[
                ("confidenceMinimum", &*format!("{}", low + 1)),
                ("ipVersion", "6"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["ipAddress"], "2606:4700::1111");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let v: Value = a
        .get(
            "blacklist",
            &[("confidenceMinimum", &*low_s), ("limit", "1")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // Country filters use the embedded GeoIP tables: all three are in the US.
    let v: Value = a
        .get(
            "blacklist",
            &[("confidenceMinimum", "25"), ("onlyCountries", "US,CA")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["countryCode"] == "US")
    );
    let v: Value = a
        .get(
            "blacklist",
            &[("confidenceMinimum", "25"), ("onlyCountries", "DE")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!([]));
    let v: Value = a
        .get(
            "blacklist",
            &[("confidenceMinimum", "25"), ("exceptCountries[]", "US")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!([]));
    // Whitelisted addresses never appear.
    a.s.handle()
        .services
        .whitelist_add("9.9.9.0/24", "resolver")
        .await
        .unwrap();
    let r = a
        .get(
            "blacklist",
            &[("confidenceMinimum", "25"), ("plaintext", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(is_atom(&json!(
        r.headers()["x-generated-at"].to_str().unwrap()
    )));
    assert_eq!(r.text().await.unwrap(), "8.8.8.8\n2606:4700::1111\n");
    let r =
        a.s.client
            .get(a.url("blacklist?confidenceMinimum=25"))
            .header("Key", &a.key)
            .header("Accept", "text/plain")
            .send()
            .await
            .unwrap();
    assert!(r.headers().contains_key("x-generated-at"));
    assert_eq!(r.text().await.unwrap().lines().count(), 2);
    for (k, v) in [
        ("confidenceMinimum", "24"),
        ("confidenceMinimum", "101"),
        ("limit", "0"),
        ("ipVersion", "5"),
        ("onlyCountries", "USA"),
    ] {
        let e = error(a.get("blacklist", &[(k, v)]).await, 422).await;
        assert_eq!(e["source"]["parameter"], k);
    }
}

#[tokio::test]
async fn check_block_ranges_and_tier_caps() {
    let a = Api::start().await;
    a.report(&[("ip", "8.8.8.7"), ("categories", "18")]).await;
    a.report(&[("ip", "8.8.9.1"), ("categories", "18")]).await;
    let r = a.get("check-block", &[("network", "8.8.8.77/24")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["networkAddress"], "8.8.8.0");
    assert_eq!(d["netmask"], "255.255.255.0");
    assert_eq!(d["minAddress"], "8.8.8.1");
    assert_eq!(d["maxAddress"], "8.8.8.254");
    assert_eq!(d["numPossibleHosts"], 254);
    assert_eq!(d["addressSpaceDesc"], "Internet");
    let rep = d["reportedAddress"].as_array().unwrap();
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0]["ipAddress"], "8.8.8.7");
    assert_eq!(rep[0]["numReports"], 1);
    assert!(is_atom(&rep[0]["mostRecentReport"]));
    assert!(rep[0]["abuseConfidenceScore"].as_u64().unwrap() > 0);
    assert!(rep[0].get("countryCode").is_some());
    let d = a
        .get("check-block", &[("network", "127.0.0.1/32")])
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone();
    assert_eq!(
        (d["minAddress"].as_str(), d["numPossibleHosts"].as_u64()),
        (Some("127.0.0.1"), Some(1))
    );
    assert_eq!(d["addressSpaceDesc"], "Loopback");
    assert_eq!(d["reportedAddress"], json!([]));
    let d = a
        .get("check-block", &[("network", "2001:db8::/120")])
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone();
    assert_eq!(d["numPossibleHosts"], 256);
    // A free key: up to /24 and 30 days; wider asks for an upgrade (402).
    let e = error(
        a.get("check-block", &[("network", "8.8.0.0/23")]).await,
        402,
    )
    .await;
    assert_eq!(e["source"]["parameter"], "network");
    let e = error(
        a.get("check-block", &[("network", "2001:db8::/64")]).await,
        402,
    )
    .await;
    assert_eq!(e["source"]["parameter"], "network");
    let e = error(
        a.get(
            "check-block",
            &[("network", "8.8.8.0/24"), ("maxAgeInDays", "31")],
        )
        .await,
        402,
    )
    .await;
    assert_eq!(e["source"]["parameter"], "maxAgeInDays");
    for bad in ["8.8.8.0/33", "nonsense", ""] {
        let e = error(a.get("check-block", &[("network", bad)]).await, 422).await;
        assert_eq!(e["source"]["parameter"], "network");
    }
    // A bigger tier may ask for a /16.
    let premium = new_key(&a.s, "tier_3").await;
    let r =
        a.s.client
            .get(a.url("check-block?network=8.8.0.0%2F16&maxAgeInDays=365"))
            .header("Key", &premium)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["numPossibleHosts"], 65_534);
    assert_eq!(d["reportedAddress"].as_array().unwrap().len(), 2);
}

async fn bulk(a: &Api, csv: impl Into<Vec<u8>>) -> reqwest::Response {
    let form = Form::new().part("csv", Part::bytes(csv.into()).file_name("report.csv"));
    a.s.client
        .post(a.url("bulk-report"))
        .header("Key", &a.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn bulk_report_csv() {
    let a = Api::start().await;
    let long = "x".repeat(1500);
    let csv = format!(
        "IP,Categories,ReportDate,Comment\n\
         8.8.8.8,\"18,22\",2026-03-21T11:04:05+00:00,\"sshd: said \\\"hi\\\", then\nleft\"\n\
         2606:4700::1111,14,2026-03-21T11:10:00+00:00,\n\
         89.160.20.300,18,2026-03-21T11:11:00+00:00,\"bad address on purpose\"\n\
         9.9.9.9,24,,\n\
         8.8.8.8,18,,dup in file\n\
         1.1.1.1,4,2026-03-21T11:12:00Z,{long}\n\
         1.0.0.1,4,not a date,\n"
    );
    let r = bulk(&a, csv).await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["savedReports"], 3, "{d}");
    assert_eq!(
        d["invalidReports"],
        json!([
            {"error": "Invalid IP", "input": "89.160.20.300", "rowNumber": 4},
            {"error": "Invalid Category", "input": "9.9.9.9", "rowNumber": 5},
            {"error": "Duplicate IP", "input": "8.8.8.8", "rowNumber": 6},
            {"error": "Invalid ReportDate", "input": "1.0.0.1", "rowNumber": 8},
        ])
    );
    let raws = a.raw_reports().await;
    let c = raws.iter().find(|r| r.ip == key_ip("8.8.8.8")).unwrap();
    assert_eq!(c.comment.as_deref(), Some("sshd: said \"hi\", then\nleft"));
    assert_eq!(c.abuseipdb_categories, [18, 22]);
    let one = raws.iter().find(|r| r.abuseipdb_categories == [4]).unwrap();
    assert_eq!(one.comment.as_ref().unwrap().len(), 1024);
    // Within 15 minutes the same IP from the same account is a duplicate row.
    let r = bulk(
        &a,
        "IP,Categories,ReportDate,Comment\n8.8.8.8,18,2026-03-21T11:10:00+00:00,\n",
    )
    .await;
    let d = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(d["savedReports"], 0);
    assert_eq!(d["invalidReports"][0]["error"], "Duplicate IP");

    // Whole-file problems: 422 on `csv`, nothing written.
    let before = a.raw_reports().await.len();
    let mut many = String::from("IP,Categories,ReportDate,Comment\n");
    for i in 0..10_000 {
        many.push_str(&format!("10.{}.{}.1,18,,\n", i / 256, i % 256));
    }
    for bad in [
        "IP,Categories,ReportDate\n8.8.8.8,18,\n".to_owned(),
        "ip,categories,reportdate,comment\n8.8.8.8,18,,\n".to_owned(),
        "IP,Categories,ReportDate,Comment\n4.4.4.4,18,,\"never closed\n".to_owned(),
        String::new(),
        many,
    ] {
        let e = error(bulk(&a, bad).await, 422).await;
        assert_eq!(e["source"]["parameter"], "csv");
    }
    let r =
        a.s.client
            .post(a.url("bulk-report"))
            .header("Key", &a.key)
            .multipart(Form::new().text("other", "x"))
            .send()
            .await
            .unwrap();
    let e = error(r, 422).await;
    assert_eq!(e["source"]["parameter"], "csv");
    assert_eq!(a.raw_reports().await.len(), before);
}

#[tokio::test]
async fn clear_address_removes_only_own_reports_and_rescores() {
    let a = Api::start().await;
    let other = new_key(&a.s, "free").await;
    a.report(&[("ip", "8.8.8.8"), ("categories", "21,16")])
        .await;
    a.s.clock.advance(Duration::from_secs(16 * 60));
    a.report(&[("ip", "8.8.8.8"), ("categories", "18")]).await;
    a.report(&[("ip", "1.1.1.1"), ("categories", "18")]).await;
    a.s.client
        .post(a.url("report"))
        .header("Key", &other)
        .form(&[("ip", "8.8.8.8"), ("categories", "14")])
        .send()
        .await
        .unwrap();
    let before = a.check("8.8.8.8").await;
    assert_eq!(before["totalReports"], 3);
    // Via the query string (upstream docs).
    let r =
        a.s.client
            .delete(a.url("clear-address?ipAddress=8.8.8.8"))
            .header("Key", &a.key)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["numReportsDeleted"],
        2
    );
    let after = a.check("8.8.8.8").await;
    assert_eq!(after["totalReports"], 1);
    assert_eq!(after["numDistinctUsers"], 1);
    assert_eq!(after["reports"][0]["categories"], json!([14]));
    assert!(after["abuseConfidenceScore"].as_u64() < before["abuseConfidenceScore"].as_u64());
    // The aggregate is what the remaining report alone makes.
    let ind = indicator(&a.s, "8.8.8.8").await.unwrap();
    assert_eq!(ind.reports, 1);
    assert_eq!(ind.distinct_reporters, 1);
    assert_eq!(
        ind.categories.keys().copied().collect::<Vec<_>>(),
        [2],
        "port_scan only"
    );
    // The in-memory index agrees with the store: the v2 blacklist sees the new score.
    let v: Value = a
        .get("blacklist", &[("confidenceMinimum", "25")])
        .await
        .json()
        .await
        .unwrap();
    let listed = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ipAddress"] == "8.8.8.8")
        .map(|e| e["abuseConfidenceScore"].clone());
    if let Some(s) = listed {
        assert_eq!(s, after["abuseConfidenceScore"]);
    }
    // Via a JSON body (the official client); the last report of an IP takes the indicator with it.
    let r =
        a.s.client
            .delete(a.url("clear-address"))
            .header("Key", &a.key)
            .json(&json!({"ipAddress": "1.1.1.1"}))
            .send()
            .await
            .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["numReportsDeleted"],
        1
    );
    let d = a.check("1.1.1.1").await;
    assert_eq!(
        (
            d["totalReports"].as_u64(),
            d["abuseConfidenceScore"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert!(indicator(&a.s, "1.1.1.1").await.is_none());
    // Nothing of ours left: 0; the other account's report stays.
    let r =
        a.s.client
            .delete(a.url("clear-address?ipAddress=8.8.8.8"))
            .header("Key", &a.key)
            .send()
            .await
            .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["numReportsDeleted"],
        0
    );
    assert_eq!(a.raw_reports().await.len(), 1);
    // Once cleared, the account may report again at once.
    assert_eq!(
        a.report(&[("ip", "1.1.1.1"), ("categories", "18")])
            .await
            .status(),
        StatusCode::OK
    );
    let e = error(
        a.s.client
            .delete(a.url("clear-address?ipAddress=nope"))
            .header("Key", &a.key)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(e["source"]["parameter"], "ipAddress");
}

const SMALL_TIERS: &str = r#"
[tiers.free]
name = "Free"
lookups = 2
reports = 2
blacklist = 4
taxii = 10
ip_alerts = 1
range_alerts = 1
range_max_prefix = 28
username_alerts = 2
email_alerts = 3
"#;

#[tokio::test]
async fn daily_quota_headers_and_429() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiers.toml");
    std::fs::write(&path, SMALL_TIERS).unwrap();
    let a =
        Api::with(TestServer::start_with(&["--tiers-file", path.to_str().unwrap()]).await).await;
    let h = |r: &reqwest::Response, n: &str| r.headers()[n].to_str().unwrap().to_owned();
    let r = a.get("check", &[("ipAddress", "8.8.8.8")]).await;
    assert_eq!(
        (h(&r, "x-ratelimit-limit"), h(&r, "x-ratelimit-remaining")),
        ("2".into(), "1".into())
    );
    // Invalid input is not charged.
    let r = a.get("check", &[("ipAddress", "bad")]).await;
    assert_eq!(h(&r, "x-ratelimit-remaining"), "1");
    let r = a.get("check-block", &[("network", "8.8.8.0/24")]).await;
    assert_eq!(
        h(&r, "x-ratelimit-remaining"),
        "0",
        "check-block draws on lookups"
    );
    let r = a.get("reports", &[("ipAddress", "8.8.8.8")]).await;
    let next_midnight = (T0.day() + 1) * 86_400;
    assert_eq!(h(&r, "x-ratelimit-reset"), next_midnight.to_string());
    let retry: i64 = h(&r, "retry-after").parse().unwrap();
    assert_eq!(retry, next_midnight - T0.0 / 1000);
    let e = error(r, 429).await;
    assert_eq!(
        e["detail"],
        "Daily rate limit of 2 requests exceeded for this endpoint. See headers for additional details."
    );
    // Reports have their own bucket.
    let r = a.report(&[("ip", "8.8.8.8"), ("categories", "18")]).await;
    assert_eq!(
        (h(&r, "x-ratelimit-limit"), h(&r, "x-ratelimit-remaining")),
        ("2".into(), "1".into())
    );
    // Reset at 00:00 UTC.
    a.s.clock
        .set(sikker::domain::UnixMillis(next_midnight * 1000));
    let r = a.get("check", &[("ipAddress", "8.8.8.8")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "x-ratelimit-remaining"), "1");
}

/// The `actionban` line of the action file sikker ships (contract
/// §6.6-B), with fail2ban's `%%` escape undone. fail2ban passes
/// `<matches>` through the environment variable `f2bV_matches`.
fn actionban() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/fail2ban/action.d/abuseipdb-sikker.conf");
    let conf = std::fs::read_to_string(path).unwrap();
    let line = conf
        .lines()
        .find_map(|l| l.strip_prefix("actionban = "))
        .unwrap();
    line.replace("%%", "%")
        .replace("\"<matches>\"", "\"$f2bV_matches\"")
}

fn curl_path() -> String {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match found {
        Some(o) => String::from_utf8(o.stdout).unwrap().trim().to_owned(),
        None => panic!("curl is not installed: run the install part of .ci/run"),
    }
}

fn fail2ban_cmd(a: &Api, ip: &str) -> String {
    let curl = curl_path();
    let cert = a.s.data_dir.join("tls/self-signed.crt");
    actionban()
        .replace(
            "<abuseipdb_curl_opts>",
            &format!("--cacert {}", cert.display()),
        )
        .replace("<abuseipdb_url>", a.url("").trim_end_matches('/'))
        .replace("<abuseipdb_apikey>", &a.key)
        .replace("<ip>", ip)
        .replace("<abuseipdb_category>", "18,22")
        .replace("curl ", &format!("{curl} "))
}

/// Runs the action off the runtime's thread (the server shares it).
async fn fail2ban_ban(a: &Api, ip: &str, matches: &str) -> std::process::Output {
    let cmd = fail2ban_cmd(a, ip);
    let matches = matches.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("f2bV_matches", matches)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn fail2ban_abuseipdb_action_reports_to_sikker() {
    let a = Api::start().await;
    let matches = "2026-03-21 12:00:01 sshd[1]: Failed password for root from 8.8.8.8 port 51234 ssh2\n\
                   quotes \" ' and $HOME `id` ; & ünïcödé";
    let out = fail2ban_ban(&a, "8.8.8.8", matches).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["data"]["ipAddress"], "8.8.8.8");
    let long = "y".repeat(1500);
    let out = fail2ban_ban(&a, "2001:4860:4860::8888", &long).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let raws = a.raw_reports().await;
    assert_eq!(raws.len(), 2);
    let v4 = raws.iter().find(|r| r.ip == key_ip("8.8.8.8")).unwrap();
    assert_eq!(
        v4.comment.as_deref(),
        Some(format!("{matches}\n...").as_str())
    );
    assert_eq!(v4.abuseipdb_categories, [18, 22]);
    assert_eq!(v4.protocol.as_deref(), Some("ssh"));
    let key_account =
        a.s.handle()
            .services
            .authenticate_api_key(Some(&a.key))
            .unwrap()
            .account;
    assert_eq!(v4.account, key_account);
    let v6 = raws.iter().find(|r| r.ip != v4.ip).unwrap();
    assert_eq!(
        v6.comment.as_deref(),
        Some(format!("{}\n...", "y".repeat(1000)).as_str())
    );
    assert_eq!(a.check("2001:4860:4860::8888").await["totalReports"], 1);

    // A second ban within 15 minutes: 429, so curl exits 22 and nothing is stored.
    let out = fail2ban_ban(&a, "8.8.8.8", matches).await;
    assert_eq!(out.status.code(), Some(22));
    assert!(String::from_utf8_lossy(&out.stderr).contains("429"));
    assert_eq!(a.raw_reports().await.len(), 2);
}

const PY_CLIENT: &str = r#"
import json, sys
from abuseipdb_wrapper import AbuseIPDB
base, key, ip = sys.argv[1], sys.argv[2], sys.argv[3]
c = AbuseIPDB(api_key=key)
c._abuse_domain = base
full = c.check_ip_orig(ip, max_age_in_days="30", verbose=True)
short = c.check_ip(ip)
try:
    bad = AbuseIPDB(api_key="sk_free_wrong")
    bad._abuse_domain = base
    bad.check_ip(ip)
    refused = False
except ValueError:
    refused = True
print(json.dumps({"full": full, "short": short, "refused": refused}))
"#;

#[tokio::test]
async fn python_client_library_checks_against_sikker() {
    let a = Api::start().await;
    let py = crate::common::python::python();
    a.report(&[
        ("ip", "8.8.8.8"),
        ("categories", "18,22"),
        ("comment", "from a test"),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let cert = a.s.data_dir.join("tls/self-signed.crt");
    let base = a.s.url("");
    let key = a.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .args(["-c", PY_CLIENT, base.trim_end_matches('/'), &key, "8.8.8.8"])
            .env("REQUESTS_CA_BUNDLE", cert)
            .env("HOME", home.path())
            .current_dir(home.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let full = &v["full"]["data"];
    assert_eq!(full["ipAddress"], "8.8.8.8");
    assert_eq!(full["totalReports"], 1);
    assert_eq!(full["reports"][0]["comment"], "from a test");
    assert_eq!(full["reports"][0]["categories"], json!([18, 22]));
    assert_eq!(
        v["short"]["abuseConfidenceScore"],
        full["abuseConfidenceScore"]
    );
    assert_eq!(v["refused"], true);
}
