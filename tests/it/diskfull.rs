//! A data dir that cannot be written (full disk, read-only): writes answer
//! 503 in each API's dialect and change nothing, reads keep working, and
//! once the disk is back nothing is corrupted. The fault is injected in the
//! store layer (this sandbox cannot mount a small file system).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

#[tokio::test]
async fn full_disk_fails_writes_with_503_and_keeps_reads() {
    let s = TestServer::start_with(&["--registration", "open"]).await;
    let services = &s.handle().services;
    let key = services
        .create_api_key("disk", "unlimited", None)
        .await
        .unwrap()
        .0;
    let report = |ip: &'static str| {
        s.client
            .post(s.url("/v1/key/report"))
            .bearer_auth(&key)
            .json(&json!({"ip": ip, "category": "brute_force"}))
            .send()
    };
    assert_eq!(report("45.1.1.1").await.unwrap().status(), StatusCode::OK);

    services.store.inject_write_fault(true);
    let r = report("45.1.1.2").await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false, "SikkerAPI dialect: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("storage is unavailable"),
        "{v}"
    );
    let r = s
        .client
        .post(s.url("/api/v2/report"))
        .header("Key", &key)
        .header("Accept", "application/json")
        .form(&[("ip", "45.1.1.3"), ("categories", "18")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["detail"].is_string(),
        "AbuseIPDB dialect: {v}"
    );
    let r = s
        .client
        .post(s.url("/v1/account/register"))
        .json(&json!({"username": "kari", "email": "kari@example.org",
                      "password": "Harbour-Kettle-4471", "first_name": "Kari",
                      "last_name": "Nordmann", "country": "NO", "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Reads keep working from memory and the database.
    let r = s
        .client
        .get(s.url("/v1/key/check/45.1.1.1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["found"], true);
    let r = s
        .client
        .get(s.url("/v1/key/check/45.1.1.2"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["found"],
        false,
        "a refused write changed nothing"
    );
    assert_eq!(
        s.client
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let check = services.verify_index().await.unwrap();
    assert_eq!(check.mismatch_count, 0, "{check:?}");

    // The disk is back: writes work and memory still equals the database.
    services.store.inject_write_fault(false);
    assert_eq!(report("45.1.1.2").await.unwrap().status(), StatusCode::OK);
    let check = services.verify_index().await.unwrap();
    assert_eq!((check.stored, check.mismatch_count), (2, 0), "{check:?}");
}
