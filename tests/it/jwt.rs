//! JWT signing-key rotation against the real server: key ids in the token
//! header, the previous key still verifying after one rotation and dropped
//! after the next, unknown key ids refused, rotation over the admin socket,
//! offline, and when the current key is due.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");
const PW: &str = "Fjord-Lantern-2026";

/// Registers `name` and signs in; the access token.
async fn signed_in(s: &TestServer, name: &str) -> String {
    let r = s
        .client
        .post(s.url("/v1/account/register"))
        .json(
            &json!({"username": name, "email": format!("{name}@example.org"),
                      "password": PW, "first_name": "Kari", "last_name": "Nordmann",
                      "country": "NO", "age_confirmed": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .client
        .post(s.url("/v1/session/login"))
        .json(&json!({"login": name, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .strip_prefix("access_token=")
                .map(str::to_owned)
        })
        .next()
        .expect("an access token cookie")
}

async fn me(s: &TestServer, token: &str) -> StatusCode {
    s.client
        .get(s.url("/v1/account"))
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap()
        .status()
}

fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap()
}

fn kid(token: &str) -> u32 {
    header(token)["kid"].as_str().unwrap().parse().unwrap()
}

/// Runs `sikker admin ARGS --json`; off the test's runtime, which also
/// runs the server answering on the admin socket.
async fn admin_json(data: &Path, args: &[&str]) -> Value {
    let mut cmd = Command::new(BIN);
    cmd.args(["admin", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .arg("--json")
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kids(v: &Value) -> Vec<u64> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn tokens_of_the_previous_key_live_through_one_rotation_not_two() {
    let s = TestServer::start_with(&["--registration", "open"]).await;
    let old = signed_in(&s, "kari").await;
    assert_eq!(header(&old)["alg"], "HS256");
    let k1 = kid(&old);
    assert_eq!(me(&s, &old).await, StatusCode::OK);

    // Over the admin socket of the running server.
    let v = admin_json(&s.data_dir, &["jwt", "rotate"]).await;
    assert_eq!(kids(&v), [u64::from(k1), u64::from(k1) + 1], "{v}");
    assert_eq!(
        me(&s, &old).await,
        StatusCode::OK,
        "a token of the previous key stays valid"
    );
    let newer = signed_in(&s, "ola").await;
    assert_eq!(kid(&newer), k1 + 1, "new tokens carry the new key id");
    assert_eq!(me(&s, &newer).await, StatusCode::OK);

    s.handle().services.rotate_jwt_key().await.unwrap();
    assert_eq!(
        me(&s, &old).await,
        StatusCode::UNAUTHORIZED,
        "two rotations later the key is gone"
    );
    assert_eq!(me(&s, &newer).await, StatusCode::OK);
    let listed = admin_json(&s.data_dir, &["jwt", "list"]).await;
    assert_eq!(
        kids(&listed),
        [u64::from(k1) + 1, u64::from(k1) + 2],
        "{listed}"
    );
    assert_eq!(listed["keys"][1]["current"], true);
}

#[tokio::test]
async fn unknown_or_missing_key_ids_are_refused() {
    let s = TestServer::start_with(&["--registration", "open"]).await;
    let t = signed_in(&s, "kari").await;
    let parts: Vec<&str> = t.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let k = kid(&t);
    for h in [
        format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, k + 7),
        r#"{"alg":"HS256","typ":"JWT","kid":"not-a-key"}"#.to_owned(),
        r#"{"alg":"HS256","typ":"JWT"}"#.to_owned(),
    ] {
        let forged = format!("{}.{}.{}", b64.encode(&h), parts[1], parts[2]);
        let r = s
            .client
            .get(s.url("/v1/account"))
            .header("cookie", format!("access_token={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{h}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false, "{v}");
    }
    assert_eq!(me(&s, &t).await, StatusCode::OK);
}

#[tokio::test]
async fn keys_rotate_when_due_offline_and_stay_private() {
    let s = TestServer::start_with(&["--registration", "open", "--jwt-rotate-days", "10"]).await;
    let services = &s.handle().services;
    let first = services.jwt_keys();
    assert_eq!(first.len(), 1);
    assert!(!services.rotate_jwt_key_if_due().await.unwrap());
    s.clock.advance(std::time::Duration::from_secs(9 * 86_400));
    assert!(!services.rotate_jwt_key_if_due().await.unwrap());
    s.clock.advance(std::time::Duration::from_secs(86_400));
    assert!(
        services.rotate_jwt_key_if_due().await.unwrap(),
        "a key ten days old is due"
    );
    let after = services.jwt_keys();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].kid, first[0].kid);
    assert!(after[1].current && after[1].kid == first[0].kid + 1);

    // The key material: seeds in the database (mode 0600), turned into
    // signing keys only with the secret key file (mode 0600).
    use std::os::unix::fs::PermissionsExt;
    for f in [sikker::store::DB_FILE, "secret.key"] {
        let p = s.data_dir.join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }

    // Offline, with the server stopped; the restarted server signs with the new key.
    let (dir, data) = s.into_dirs().await;
    let v = admin_json(&data, &["jwt", "rotate"]).await;
    // (The offline CLI runs on the real clock, months after the test's
    // manual one, so opening may have rotated the overdue key first.)
    let newest = kids(&v)[1];
    assert!(newest > u64::from(after[1].kid), "{v}");
    let s = TestServer::start_in(dir, data, &["--registration", "open"]).await;
    let t = signed_in(&s, "kari").await;
    assert_eq!(u64::from(kid(&t)), newest);
    assert_eq!(me(&s, &t).await, StatusCode::OK);
}
