//! Daily quotas against the real server: headers on every keyed answer,
//! 429 with `Retry-After` when a bucket is exhausted, reset at 00:00 UTC,
//! `/v1/key/status`, block lists cut to the budget, counters that survive a
//! restart, and a bad tier file refused at start.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{T0, TestServer};

const TIERS: &str = r#"
[tiers.free]
name = "Free"
lookups = 3
reports = 2
blacklist = 4
taxii = 10
ip_alerts = 1
range_alerts = 1
range_max_prefix = 28
username_alerts = 2
email_alerts = 3

[tiers.tier_1]
name = "Basic"
lookups = 100
reports = 100
blacklist = 100
taxii = 100
ip_alerts = 10
range_alerts = 5
range_max_prefix = 24
username_alerts = 10
email_alerts = 10
"#;

async fn start(dir: &tempfile::TempDir) -> TestServer {
    let path = dir.path().join("tiers.toml");
    std::fs::write(&path, TIERS).unwrap();
    TestServer::start_with(&["--tiers-file", path.to_str().unwrap()]).await
}

async fn key(s: &TestServer, tier: &str) -> String {
    s.handle()
        .services
        .create_api_key("quota-test", tier, None)
        .await
        .unwrap()
        .0
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get(s: &TestServer, key: &str, path: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn lookups_run_out_answer_429_and_reset_at_midnight() {
    let tiers = tempfile::tempdir().unwrap();
    let s = start(&tiers).await;
    let k = key(&s, "free").await;
    // T0 is 12:00 UTC: the reset is 12 hours away.
    let reset = T0.0 / 1000 - T0.0 / 1000 % 86_400 + 86_400;
    for used in 1..=3 {
        let r = get(&s, &k, "/v1/key/check/45.155.205.9").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-daily-limit"), "3");
        assert_eq!(header(&r, "x-daily-used"), used.to_string());
        assert_eq!(header(&r, "x-daily-remaining"), (3 - used).to_string());
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining"), (3 - used).to_string());
        assert_eq!(header(&r, "x-ratelimit-reset"), reset.to_string());
        assert!(r.headers().get("retry-after").is_none());
    }
    let r = get(&s, &k, "/v1/key/check/45.155.205.9").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), (12 * 3600).to_string());
    assert_eq!(header(&r, "x-daily-remaining"), "0");
    assert_eq!(header(&r, "x-daily-used"), "3");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Daily lookup quota exceeded");
    // Username lookups share the lookup bucket.
    let r = get(&s, &k, "/v1/key/username/root").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Bulk checks cost one lookup per IP, all or nothing.
    let other = key(&s, "free").await;
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&other)
        .header("content-type", "text/plain")
        .body("45.155.205.1\n45.155.205.2\n45.155.205.3\n45.155.205.4\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&r, "x-daily-used"),
        "0",
        "a refused bulk check costs nothing"
    );

    // One second before midnight still refused, at midnight a fresh day.
    s.clock.advance(Duration::from_secs(12 * 3600 - 1));
    let r = get(&s, &k, "/v1/key/check/45.155.205.9").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "1");
    s.clock.advance(Duration::from_secs(1));
    let r = get(&s, &k, "/v1/key/check/45.155.205.9").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-daily-used"), "1");
}

#[tokio::test]
async fn status_answers_the_contract_shape_and_costs_nothing() {
    let tiers = tempfile::tempdir().unwrap();
    let s = start(&tiers).await;
    let k = key(&s, "tier_1").await;
    get(&s, &k, "/v1/key/check/45.155.205.9").await;
    for _ in 0..3 {
        let r = get(&s, &k, "/v1/key/status").await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["tier"], json!({"id": "tier_1", "name": "Basic"}));
        assert_eq!(
            v["quotas"]["lookups"],
            json!({"used": 1, "limit": 100, "remaining": 99})
        );
        assert_eq!(
            v["quotas"]["taxii"],
            json!({"used": 0, "limit": 100, "remaining": 100})
        );
        for (kind, limit) in [
            ("ipAlerts", 10),
            ("rangeAlerts", 5),
            ("usernameAlerts", 10),
            ("emailAlerts", 10),
        ] {
            assert_eq!(v["alerts"][kind]["limit"], limit, "{kind}");
            assert!(v["alerts"][kind]["current"].is_u64(), "{kind}");
        }
    }
    let r = get(&s, &k, "/v1/key/status").await;
    assert!(r.headers().get("x-daily-limit").is_none());
    // Without a key: 401, like every keyed endpoint.
    let r = s.get("/v1/key/status").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reports_and_block_lists_are_charged_by_their_units() {
    let tiers = tempfile::tempdir().unwrap();
    let s = start(&tiers).await;
    let k = key(&s, "free").await;
    let report = |ip: &'static str| {
        s.client
            .post(s.url("/v1/key/report"))
            .bearer_auth(&k)
            .json(&json!({"ip": ip, "category": "port_scan"}))
            .send()
    };
    let r = report("45.155.205.1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-report-limit"), "2");
    assert_eq!(header(&r, "x-report-remaining"), "1");
    assert_eq!(header(&r, "x-daily-used"), "1");
    // Two rows with one left: the whole bulk request is refused, nothing stored.
    let r = s
        .client
        .post(s.url("/v1/key/bulk-report"))
        .bearer_auth(&k)
        .json(&json!({"reports": [
            {"ip": "45.155.205.2", "category": 1},
            {"ip": "45.155.205.3", "category": 1}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-report-remaining"), "1");
    let checker = key(&s, "tier_1").await;
    let v: Value = get(&s, &checker, "/v1/key/check/45.155.205.2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["found"], false, "a refused bulk report wrote nothing");

    // Block lists: the budget (4 IPs a day) cuts the list and is spent by what is sent.
    let reporter = key(&s, "tier_1").await;
    for i in 1..=6 {
        for who in [&reporter, &checker] {
            let r = s
                .client
                .post(s.url("/v1/key/report"))
                .bearer_auth(who)
                .json(&json!({"ip": format!("185.220.101.{i}"), "category": "brute_force"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    let lister = key(&s, "free").await;
    let all = "/v1/key/blacklist?scoreMinimum=1&plaintext=true";
    let r = get(&s, &lister, &format!("{all}&limit=3")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-daily-remaining"), "1");
    assert_eq!(r.text().await.unwrap().lines().count(), 3);
    let r = get(&s, &lister, all).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap().lines().count(),
        1,
        "cut to what is left"
    );
    let r = get(&s, &lister, all).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
}

#[tokio::test]
async fn counters_survive_a_restart() {
    let tiers = tempfile::tempdir().unwrap();
    let path = tiers.path().join("tiers.toml");
    std::fs::write(&path, TIERS).unwrap();
    let flags = ["--tiers-file", path.to_str().unwrap()];
    let s = TestServer::start_with(&flags).await;
    let k = key(&s, "free").await;
    for _ in 0..2 {
        assert_eq!(
            get(&s, &k, "/v1/key/check/45.155.205.9").await.status(),
            StatusCode::OK
        );
    }
    let (dir, data) = s.into_dirs().await;
    let s = TestServer::start_in(dir, data, &flags).await;
    let r = get(&s, &k, "/v1/key/check/45.155.205.9").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-daily-used"), "3");
    assert_eq!(
        get(&s, &k, "/v1/key/check/45.155.205.9").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn keys_of_unknown_tiers_and_bad_tier_files_are_refused() {
    let tiers = tempfile::tempdir().unwrap();
    let s = start(&tiers).await;
    let e = s
        .handle()
        .services
        .create_api_key("x", "tier_9", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown tier 'tier_9'"), "{e}");

    let bad = tiers.path().join("bad.toml");
    std::fs::write(&bad, "[tiers.gold]\nname = 'Gold'\n").unwrap();
    let config = sikker::config::Config::from_serve_args([
        "--data-dir",
        tiers.path().join("d").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tiers-file",
        bad.to_str().unwrap(),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = sikker::app::start(&config, listener, sikker::domain::Clock::manual(T0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--tiers-file") && err.contains("SIKKER_TIERS_FILE"),
        "{err}"
    );
}
