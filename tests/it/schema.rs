//! Schema evolution: a database written by this schema version, checked in
//! as `tests/fixtures/schema-v3.redb`, opens with the current code and its
//! data is served. Regenerate it (only when the schema version changes, and
//! keep the old file as the next migration's input) with
//! `cargo test --test it schema::write_fixture -- --ignored`.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::common::TestServer;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v3.redb")
}

#[tokio::test]
#[ignore = "writes the checked-in fixture"]
async fn write_fixture() {
    let s = TestServer::start().await;
    let services = &s.handle().services;
    let key = services
        .create_api_key("fixture", "free", None)
        .await
        .unwrap()
        .0;
    let r = s
        .client
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .json(&json!({"ip": "45.9.9.9", "category": "brute_force", "comment": "fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    services
        .whitelist_add("66.249.64.0/19", "Googlebot")
        .await
        .unwrap();
    let (dir, data) = s.into_dirs().await;
    std::fs::copy(data.join(sikker::store::DB_FILE), fixture()).unwrap();
    drop(dir);
}

#[tokio::test]
async fn schema_v3_fixture_opens_and_serves_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture(), data.join(sikker::store::DB_FILE)).unwrap();
    let s = TestServer::start_in(dir, data, &[]).await;
    let services = &s.handle().services;
    assert_eq!(services.indicator_count(), 1);
    let check = services.verify_index().await.unwrap();
    assert_eq!((check.stored, check.mismatch_count), (1, 0));
    let key = services.create_api_key("t", "free", None).await.unwrap().0;
    let v: Value = s
        .client
        .get(s.url("/v1/key/check/45.9.9.9"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["found"], true, "{v}");
    let v: Value = s
        .client
        .get(s.url("/v1/key/check/66.249.66.1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["isWhitelisted"], true, "{v}");
}
