//! Schema evolution: databases written by earlier schema versions, checked
//! in as `tests/fixtures/schema-v{N}.redb`, open with the current code,
//! migrate to the current version and their data is served; a database from
//! a newer version is refused with a clear message. When the schema version
//! changes, write the fixture of the version being left with the binary of
//! that version (keep the old files: each is a migration's input) by
//! `cargo test --test it schema::write_fixture -- --ignored`, in a worktree
//! of that commit with a `CARGO_TARGET_DIR` of its own (with a shared one,
//! cargo takes one tree's artifacts for the other's, same package and
//! version), then `git add -f` the file (`*.redb` is ignored).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::TestServer;

fn fixture(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/schema-v{version}.redb"))
}

const PW: &str = "Fjord-Lantern-2026";

#[tokio::test]
#[ignore = "writes a fixture of the current schema version"]
async fn write_fixture() {
    let s = TestServer::start_with(&["--registration", "open"]).await;
    let services = &s.handle().services;
    let r = s
        .client
        .post(s.url("/v1/account/register"))
        .json(
            &json!({"username": "fixture", "email": "fixture@example.org",
                      "password": PW, "first_name": "Kari",
                      "last_name": "Nordmann", "country": "NO", "age_confirmed": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (token, _) = services.create_sensor("fixture-sensor").await.unwrap();
    // Two events of one session with a username: event, session and
    // session × name de-duplication keys.
    let t = services.clock.now().0;
    let body: String = [0, 1]
        .iter()
        .map(|i| {
            json!({"ts": t + i, "src_ip": "45.9.9.9", "protocol": "ssh", "session_id": "fixture-session", "kind": "auth", "username": format!("root{i}")})
                .to_string()
                + "\n"
        })
        .collect();
    let r = s.send_events(&token, body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
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
    std::fs::copy(
        data.join(sikker::store::DB_FILE),
        fixture(sikker::store::migrate::CURRENT),
    )
    .unwrap();
    drop(dir);
}

/// A server on a copy of the fixture of `version`.
async fn on_fixture(version: u32) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture(version), data.join(sikker::store::DB_FILE)).unwrap();
    TestServer::start_in(dir, data, &[]).await
}

async fn schema_version(data: &Path) -> u64 {
    let data = data.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sikker"))
            .args([
                "admin",
                "--data-dir",
                data.to_str().unwrap(),
                "ping",
                "--json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["schema_version"]
        .as_u64()
        .unwrap()
}

/// Stops `s` and checks, with the binary, that its database is at the
/// current schema; the data dir (kept while the guard lives).
async fn stopped_at_current_schema(s: TestServer) -> (tempfile::TempDir, PathBuf) {
    let (dir, data) = s.into_dirs().await;
    assert_eq!(
        schema_version(&data).await,
        u64::from(sikker::store::migrate::CURRENT)
    );
    (dir, data)
}

/// What every fixture holds: one indicator (45.9.9.9) and a whitelisted network.
async fn serves_indicator_and_whitelist(s: &TestServer) {
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

#[tokio::test]
async fn schema_v3_fixture_migrates_and_serves_its_data() {
    let s = on_fixture(3).await;
    serves_indicator_and_whitelist(&s).await;
    // v4 → v5 ran too: the key ring holds v4's key and a new current one.
    let kids: Vec<u32> = s
        .handle()
        .services
        .jwt_keys()
        .iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [0, 1]);
    stopped_at_current_schema(s).await;
}

#[tokio::test]
async fn schema_v4_fixture_migrates_and_serves_its_data() {
    let s = on_fixture(4).await;
    serves_indicator_and_whitelist(&s).await;
    let services = &s.handle().services;
    // The account and its password hash survived: it signs in.
    let r = s
        .client
        .post(s.url("/v1/session/login"))
        .json(&json!({"login": "fixture", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sensors = services.list_sensors().await.unwrap();
    assert_eq!(sensors.len(), 1);
    assert_eq!(sensors[0].name, "fixture-sensor");
    let keys = services.jwt_keys();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0].kid, 0,
        "v4's signing key verifies until the next rotation"
    );
    assert!(keys[1].current && keys[1].kid == 1);
    // A token v4 signed (no kid, v4's key) is still accepted: sign one as v4
    // did, with this data dir's secret key, for the session just opened.
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .strip_prefix("access_token=")
                .map(str::to_owned)
        })
        .unwrap();
    let body = cookie.split('.').nth(1).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: sikker::jwt::Claims =
        serde_json::from_slice(&base64::Engine::decode(&b64, body).unwrap()).unwrap();
    let secret = sikker::crypto::SecretKey::load_or_create(&s.data_dir.join("secret.key")).unwrap();
    let v4_token =
        sikker::jwt::JwtKey::new(&secret.keyed_hash("jwt-signing-key", b"")).sign(&claims);
    let me = |t: String| {
        s.client
            .get(s.url("/v1/account"))
            .header("cookie", format!("access_token={t}"))
            .send()
    };
    assert_eq!(me(v4_token.clone()).await.unwrap().status(), 200);
    services.rotate_jwt_key().await.unwrap();
    assert_eq!(
        me(v4_token).await.unwrap().status(),
        401,
        "v4's key is dropped at the next rotation"
    );
    stopped_at_current_schema(s).await;
}

/// The de-duplication rows of a migrated fixture: `day_sensor_seen`'s
/// rows with their fingerprint counts, and whether the older tables are
/// empty.
fn dedup_rows(data: &Path) -> (Vec<usize>, bool) {
    use sikker::store::tables::{DAY_SENSOR_EVENT, DAY_SENSOR_SEEN, DAY_SENSOR_SESSION};
    let db = redb::Database::create(data.join(sikker::store::DB_FILE)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let empty = redb::ReadableTableMetadata::is_empty(&txn.open_table(DAY_SENSOR_SESSION).unwrap())
        .unwrap()
        && redb::ReadableTableMetadata::is_empty(&txn.open_table(DAY_SENSOR_EVENT).unwrap())
            .unwrap();
    let rows = redb::ReadableTable::iter(&txn.open_table(DAY_SENSOR_SEEN).unwrap())
        .unwrap()
        .map(|r| (r.unwrap().1.value().len() - 1) / 8)
        .collect();
    (rows, empty)
}

#[tokio::test]
async fn schema_v5_fixture_moves_its_session_keys_beside_their_events() {
    let s = on_fixture(5).await;
    serves_indicator_and_whitelist(&s).await;
    let (_dir, data) = stopped_at_current_schema(s).await;
    // Two events, the session and its two usernames: one session's row.
    assert_eq!(dedup_rows(&data), (vec![5], true));
}

#[tokio::test]
async fn schema_v7_fixture_folds_its_dedup_keys_into_one_row_per_session() {
    let s = on_fixture(7).await;
    serves_indicator_and_whitelist(&s).await;
    let (_dir, data) = stopped_at_current_schema(s).await;
    assert_eq!(dedup_rows(&data), (vec![5], true));
}

#[tokio::test]
async fn schema_v6_fixture_moves_feed_positions_into_the_records() {
    use sikker::store::tables::{IP_FEEDPOS, MODSEQ_IP};
    let ip: sikker::domain::IpKey = "45.9.9.9".parse().unwrap();
    // The position as schema 6 kept it, read from a copy of the fixture.
    let before = {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("v6.redb");
        std::fs::copy(fixture(6), &copy).unwrap();
        let db = redb::Database::create(&copy).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let t = txn.open_table(IP_FEEDPOS).unwrap();
        redb::ReadableTable::get(&t, ip.0).unwrap().unwrap().value()
    };
    let s = on_fixture(6).await;
    serves_indicator_and_whitelist(&s).await;
    let (_dir, data) = stopped_at_current_schema(s).await;
    let db = redb::Database::create(data.join(sikker::store::DB_FILE)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert!(redb::ReadableTableMetadata::is_empty(&txn.open_table(IP_FEEDPOS).unwrap()).unwrap());
    let pos = sikker::store::feed::position(&txn, ip).unwrap().unwrap();
    assert_eq!(
        (pos.created_ms, pos.modified_ms, pos.seq),
        before,
        "the position moved into the record unchanged"
    );
    let order = txn.open_table(MODSEQ_IP).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&order, pos.key())
            .unwrap()
            .unwrap()
            .value(),
        ip.0
    );
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join(sikker::store::DB_FILE);
    std::fs::copy(fixture(4), &db).unwrap();
    let newer = sikker::store::migrate::CURRENT + 1;
    {
        let d = redb::Database::create(&db).unwrap();
        let txn = d.begin_write().unwrap();
        sikker::store::meta::set_schema_version(&txn, newer).unwrap();
        txn.commit().unwrap();
    }
    let Err(e) = sikker::store::Store::open(&db) else {
        panic!("a database from a newer version must be refused")
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("schema version {newer}"))
            && msg.contains("newer version of sikker")
            && msg.contains(&format!(
                "supports up to {}",
                sikker::store::migrate::CURRENT
            )),
        "{msg}"
    );
    // The operator sees the same words from the CLI, and the version stays.
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sikker"));
    serve
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), serve.output())
        .await
        .expect("the server must refuse to start, not run")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newer version of sikker"), "{stderr}");
    let d = redb::Database::create(&db).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&d).unwrap();
    assert_eq!(
        sikker::store::meta::schema_version(&txn).unwrap(),
        Some(newer),
        "a refused database is not migrated"
    );
}
