//! Accounts and web sessions against the real server: sign-up in each
//! registration mode, e-mail verification, keys, cookies with the policy's
//! attributes, CSRF, refresh rotation and reuse detection, forged and
//! expired tokens, lockout, password reset and change, and admin actions.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::smtp::SmtpSink;

/// A browser-like client keeping the session cookies by hand, so tests see
/// exactly what the server sets.
struct Browser<'a> {
    s: &'a TestServer,
    jar: HashMap<String, String>,
    /// Set-Cookie lines of the last response.
    set: Vec<String>,
}

impl<'a> Browser<'a> {
    fn new(s: &'a TestServer) -> Self {
        Self {
            s,
            jar: HashMap::new(),
            set: vec![],
        }
    }

    fn cookie_header(&self, path: &str) -> String {
        self.jar
            .iter()
            .filter(|(k, _)| path.starts_with("/v1/session") || k.as_str() != "refresh_token")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (StatusCode, Value) {
        let mut req = self
            .s
            .client
            .request(method, self.s.url(path))
            .header("cookie", self.cookie_header(path))
            .header("user-agent", "it-browser/1.0");
        if csrf && let Some(t) = self.jar.get("csrf_token") {
            req = req.header("x-csrf-token", t.clone());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        self.set = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for line in &self.set {
            let (kv, _) = line.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body), true)
            .await
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None, false).await
    }

    async fn login(&mut self, login: &str, password: &str, remember: bool) -> (StatusCode, Value) {
        self.post(
            "/v1/session/login",
            json!({"login": login, "password": password, "remember": remember}),
        )
        .await
    }
}

const PW: &str = "Fjord-Lantern-2026";

fn signup(name: &str) -> Value {
    json!({
        "username": name, "email": format!("{name}@example.org"), "password": PW,
        "first_name": "Kari", "last_name": "Nordmann", "country": "NO",
        "age_confirmed": true,
    })
}

/// The token of the last link e-mailed to `to` (`…#token=…`), as the
/// real SMTP server received it.
async fn mailed_token(m: &SmtpSink, to: &str, subject: &str) -> String {
    let mail = m.last_to(to, subject).await;
    mail["body"]
        .as_str()
        .unwrap()
        .split("#token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no link in {mail}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn server(extra: &[&str]) -> (TestServer, SmtpSink) {
    let m = SmtpSink::start();
    let mut flags = m.flags();
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    (TestServer::start_with(&refs).await, m)
}

async fn open_server() -> (TestServer, SmtpSink) {
    server(&["--registration", "open"]).await
}

/// Registers and verifies `name`, then signs in.
async fn signed_in<'a>(s: &'a TestServer, m: &SmtpSink, name: &str) -> Browser<'a> {
    let mut b = Browser::new(s);
    let (st, v) = b.post("/v1/account/register", signup(name)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let token = mailed_token(m, &format!("{name}@example.org"), "Confirm").await;
    let (st, _) = b
        .post("/v1/account/verify-email", json!({"token": token}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = b.login(name, PW, false).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    b
}

async fn account_count(s: &TestServer) -> usize {
    s.handle().services.list_accounts().await.unwrap().len()
}

#[tokio::test]
async fn registration_modes_and_bad_sign_ups_change_nothing() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let (st, v) = b.post("/v1/account/register", signup("kari")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "invite-only by default");
    assert_eq!(v["field"], "invite");
    let mut with_bad_invite = signup("kari");
    with_bad_invite["invite"] = json!("not-a-code");
    let (st, v) = b.post("/v1/account/register", with_bad_invite).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invite"))
    );
    let code = s
        .handle()
        .services
        .create_invite(0, Duration::from_secs(3600))
        .await
        .unwrap();
    let mut invited = signup("kari");
    invited["invite"] = json!(code);
    let (st, _) = b.post("/v1/account/register", invited.clone()).await;
    assert_eq!(st, StatusCode::CREATED);
    invited["username"] = json!("kari2");
    invited["email"] = json!("kari2@example.org");
    let (st, v) = b.post("/v1/account/register", invited).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invite")),
        "an invitation works once"
    );

    let closed = TestServer::start_with(&["--registration", "closed"]).await;
    let (st, _) = Browser::new(&closed)
        .post("/v1/account/register", signup("ola"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (s, _m) = open_server().await;
    let mut b = Browser::new(&s);
    assert_eq!(
        b.post("/v1/account/register", signup("kari")).await.0,
        StatusCode::CREATED
    );
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"username": "KARI", "email": "other@example.org"}),
            StatusCode::CONFLICT,
            "username",
        ),
        (
            json!({"username": "other", "email": "Kari@Example.org"}),
            StatusCode::CONFLICT,
            "email",
        ),
        (
            json!({"username": "x".repeat(33)}),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            json!({"email": "kari@@example.org"}),
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (json!({"country": "XX"}), StatusCode::BAD_REQUEST, "country"),
        (json!({"vat_id": "12"}), StatusCode::BAD_REQUEST, "vat_id"),
        (
            json!({"account_type": "company"}),
            StatusCode::BAD_REQUEST,
            "company",
        ),
        (
            json!({"first_name": "y".repeat(101)}),
            StatusCode::BAD_REQUEST,
            "first_name",
        ),
        (
            json!({"age_confirmed": false}),
            StatusCode::BAD_REQUEST,
            "age_confirmed",
        ),
        (
            json!({"password": "password123"}),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            json!({"password": "short"}),
            StatusCode::BAD_REQUEST,
            "password",
        ),
    ];
    for (patch, status, field) in cases {
        let mut body = signup("newbie");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = b.post("/v1/account/register", body).await;
        assert_eq!(st, status, "{patch}: {v}");
        assert!(
            v["field"] == field || v["error"].as_str().unwrap().starts_with(field),
            "{patch}: {v}"
        );
    }
    let (st, _) = b
        .send(reqwest::Method::POST, "/v1/account/register", None, false)
        .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        account_count(&s).await,
        1,
        "no bad sign-up created anything"
    );
}

#[tokio::test]
async fn verification_cookies_keys_and_csrf() {
    let (s, m) = open_server().await;
    let mut b = Browser::new(&s);
    b.post("/v1/account/register", signup("kari")).await;
    b.login("kari@example.org", PW, false).await;
    // The cookies carry exactly the attributes the privacy policy names.
    let lines = b.set.join("\n");
    assert!(
        lines.contains("access_token=")
            && lines.contains("Max-Age=900; Path=/; Secure; SameSite=Lax; HttpOnly"),
        "{lines}"
    );
    assert!(
        lines.contains("Max-Age=86400; Path=/v1/session; Secure; SameSite=Lax; HttpOnly"),
        "{lines}"
    );
    let jwt = b.jar["access_token"].clone();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "HS256", "{header}");
    assert_eq!(header["typ"], "JWT", "{header}");
    assert!(
        header["kid"].is_string(),
        "the signing key is named: {header}"
    );

    // Keys need a verified address.
    let (st, v) = b.post("/v1/account/keys", json!({"name": "laptop"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let token = mailed_token(&m, "kari@example.org", "Confirm").await;
    let (st, v) = b
        .post("/v1/account/verify-email", json!({"token": token}))
        .await;
    assert_eq!(
        (st, v["account"]["emailVerified"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (st, _) = b
        .post(
            "/v1/account/verify-email",
            json!({"token": format!("{token}x")}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a forged link is refused");

    // CSRF: writes with cookies need the echoed token.
    let (st, v) = b
        .send(
            reqwest::Method::POST,
            "/v1/account/keys",
            Some(json!({"name": "x"})),
            false,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("CSRF"));
    let good = b.jar.remove("csrf_token").unwrap();
    b.jar.insert("csrf_token".into(), "0".repeat(32));
    assert_eq!(
        b.post("/v1/account/keys", json!({"name": "x"})).await.0,
        StatusCode::FORBIDDEN
    );
    b.jar.insert("csrf_token".into(), good);
    assert!(
        s.handle().services.list_api_keys().unwrap().is_empty(),
        "refused writes wrote nothing"
    );

    let (st, v) = b.post("/v1/account/keys", json!({"name": "laptop"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_free_"));
    let r = s
        .client
        .get(s.url("/v1/key/check/45.155.205.9"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, v) = b.get("/v1/account/keys").await;
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert!(v["keys"][0].get("key").is_none(), "a key is shown once");
    let id = v["keys"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) = b
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/account/keys/{id}"),
            None,
            true,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let r = s
        .client
        .get(s.url("/v1/key/status"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a revoked key is refused"
    );

    // Another account cannot revoke this account's keys.
    let mut other = signed_in(&s, &m, "ola").await;
    let (st, _) = other
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/account/keys/{id}"),
            None,
            true,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_family() {
    let (s, m) = open_server().await;
    let mut b = signed_in(&s, &m, "kari").await;
    let first = b.jar["refresh_token"].clone();
    let (st, v) = b.post("/v1/session/refresh", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let second = b.jar["refresh_token"].clone();
    assert_ne!(first, second, "rotated on use");
    assert_eq!(b.get("/v1/account").await.0, StatusCode::OK);

    // The old token comes back: the whole family ends.
    let mut thief = Browser::new(&s);
    thief.jar = b.jar.clone();
    thief.jar.insert("refresh_token".into(), first);
    let (st, v) = thief.post("/v1/session/refresh", json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        thief.set.iter().any(|c| c.starts_with("refresh_token=;")),
        "cookies cleared"
    );
    let (st, _) = b.post("/v1/session/refresh", json!({})).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the legitimate token of the family is dead too"
    );
    assert_eq!(
        b.get("/v1/account").await.0,
        StatusCode::UNAUTHORIZED,
        "and its access token"
    );

    // Refresh without the CSRF echo is refused.
    let mut c = signed_in(&s, &m, "ola").await;
    let (st, _) = c
        .send(reqwest::Method::POST, "/v1/session/refresh", None, false)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Access tokens live 15 minutes; refresh tokens 24 hours.
    s.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(c.get("/v1/account").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.post("/v1/session/refresh", json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(c.get("/v1/account").await.0, StatusCode::OK);
    s.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        c.post("/v1/session/refresh", json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Remember me: 30 days.
    let mut r = Browser::new(&s);
    let (st, _) = r.login("ola", PW, true).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        r.set
            .iter()
            .any(|c| c.starts_with("refresh_token=") && c.contains("Max-Age=2592000"))
    );
    s.clock.advance(Duration::from_secs(29 * 24 * 3600));
    assert_eq!(
        r.post("/v1/session/refresh", json!({})).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_expired_and_alg_none_tokens_are_refused() {
    let (s, m) = open_server().await;
    let mut b = signed_in(&s, &m, "kari").await;
    let jwt = b.jar["access_token"].clone();
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(claims["sub"].as_u64().unwrap() + 1);
    let forged_body = b64.encode(claims.to_string());
    let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    for forged in [
        format!("{}.{forged_body}.{}", parts[0], parts[2]),
        format!("{none_header}.{}.", parts[1]),
        format!("{none_header}.{forged_body}."),
        "garbage".to_owned(),
    ] {
        let mut f = Browser::new(&s);
        f.jar.insert("access_token".into(), forged.clone());
        let (st, v) = f.get("/v1/account").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{forged}: {v}");
    }
    assert_eq!(b.get("/v1/account").await.0, StatusCode::OK);
    let (st, _) = b.post("/v1/session/logout", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let mut replay = Browser::new(&s);
    replay.jar.insert("access_token".into(), jwt);
    assert_eq!(
        replay.get("/v1/account").await.0,
        StatusCode::UNAUTHORIZED,
        "logout ends the access token too"
    );
}

#[tokio::test]
async fn lockout_per_account_and_source_without_revealing_accounts() {
    let (s, m) = open_server().await;
    let _ = signed_in(&s, &m, "kari").await;
    let mut b = Browser::new(&s);
    for who in ["kari", "nobody-here"] {
        for i in 0..5 {
            let (st, v) = b.login(who, "Wrong-Password-1", false).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{who} #{i}: {v}");
            assert_eq!(v["error"], "invalid username or password");
        }
        let r = s
            .client
            .post(s.url("/v1/session/login"))
            .json(&json!({"login": who, "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{who}");
        assert_eq!(r.headers()["retry-after"], "900");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"],
            "too many failed sign-in attempts; try again later"
        );
    }
    // Failed attempts on a real account are kept as authentication data.
    let a = s.handle().services.list_accounts().await.unwrap();
    let id = a.iter().find(|a| a.username == "kari").unwrap().id;
    let acc = s.handle().services.account(id).await.unwrap();
    assert_eq!(acc.auth.unwrap().failed_logins_ms.len(), 5);
    s.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        b.login("kari", PW, false).await.0,
        StatusCode::OK,
        "the lockout ends"
    );
}

#[tokio::test]
async fn password_reset_and_change_end_other_sessions() {
    let (s, m) = open_server().await;
    let mut b = signed_in(&s, &m, "kari").await;
    let mut other_device = Browser::new(&s);
    assert_eq!(
        other_device.login("kari", PW, false).await.0,
        StatusCode::OK
    );
    let before = m.messages().len();
    let (st, v) = b
        .post(
            "/v1/account/password-reset",
            json!({"email": "nobody@example.org"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    crate::common::smtp::settle().await;
    assert_eq!(m.messages().len(), before, "no mail for unknown addresses");
    let (st, _) = b
        .post(
            "/v1/account/password-reset",
            json!({"email": "KARI@example.org"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let token = mailed_token(&m, "kari@example.org", "Reset").await;
    let new_pw = "Glacier-Compass-2027";
    let (st, v) = b
        .post(
            "/v1/account/password-reset/confirm",
            json!({"token": token, "password": "password123"}),
        )
        .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("password"))
    );
    let (st, v) = b
        .post(
            "/v1/account/password-reset/confirm",
            json!({"token": token, "password": new_pw}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = b
        .post(
            "/v1/account/password-reset/confirm",
            json!({"token": token, "password": "Another-Pass-99"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a reset link works once");
    assert_eq!(
        b.get("/v1/account").await.0,
        StatusCode::UNAUTHORIZED,
        "reset ends every session"
    );
    assert_eq!(b.login("kari", PW, false).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(b.login("kari", new_pw, false).await.0, StatusCode::OK);

    // Change: needs the current password; other devices are signed out.
    assert_eq!(
        other_device.login("kari", new_pw, false).await.0,
        StatusCode::OK
    );
    let (st, v) = b
        .post(
            "/v1/account/password",
            json!({"current_password": "nope", "new_password": "Third-Password-42"}),
        )
        .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("current_password"))
    );
    let (st, _) = b
        .post(
            "/v1/account/password",
            json!({"current_password": new_pw, "new_password": "Third-Password-42"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        b.get("/v1/account").await.0,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        other_device.get("/v1/account").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, v) = b.get("/v1/account").await;
    let id = v["account"]["id"].as_u64().unwrap();
    let a = s.handle().services.account(id).await.unwrap();
    assert_eq!(
        a.auth.unwrap().password_changed_ms.len(),
        3,
        "every change is timestamped"
    );
}

#[tokio::test]
async fn sessions_list_and_sign_out_everywhere() {
    let (s, m) = open_server().await;
    let mut b = signed_in(&s, &m, "kari").await;
    let mut phone = Browser::new(&s);
    phone.login("kari", PW, true).await;
    let (_, v) = b.get("/v1/account/sessions").await;
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    assert_eq!(list[0]["userAgent"], "it-browser/1.0");
    let phone_id = list.iter().find(|x| x["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = b
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/account/sessions/{phone_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(phone.get("/v1/account").await.0, StatusCode::UNAUTHORIZED);
    let (st, _) = b.post("/v1/account/sessions/revoke-all", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b.get("/v1/account").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bootstrap_admin_tiers_roles_and_disabling() {
    let (s, m) = server(&[]).await;
    let token = s.handle().bootstrap_token.clone().unwrap();
    let mut admin = Browser::new(&s);
    let mut body = signup("root-admin");
    body["token"] = json!("wrong");
    assert_eq!(
        admin.post("/v1/account/bootstrap", body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    body["token"] = json!(token);
    let (st, v) = admin.post("/v1/account/bootstrap", body.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["account"]["role"], "admin");
    body["username"] = json!("second-admin");
    body["email"] = json!("second@example.org");
    assert_eq!(
        admin.post("/v1/account/bootstrap", body).await.0,
        StatusCode::FORBIDDEN,
        "used once"
    );
    admin.login("root-admin", PW, false).await;
    let (st, v) = admin
        .post("/v1/admin/invites", json!({"valid_days": 2}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut invited = signup("kari");
    invited["invite"] = v["invite"].clone();
    let mut user = Browser::new(&s);
    assert_eq!(
        user.post("/v1/account/register", invited).await.0,
        StatusCode::CREATED
    );
    let t = mailed_token(&m, "kari@example.org", "Confirm").await;
    user.post("/v1/account/verify-email", json!({"token": t}))
        .await;
    user.login("kari", PW, false).await;
    let (_, v) = user.post("/v1/account/keys", json!({"name": "ci"})).await;
    let key = v["key"].as_str().unwrap().to_owned();

    // Users cannot reach admin endpoints.
    assert_eq!(user.get("/v1/admin/users").await.0, StatusCode::FORBIDDEN);
    let (st, v) = admin.get("/v1/admin/users").await;
    assert_eq!(st, StatusCode::OK);
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(
        users
            .iter()
            .all(|u| u.get("passwordHash").is_none() && u.get("auth").is_none())
    );
    let kari = users.iter().find(|u| u["username"] == "kari").unwrap()["id"]
        .as_u64()
        .unwrap();

    // A tier change reaches the account's keys at once.
    let limit = |r: &reqwest::Response| r.headers()["x-daily-limit"].to_str().unwrap().to_owned();
    let r = s
        .client
        .get(s.url("/v1/key/check/45.155.205.9"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(limit(&r), "1000");
    let (st, v) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/admin/users/{kari}"),
            Some(json!({"tier": "tier_3"})),
            true,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = s
        .client
        .get(s.url("/v1/key/check/45.155.205.9"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(limit(&r), "30000");
    let (st, v) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/admin/users/{kari}"),
            Some(json!({"tier": "gold"})),
            true,
        )
        .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("tier"))
    );

    // Disabling ends sessions and stops keys.
    let (st, _) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/admin/users/{kari}"),
            Some(json!({"disabled": true})),
            true,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(user.get("/v1/account").await.0, StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .get(s.url("/v1/key/check/45.155.205.9"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(user.login("kari", PW, false).await.0, StatusCode::FORBIDDEN);
}
