//! Privacy by design against the real server: listing corrections hidden
//! from every public answer while aggregation continues, the retention
//! table stepped through each period on a manual clock, data-subject
//! rights, consent-gated analytics, cookie-less audience measurement, and
//! a scan of the whole database for raw client IPs, keys and secrets.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sikker::domain::{IpKey, UnixMillis};
use sikker::service::privacy::Decision;

use crate::common::TestServer;

const DAY: Duration = Duration::from_secs(86_400);
const COL: &str = "/taxii2/collections/sikker-threat-intel";
const TAXII: &str = "application/taxii+json;version=2.1";

async fn server() -> (TestServer, String) {
    let s = TestServer::start_with(&["--trusted-proxy", "127.0.0.1/32", "--registration", "open"])
        .await;
    let key = s
        .handle()
        .services
        .create_api_key("privacy", "free", None)
        .await
        .unwrap()
        .0;
    (s, key)
}

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

async fn get_json(s: &TestServer, key: &str, path: &str) -> Value {
    let r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .header("key", key)
        .header("accept", TAXII)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let t = r.text().await.unwrap();
    serde_json::from_str(&t).unwrap_or(Value::String(t))
}

async fn correction(s: &TestServer, from: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url("/v1/corrections"))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// What every public surface says about `ip`: (check found, bulk found,
/// in block list, AbuseIPDB check reports, TAXII objects). AbuseIPDB's
/// blacklist is `Services::blocklist` too, with a minimum of 25 that one
/// reporter does not reach.
async fn visible(s: &TestServer, key: &str, ip: &str) -> [bool; 5] {
    let check = get_json(s, key, &format!("/v1/key/check/{ip}")).await;
    let bulk = s
        .client
        .post(s.url("/v1/key/bulk-check"))
        .bearer_auth(key)
        .json(&json!({"ips": [ip]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let bl = get_json(s, key, "/v1/key/blacklist?plaintext=true&scoreMinimum=1").await;
    let ab = get_json(
        s,
        key,
        &format!("/api/v2/check?ipAddress={ip}&maxAgeInDays=30"),
    )
    .await;
    let tx = get_json(s, key, &format!("{COL}/objects/")).await;
    [
        check["found"] == json!(true),
        bulk.to_string().contains("\"found\":true"),
        bl.as_str().unwrap_or_default().lines().any(|l| l == ip),
        ab["data"]["totalReports"].as_u64().unwrap_or(0) > 0,
        tx.to_string().contains(&format!("'{ip}'")),
    ]
}

#[tokio::test]
async fn corrections_hide_an_ip_from_every_public_answer_but_aggregation_continues() {
    let (s, key) = server().await;
    let svc = &s.handle().services;
    for _ in 0..3 {
        report(&s, &key, "1.2.3.4").await;
        report(&s, &key, "5.6.7.8").await;
        s.clock.advance(Duration::from_secs(16 * 60));
    }
    let before = visible(&s, &key, "1.2.3.4").await;
    assert_eq!(before, [true; 5], "listed everywhere first");

    // Bad input: clear errors, nothing stored.
    let body = |ip: &str, reason: &str| json!({"ip": ip, "reason": reason});
    let (st, v) = correction(&s, "9.9.9.9", body("1.2.3", "false_positive")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = correction(&s, "9.9.9.9", body("1.2.3.4", "because")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("dynamic_reassignment"), "{v}");
    let (st, _) = correction(&s, "9.9.9.9", body("8.8.4.4", "false_positive")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "unlisted IP");
    assert!(svc.list_corrections().await.unwrap().is_empty());

    // From another address: pending until an admin decides; still listed.
    let (st, v) = correction(&s, "9.9.9.9", body("5.6.7.8", "ownership_change")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["correction"]["status"], "pending");
    let id = v["correction"]["id"].as_u64().unwrap();
    assert!(visible(&s, &key, "5.6.7.8").await[0]);
    let (st, _) = correction(&s, "9.9.9.9", body("5.6.7.8", "ownership_change")).await;
    assert_eq!(st, StatusCode::CONFLICT, "one pending request per IP");
    assert!(
        svc.decide_correction(id, Decision::Approve, 1, " ")
            .await
            .is_err(),
        "reason needed"
    );
    let granted = svc
        .decide_correction(id, Decision::Approve, 1, "RIR record shows new holder")
        .await
        .unwrap();
    assert_eq!(granted.history.len(), 2);
    assert_eq!(visible(&s, &key, "5.6.7.8").await, [false; 5]);
    assert!(
        svc.decide_correction(id, Decision::Approve, 1, "again")
            .await
            .is_err(),
        "decided once"
    );

    // From the IP itself: granted at once.
    let (st, v) = correction(&s, "1.2.3.4", body("1.2.3.4", "dynamic_reassignment")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["correction"]["status"], "granted");
    assert_eq!(v["correction"]["verified_from_ip"], true);
    assert_eq!(visible(&s, &key, "1.2.3.4").await, [false; 5]);
    assert!(svc.is_publicly_hidden(IpKey::from_ip("1.2.3.4".parse().unwrap())));

    // New evidence is aggregated internally and flagged, not re-listed.
    s.clock.advance(Duration::from_secs(3600));
    report(&s, &key, "1.2.3.4").await;
    assert_eq!(visible(&s, &key, "1.2.3.4").await, [false; 5]);
    let all = svc.list_corrections().await.unwrap();
    let c = all.iter().find(|c| c.ip == "1.2.3.4").unwrap();
    assert!(c.new_evidence, "{c:?}");
    let ip = IpKey::from_ip("1.2.3.4".parse().unwrap());
    let ind = svc
        .store
        .read(move |t| sikker::store::indicators::get(t, ip))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ind.reports, 4, "the fourth report was aggregated");

    // A revoked correction re-lists; the history keeps every step.
    let v = svc
        .decide_correction(c.id, Decision::Revoke, 1, "new evidence confirmed")
        .await
        .unwrap();
    assert_eq!(v.history.len(), 3);
    assert!(visible(&s, &key, "1.2.3.4").await[0]);

    // Corrections survive a restart.
    let (dir, data) = s.into_dirs().await;
    let s = TestServer::start_in(dir, data, &[]).await;
    assert!(
        s.handle()
            .services
            .is_publicly_hidden(IpKey::from_ip("5.6.7.8".parse().unwrap()))
    );
}

fn signup(name: &str) -> sikker::service::accounts::SignUp {
    serde_json::from_value(json!({
        "username": name, "email": format!("{name}@example.org"), "password": "Fjord-Lantern-2026",
        "first_name": "Kari", "last_name": "Nordmann", "country": "NO", "age_confirmed": true,
    }))
    .unwrap()
}

async fn page(s: &TestServer, path: &str, from: &str, ua: &str, extra: &[(&str, &str)]) {
    let mut r = s
        .client
        .get(s.url(path))
        .header("accept", "text/html")
        .header("user-agent", ua)
        .header("x-forwarded-for", from)
        .header("referer", "https://Search.Example/q?s=secret");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
}

async fn audience(s: &TestServer, day: UnixMillis) -> Vec<(i64, sikker::store::privacy::PageView)> {
    let d = day.day();
    s.handle()
        .services
        .store
        .read(move |t| sikker::store::privacy::pageviews(t, d - 1000, d + 1000))
        .await
        .unwrap()
}

#[tokio::test]
async fn audience_measurement_hashes_daily_and_honours_gpc_dnt() {
    let (s, _key) = server().await;
    let t0 = s.clock.now();
    page(&s, "/", "203.0.113.9", "Mozilla/5.0 audience-a", &[]).await;
    page(
        &s,
        "/ip/8.8.8.8?x=1",
        "203.0.113.9",
        "Mozilla/5.0 audience-a",
        &[],
    )
    .await;
    page(
        &s,
        "/",
        "203.0.113.10",
        "Mozilla/5.0 audience-b",
        &[("sec-gpc", "1")],
    )
    .await;
    page(
        &s,
        "/",
        "203.0.113.11",
        "Mozilla/5.0 audience-c",
        &[("dnt", "1")],
    )
    .await;
    // Assets are not page views.
    let r = s
        .client
        .get(s.url("/favicon.svg"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let _ = r.status();
    let v = audience(&s, t0).await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].1.visitor, v[1].1.visitor, "same visitor, same day");
    assert_eq!(v[0].1.visitor.len(), 16);
    assert_eq!(v[1].1.path, "/ip/:ip", "no looked-up IP stored");
    assert_eq!(v[0].1.referrer_domain.as_deref(), Some("search.example"));
    s.clock.advance(DAY);
    page(&s, "/", "203.0.113.9", "Mozilla/5.0 audience-a", &[]).await;
    let v = audience(&s, t0).await;
    assert_eq!(v.len(), 3);
    assert_ne!(v[2].1.visitor, v[0].1.visitor, "a new day, a new id");
    let sum = s
        .handle()
        .services
        .audience_summary(t0.day(), t0.day() + 1)
        .await
        .unwrap();
    assert_eq!(sum["visitors"], 2);
    assert_eq!(sum["page_views"], 3);
    assert_eq!(sum["bounce_rate"], 0.5);
    assert_eq!(sum["top_pages"][0]["key"], "/");
    // 13 months later the days are gone.
    s.clock.advance(DAY * 394);
    s.handle()
        .services
        .sweep(s.clock.now(), 1000)
        .await
        .unwrap();
    assert_eq!(
        audience(&s, t0).await.len(),
        3,
        "a day is kept 395 days after it"
    );
    s.clock.advance(DAY);
    s.handle()
        .services
        .sweep(s.clock.now(), 1000)
        .await
        .unwrap();
    assert_eq!(
        audience(&s, t0).await.len(),
        1,
        "day 0 dropped, day 1 not yet"
    );
    s.clock.advance(DAY);
    s.handle()
        .services
        .sweep(s.clock.now(), 1000)
        .await
        .unwrap();
    assert!(audience(&s, t0).await.is_empty());
}

#[tokio::test]
async fn consent_log_and_analytics_only_with_consent() {
    let (s, _key) = server().await;
    let post = |body: Value, cookie: Option<&str>| {
        let mut r = s.client.post(s.url("/v1/privacy/consent")).json(&body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let r = post(json!({"decision": "maybe"}), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(json!({"decision": "granted"}), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(c.starts_with("ska_analytics_consent=granted;"), "{c}");
    for attr in ["Max-Age=31536000", "Secure", "SameSite=Lax"] {
        assert!(c.contains(attr), "{c}");
    }
    assert!(!c.contains("HttpOnly"), "the banner reads it");
    let ev = json!({"sid": "a1b2c3d4e5", "name": "click", "path": "/pricing?x=1"});
    let send = |cookie: &'static str| {
        s.client
            .post(s.url("/v1/analytics/events"))
            .header("cookie", cookie)
            .json(&ev)
            .send()
    };
    assert_eq!(send("").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send("ska_analytics_consent=denied").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send("ska_analytics_consent=granted")
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let r = post(json!({"decision": "denied"}), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let svc = &s.handle().services;
    let d = s.clock.now().day();
    let log = svc
        .store
        .read(move |t| sikker::store::privacy::consents(t, d, d))
        .await
        .unwrap();
    assert_eq!(
        log.iter().map(|c| c.granted).collect::<Vec<_>>(),
        [true, false]
    );
    let a = svc.analytics_summary(1).await.unwrap();
    assert_eq!(a["events"], 1);
    assert_eq!(a["by_path"]["/pricing"], 1);
    // Analytics 24 months, the consent log 24 months.
    s.clock.advance(DAY * 730);
    svc.sweep(s.clock.now(), 100).await.unwrap();
    assert_eq!(svc.analytics_summary(800).await.unwrap()["events"], 1);
    s.clock.advance(DAY);
    let r = svc.sweep(s.clock.now(), 100).await.unwrap();
    assert_eq!((r.privacy.analytics_events, r.privacy.consents), (1, 2));
}

#[tokio::test]
async fn data_subject_rights_export_restrict_erase_and_purge() {
    let (s, _key) = server().await;
    let svc = &s.handle().services;
    let a = svc
        .register(signup("dora"), Some("198.51.100.4".into()))
        .await
        .unwrap();
    let (key, _) = svc
        .create_api_key("dora-key", "free", Some((a.id, s.clock.now())))
        .await
        .unwrap();
    report(&s, &key, "1.2.3.4").await;
    let ex = svc.export_account(a.id).await.unwrap();
    let text = ex.to_string();
    assert_eq!(ex["account"]["email"], "dora@example.org");
    assert_eq!(ex["contributions"].as_array().unwrap().len(), 1);
    assert!(!ex["usage"].as_array().unwrap().is_empty());
    assert!(
        !text.contains("argon2") && !text.contains(&key),
        "no hashes, no key"
    );

    // Restriction pauses processing: the key is refused, then works again.
    svc.set_restriction(a.id, true).await.unwrap();
    let r = s
        .client
        .get(s.url("/v1/key/check/1.2.3.4"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    svc.set_restriction(a.id, false).await.unwrap();
    let r = s
        .client
        .get(s.url("/v1/key/check/1.2.3.4"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The self-service endpoints need a session.
    let r = s
        .client
        .get(s.url("/v1/account/privacy/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Pending requests and their deadline.
    let rid = svc
        .log_request(a.id, "erasure", "cli", false)
        .await
        .unwrap()
        .id;
    assert!(
        svc.log_request(a.id, "nonsense", "cli", false)
            .await
            .is_err()
    );
    s.clock.advance(DAY * 25);
    let p = svc.pending_requests().await.unwrap();
    assert_eq!(p[0]["id"], rid);
    assert_eq!(p[0]["days_left"], 5);

    // Erasure: auth data at once, key refused, contribution detached, aggregate kept.
    let ip = IpKey::from_ip("1.2.3.4".parse().unwrap());
    let score_before = svc.score_now(ip).unwrap();
    svc.privacy_admin(sikker::service::privacy::PrivacyRequest::GdprErase { account: a.id })
        .await
        .unwrap();
    assert!(svc.pending_requests().await.unwrap().is_empty(), "answered");
    let acc = svc.account(a.id).await.unwrap();
    assert!(acc.auth.is_none() && acc.registration_ip.is_none() && acc.disabled);
    let r = s
        .client
        .get(s.url("/v1/key/check/1.2.3.4"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let reports = svc.store.read(sikker::store::reports::all).await.unwrap();
    assert!(reports.iter().all(|r| r.account != a.id));
    let ind = svc
        .store
        .read(move |t| sikker::store::indicators::get(t, ip))
        .await
        .unwrap()
        .unwrap();
    assert!(!ind.reporters.contains_key(&a.id));
    assert_eq!(svc.score_now(ip).unwrap(), score_before);
    assert!(svc.erase_account(a.id).await.is_err(), "erased once");

    // The rest is purged 12 months after erasure.
    s.clock.advance(DAY * 364);
    svc.sweep(s.clock.now(), 100).await.unwrap();
    assert!(svc.account(a.id).await.is_ok());
    s.clock.advance(DAY * 2);
    let r = svc.sweep(s.clock.now(), 100).await.unwrap();
    assert_eq!(r.privacy.accounts_purged, 1);
    assert!(svc.account(a.id).await.is_err());
}

#[tokio::test]
async fn retention_table_steps_through_usage_and_network_periods() {
    let (s, key) = server().await;
    let svc = &s.handle().services;
    let a = svc
        .register(signup("erik"), Some("198.51.100.5".into()))
        .await
        .unwrap();
    get_json(&s, &key, "/v1/key/check/1.2.3.4").await;
    let status = svc.retention_status().await.unwrap();
    let row = |c: &str| status.iter().find(|r| r.category == c).unwrap().clone();
    assert_eq!(row("api_usage").period_days, Some(730));
    assert_eq!(row("audience_metrics").period_days, Some(395));
    assert_eq!(row("erased_accounts").period_days, Some(365));
    assert_eq!(row("network_registration_ip").items, 1);
    assert!(row("api_usage").items >= 1 && row("api_usage").next_purge.is_some());
    s.clock.advance(DAY * 729);
    let r = svc.sweep(s.clock.now(), 100).await.unwrap();
    assert_eq!(
        (r.privacy.usage_counters, r.privacy.registration_ips),
        (0, 0)
    );
    s.clock.advance(DAY * 2);
    let r = svc.sweep(s.clock.now(), 100).await.unwrap();
    assert!(r.privacy.usage_counters >= 1);
    assert_eq!(r.privacy.registration_ips, 1);
    assert!(svc.account(a.id).await.unwrap().registration_ip.is_none());
}

/// Every value a scenario put on the wire that the policy never lets
/// into storage must be absent from the whole database file.
#[tokio::test]
async fn privacy_scan() {
    let (s, key) = server().await;
    let svc = &s.handle().services;
    report(&s, &key, "1.2.3.4").await;
    get_json(&s, &key, "/v1/key/check/5.6.7.8").await;
    page(&s, "/", "203.0.113.77", "ScanAgent/9.9 (secret-ua)", &[]).await;
    let (st, _) = correction(
        &s,
        "203.0.113.78",
        json!({"ip": "1.2.3.4", "reason": "false_positive"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let a = svc.register(signup("scanuser"), None).await.unwrap();
    svc.erase_account(a.id).await.unwrap();
    let data_dir = s.data_dir.clone();
    let _dirs = s.into_dirs().await;
    let db = std::fs::read(data_dir.join(sikker::store::DB_FILE)).unwrap();
    let ip_bytes = |ip: &str| IpKey::from_ip(ip.parse().unwrap()).0.to_le_bytes().to_vec();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("API key", key.as_bytes().to_vec()),
        ("password", b"Fjord-Lantern-2026".to_vec()),
        ("looked-up IP (text)", b"5.6.7.8".to_vec()),
        ("looked-up IP (key)", ip_bytes("5.6.7.8")),
        ("audience client IP", b"203.0.113.77".to_vec()),
        ("audience client IP (key)", ip_bytes("203.0.113.77")),
        ("correction requester IP", b"203.0.113.78".to_vec()),
        ("user agent", b"secret-ua".to_vec()),
        ("referrer URL", b"q?s=secret".to_vec()),
    ];
    for (what, n) in &needles {
        assert!(
            !db.windows(n.len()).any(|w| w == n.as_slice()),
            "{what} found in the database"
        );
    }
    // The tables a privacy scan covers are exactly the declared ones.
    assert!(sikker::store::tables::ALL_NAMES.contains(&"dayid_pageview"));
}

/// P60: operator requests over the admin socket, admin API calls and
/// configuration changes are recorded (who, what, when), without secrets;
/// entries go after the privacy-log period.
#[tokio::test]
async fn admin_audit_log_records_operators_admin_api_and_configuration() {
    use sikker::service::admin::AdminRequest;
    let s = TestServer::start().await;
    let services = s.handle().services.clone();

    // An operator over the admin socket.
    let mut c = sikker::admin::client::Client::connect(&s.data_dir.join("admin.sock"))
        .await
        .unwrap()
        .expect("the admin socket answers");
    c.call(AdminRequest::KeyCreate {
        name: "ops".into(),
        tier: "free".into(),
        user: None,
    })
    .await
    .unwrap();

    // An admin through the API (bootstrap, sign in, list users).
    let token = s.handle().bootstrap_token.clone().unwrap();
    let r = s
        .client
        .post(s.url("/v1/account/bootstrap"))
        .json(
            &json!({"token": token, "username": "root-admin", "email": "root@example.org",
            "password": "Fjord-Lantern-2026", "first_name": "A", "last_name": "B",
            "country": "NO", "age_confirmed": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .client
        .post(s.url("/v1/session/login"))
        .json(&json!({"login": "root-admin", "password": "Fjord-Lantern-2026"}))
        .send()
        .await
        .unwrap();
    let cookie: String = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .filter(|c| c.starts_with("access_token="))
        .collect();
    let r = s
        .client
        .get(s.url("/v1/admin/users"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Configuration: first sight, then a change of one key.
    services
        .audit_config("# effective\nlisten = \"127.0.0.1:8443\"\nregistration = \"invite\"\n")
        .await
        .unwrap();
    services
        .audit_config("# effective\nlisten = \"127.0.0.1:8443\"\nregistration = \"invite\"\n")
        .await
        .unwrap();
    services
        .audit_config("# effective\nlisten = \"127.0.0.1:8443\"\nregistration = \"open\"\n")
        .await
        .unwrap();

    let log = services.audit_log(100).await.unwrap();
    let lines: Vec<String> = log
        .iter()
        .map(|e| format!("{} | {} | {}", e.actor, e.action, e.detail))
        .collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("admin socket | key_create"), "{lines:#?}");
    assert!(has("(root-admin) | GET /v1/admin/users"), "{lines:#?}");
    assert!(has("server start | configuration first seen"), "{lines:#?}");
    assert!(
        has("server start | configuration changed | registration = \"open\""),
        "{lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("configuration")).count(),
        2,
        "an unchanged configuration is not recorded again: {lines:#?}"
    );
    let all = format!("{lines:?}");
    assert!(
        !all.contains("Fjord-Lantern") && !all.contains("sk_free_"),
        "no secrets: {all}"
    );

    // Kept for the privacy-log period (730 days by default), then swept.
    s.clock.advance(Duration::from_secs(731 * 86_400));
    services.sweep(services.clock.now(), 1_000).await.unwrap();
    assert!(services.audit_log(100).await.unwrap().is_empty());
}

/// P58: a breach or policy notice reaches every account holder by e-mail
/// (through the real SMTP server), and who was notified when is recorded;
/// bad input changes nothing.
#[tokio::test]
async fn notices_reach_every_account_holder_by_email() {
    let m = crate::common::smtp::SmtpSink::start();
    let flags = m.flags();
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = TestServer::start_with(&refs).await;
    let services = s.handle().services.clone();
    for name in ["kari", "ola"] {
        services
            .add_account(signup(name), sikker::domain::account::Role::User)
            .await
            .unwrap();
    }
    m.wait_for(2).await; // the two verification mails
    assert!(services.notify_all("", "body").await.is_err());
    assert!(services.notify_all("Subject", "  ").await.is_err());
    let r = services
        .notify_all("Security notice", "We changed how reports are kept.")
        .await
        .unwrap();
    assert!(r.to_string().contains('2'), "{r}");
    // Notices are spread out (--notify-rate, 60 a minute): let the clock run.
    s.clock.advance(Duration::from_secs(120));
    for to in ["kari@example.org", "ola@example.org"] {
        let mail = m.last_to(to, "Security notice").await;
        assert!(
            mail["body"]
                .as_str()
                .unwrap()
                .contains("We changed how reports are kept."),
            "{mail}"
        );
    }
    assert_eq!(m.messages().len(), 4, "no other mail was sent");
}
