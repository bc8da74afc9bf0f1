//! Alerts against the real server: create/list/delete in the SikkerAPI
//! shapes, every kind of bad input, per-tier limits, and notifications
//! delivered to a real SMTP server (aiosmtpd, started by the test) and to a
//! webhook receiver whose signatures are verified — with the cool-down on a
//! stepped clock, retries with backoff, and an undelivered message that
//! survives a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::smtp::{SmtpSink, free_port};
use crate::common::{T0, TestServer, eventually};

// ---------------------------------------------------------------- helpers

async fn key(s: &TestServer, account: Option<u64>) -> (String, u64) {
    let (k, rec) = s
        .handle()
        .services
        .create_api_key("alerts", "free", account.map(|a| (a, T0)))
        .await
        .unwrap();
    (k, rec.account)
}

async fn post(s: &TestServer, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &TestServer, key: &str, path: &str) -> Value {
    let r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn delete(s: &TestServer, key: &str, path: &str) -> (StatusCode, Value) {
    let r = s
        .client
        .delete(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn list(s: &TestServer, key: &str, kind: &str) -> Vec<Value> {
    get(s, key, &format!("/v1/key/{kind}-alerts"))
        .await
        .get("alerts")
        .and_then(Value::as_array)
        .cloned()
        .expect("an alerts array")
}

/// One webhook POST as received.
#[derive(Clone, Debug)]
struct Hook {
    signature: String,
    delivery: String,
    body: String,
}

/// The test CA's certificate file and the receiver's TLS config: one
/// self-signed certificate for 127.0.0.1, which the server is told to trust
/// with `--webhook-ca-file`.
fn webhook_tls() -> &'static (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    static TLS: std::sync::OnceLock<(std::path::PathBuf, Arc<rustls::ServerConfig>)> =
        std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("webhook-ca.pem");
        std::fs::write(&path, ck.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        (path, Arc::new(cfg))
    })
}

/// An HTTPS webhook receiver on 127.0.0.1 that answers with `status`.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Hook>>>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (g, st) = (got.clone(), status.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(webhook_tls().1.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                let (g, st, acceptor) = (g.clone(), st.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (g, st) = (g.clone(), st.clone());
                            async move {
                                let h = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_owned()
                                };
                                let (signature, delivery) =
                                    (h("x-sikker-signature"), h("x-sikker-delivery"));
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                g.lock().unwrap().push(Hook {
                                    signature,
                                    delivery,
                                    body: String::from_utf8(body.to_vec()).unwrap(),
                                });
                                let mut resp = http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from_static(b"ok"),
                                ));
                                *resp.status_mut() =
                                    http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            got,
            status,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/hook", self.addr)
    }

    fn hooks(&self) -> Vec<Hook> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Hook> {
        eventually(&format!("{n} webhook calls"), || async {
            let h = self.hooks();
            (h.len() >= n).then_some(h)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks `t=<t>,v1=<hex>` against an HMAC-SHA256 of "<t>.<body>".
fn verify(secret: &str, hook: &Hook) -> i64 {
    let (t, v1) = hook
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("bad signature header {:?}", hook.signature));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hex::decode(v1).unwrap();
    ring::hmac::verify(&key, format!("{t}.{}", hook.body).as_bytes(), &tag)
        .expect("webhook signature verifies with the secret shown at creation");
    assert!(
        ring::hmac::verify(&key, format!("{t}.{}x", hook.body).as_bytes(), &tag).is_err(),
        "a changed body must not verify"
    );
    t.parse().unwrap()
}

fn smtp_flags(port: u16) -> Vec<String> {
    [
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port.to_string(),
        "--smtp-tls",
        "plain",
        "--smtp-from",
        "sikker alerts <alerts@sikker.test>",
        "--webhook-allow-http",
        "--webhook-ca-file",
        webhook_tls().0.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn start_with_smtp(port: u16) -> TestServer {
    let flags = smtp_flags(port);
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start_with(&refs).await
}

async fn report(s: &TestServer, key: &str, ip: &str) {
    let (status, v) = post(
        s,
        key,
        "/v1/key/report",
        &json!({"ip": ip, "category": "brute_force", "protocol": "ssh"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

async fn deliveries(s: &TestServer, key: &str) -> Vec<Value> {
    get(s, key, "/v1/key/alerts/deliveries").await["deliveries"]
        .as_array()
        .cloned()
        .unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn create_list_delete_in_the_cli_shapes() {
    let s = TestServer::start().await;
    let (k, account) = key(&s, None).await;

    let (st, ip) = post(
        &s,
        &k,
        "/v1/key/ip-alerts",
        &json!({"ip": "45.155.205.9", "label": "production server"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{ip}");
    assert!(ip["id"].is_string());
    assert_eq!(ip["ip"], "45.155.205.9");
    assert_eq!(ip["label"], "production server");
    assert_eq!(ip["enabled"], true);
    assert_eq!(ip["emailNotifications"], false);
    assert_eq!(ip["lastAlertedAt"], Value::Null);
    assert_eq!(ip["totalAlerts"], 0);
    assert_eq!(ip["matchCount"], 0);
    assert_eq!(ip["createdAt"], "2026-03-21T12:00:00Z");

    // The range's host bits are cleared; the free tier allows /28.
    let (st, r) = post(
        &s,
        &k,
        "/v1/key/range-alerts",
        &json!({"cidr": "45.155.206.7/28"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["cidr"], "45.155.206.0/28");
    assert_eq!(r["networkAddress"], "45.155.206.0");
    assert_eq!(r["prefixLength"], 28);
    assert_eq!(r["uniqueMatches"], 0);
    assert_eq!(r["label"], Value::Null);

    let (st, u) = post(
        &s,
        &k,
        "/v1/key/username-alerts",
        &json!({"username": "Deploy", "label": "CI/CD user"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["username"], "deploy", "usernames are lower-cased");

    let (st, e) = post(
        &s,
        &k,
        "/v1/key/email-alerts",
        &json!({"email": "Ops@Company.com"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    assert_eq!(e["email"], "ops@company.com");

    for kind in ["ip", "range", "username", "email"] {
        assert_eq!(list(&s, &k, kind).await.len(), 1, "{kind}");
    }
    assert_eq!(list(&s, &k, "ip").await[0], ip);

    // Another key of the same account sees the account's alerts.
    let (k2, _) = key(&s, Some(account)).await;
    assert_eq!(list(&s, &k2, "ip").await[0]["id"], ip["id"]);

    let status = get(&s, &k, "/v1/key/status").await;
    assert_eq!(
        status["alerts"],
        json!({
            "ipAlerts": {"current": 1, "limit": 5},
            "rangeAlerts": {"current": 1, "limit": 1},
            "usernameAlerts": {"current": 1, "limit": 5},
            "emailAlerts": {"current": 1, "limit": 5},
        })
    );

    let id = ip["id"].as_str().unwrap();
    let (st, v) = delete(&s, &k, &format!("/v1/key/ip-alerts/{id}")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"success": true})));
    assert!(list(&s, &k, "ip").await.is_empty());
    let (st, _) = delete(&s, &k, &format!("/v1/key/ip-alerts/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "deleted twice");
    let status = get(&s, &k, "/v1/key/status").await;
    assert_eq!(status["alerts"]["ipAlerts"]["current"], 0);
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let s = TestServer::start().await;
    let (k, _) = key(&s, None).await;
    let (other, _) = key(&s, None).await;

    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "ip",
            json!({"ip": "1.2.3"}),
            StatusCode::BAD_REQUEST,
            "invalid IP",
        ),
        (
            "ip",
            json!({"ip": "10.0.0.1"}),
            StatusCode::BAD_REQUEST,
            "private",
        ),
        (
            "ip",
            json!({"label": "x"}),
            StatusCode::BAD_REQUEST,
            "ip: is required",
        ),
        (
            "ip",
            json!({"ip": 1234}),
            StatusCode::BAD_REQUEST,
            "must be a string",
        ),
        (
            "ip",
            json!(["45.155.205.9"]),
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            "ip",
            json!({"ip": "45.155.205.9", "label": "x".repeat(101)}),
            StatusCode::BAD_REQUEST,
            "label",
        ),
        (
            "ip",
            json!({"ip": "45.155.205.9", "webhookUrl": "http://127.0.0.1:9/x"}),
            StatusCode::BAD_REQUEST,
            "https",
        ),
        (
            "ip",
            json!({"ip": "45.155.205.9", "notifyEmail": "ops@example.com"}),
            StatusCode::BAD_REQUEST,
            "not configured",
        ),
        (
            "range",
            json!({"cidr": "45.155.206.0"}),
            StatusCode::BAD_REQUEST,
            "CIDR",
        ),
        (
            "range",
            json!({"cidr": "45.155.206.0/33"}),
            StatusCode::BAD_REQUEST,
            "CIDR",
        ),
        (
            "range",
            json!({"cidr": "45.155.206.0/24"}),
            StatusCode::BAD_REQUEST,
            "at most /28",
        ),
        (
            "range",
            json!({"cidr": "2a00:1450::/64"}),
            StatusCode::BAD_REQUEST,
            "/124 for IPv6",
        ),
        (
            "username",
            json!({"username": "  "}),
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            "username",
            json!({"username": "a\u{1}b"}),
            StatusCode::BAD_REQUEST,
            "control",
        ),
        (
            "email",
            json!({"email": "ops@"}),
            StatusCode::BAD_REQUEST,
            "e-mail",
        ),
        (
            "email",
            json!({"email": "no-at.example"}),
            StatusCode::BAD_REQUEST,
            "e-mail",
        ),
    ];
    for (kind, body, want, says) in cases {
        let (st, v) = post(&s, &k, &format!("/v1/key/{kind}-alerts"), &body).await;
        assert_eq!(st, want, "{kind} {body}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(says),
            "{kind} {body}: error {msg:?} lacks {says:?}"
        );
    }
    let r = s
        .client
        .post(s.url("/v1/key/ip-alerts"))
        .bearer_auth(&k)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for kind in ["ip", "range", "username", "email"] {
        assert!(list(&s, &k, kind).await.is_empty(), "{kind} changed");
    }

    // Duplicates (after normalisation) are 409.
    let (st, _) = post(
        &s,
        &k,
        "/v1/key/username-alerts",
        &json!({"username": "root"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = post(
        &s,
        &k,
        "/v1/key/username-alerts",
        &json!({"username": "ROOT "}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already exists"));
    // The same value in another account is no duplicate.
    let (st, _) = post(
        &s,
        &other,
        "/v1/key/username-alerts",
        &json!({"username": "root"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    // The free tier's limits: 5 IP alerts, 1 range.
    for i in 1..=5 {
        let (st, v) = post(
            &s,
            &k,
            "/v1/key/ip-alerts",
            &json!({"ip": format!("45.155.205.{i}")}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = post(&s, &k, "/v1/key/ip-alerts", &json!({"ip": "45.155.205.6"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("limit reached (5"),
        "{v}"
    );
    assert_eq!(list(&s, &k, "ip").await.len(), 5);
    let (st, _) = post(
        &s,
        &k,
        "/v1/key/range-alerts",
        &json!({"cidr": "45.155.206.0/28"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = post(
        &s,
        &k,
        "/v1/key/range-alerts",
        &json!({"cidr": "45.155.207.0/28"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Unknown ids, ids of another kind and another account's ids are 404
    // and delete nothing.
    let theirs = list(&s, &other, "username").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine_ip = list(&s, &k, "ip").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "/v1/key/ip-alerts/999999".to_owned(),
        "/v1/key/ip-alerts/not-a-number".to_owned(),
        format!("/v1/key/username-alerts/{theirs}"),
        format!("/v1/key/username-alerts/{mine_ip}"),
    ] {
        let (st, v) = delete(&s, &k, &path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");
    }
    assert_eq!(list(&s, &other, "username").await.len(), 1);
    assert_eq!(list(&s, &k, "ip").await.len(), 5);

    // Wrong methods are 405 with Allow.
    let r = s
        .client
        .put(s.url("/v1/key/ip-alerts"))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
    // And no key is 401.
    let r = s
        .client
        .get(s.url("/v1/key/ip-alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn matches_are_mailed_and_posted_once_per_cooldown() {
    let port = free_port();
    let sink = SmtpSink::start_on(port);
    let hooks = Receiver::start().await;
    let s = start_with_smtp(port).await;
    let (k, _) = key(&s, None).await;

    let (st, a) = post(
        &s,
        &k,
        "/v1/key/ip-alerts",
        &json!({"ip": "45.155.205.9", "label": "prod", "notifyEmail": "Ops@Example.com",
                "webhookUrl": hooks.url()}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["emailNotifications"], true);
    let secret = a["webhookSecret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(
        list(&s, &k, "ip").await[0].get("webhookSecret").is_none(),
        "the secret is shown once"
    );

    report(&s, &k, "45.155.205.9").await;
    let mail = sink.wait_for(1).await;
    assert_eq!(mail[0]["to"], json!(["ops@example.com"]));
    assert_eq!(mail[0]["from"], "alerts@sikker.test");
    let data = mail[0]["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: [sikker] IP alert: 45.155.205.9 (prod)"),
        "{data}"
    );
    assert!(
        data.contains("New matches since the last notification: 1"),
        "{data}"
    );
    let hook = &hooks.wait_for(1).await[0];
    assert_eq!(verify(&secret, hook), T0.0 / 1000);
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["type"], "alert.matched");
    assert_eq!(body["kind"], "ip");
    assert_eq!(body["watched"], "45.155.205.9");
    assert_eq!(body["matches"], 1);
    assert_eq!(body["alertId"], a["id"]);

    let a1 = &list(&s, &k, "ip").await[0];
    assert_eq!(a1["totalAlerts"], 1);
    assert_eq!(a1["matchCount"], 1);
    assert_eq!(a1["lastAlertedAt"], "2026-03-21T12:00:00Z");

    // Within the cool-down: counted, not sent.
    s.clock.advance(Duration::from_secs(600));
    report(&s, &k, "45.155.205.9").await;
    report(&s, &k, "45.155.205.9").await;
    let a2 = eventually("the second match to count", || async {
        let a = list(&s, &k, "ip").await.remove(0);
        (a["matchCount"] == 3).then_some(a)
    })
    .await;
    assert_eq!(
        a2["totalAlerts"], 1,
        "no second notification within the hour"
    );
    assert_eq!(sink.messages().len(), 1);

    // An hour after the first: one digest with both matches.
    s.clock.advance(Duration::from_secs(3000));
    let mail = sink.wait_for(2).await;
    let data = mail[1]["data"].as_str().unwrap();
    assert!(
        data.contains("New matches since the last notification: 2"),
        "{data}"
    );
    let hook = hooks.wait_for(2).await[1].clone();
    assert_eq!(verify(&secret, &hook), (T0.0 + 3_600_000) / 1000);
    let a3 = &list(&s, &k, "ip").await[0];
    assert_eq!(a3["totalAlerts"], 2);
    assert_eq!(a3["lastAlertedAt"], "2026-03-21T13:00:00Z");

    let log = eventually("four deliveries recorded as delivered", || async {
        let log = deliveries(&s, &k).await;
        (log.len() == 4 && log.iter().all(|d| d["status"] == "delivered")).then_some(log)
    })
    .await;
    for d in &log {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["alertId"], a["id"]);
    }
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test]
async fn sensor_events_match_ranges_usernames_and_emails() {
    let port = free_port();
    let sink = SmtpSink::start_on(port);
    let hooks = Receiver::start().await;
    let s = start_with_smtp(port).await;
    let (k, _) = key(&s, None).await;
    let (_, r) = post(
        &s,
        &k,
        "/v1/key/range-alerts",
        &json!({"cidr": "45.155.206.0/28", "label": "office", "webhookUrl": hooks.url()}),
    )
    .await;
    let secret = r["webhookSecret"].as_str().unwrap().to_owned();
    let (st, _) = post(
        &s,
        &k,
        "/v1/key/username-alerts",
        &json!({"username": "Deploy", "notifyEmail": "ops@example.com"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = post(
        &s,
        &k,
        "/v1/key/email-alerts",
        &json!({"email": "ceo@victim.example", "notifyEmail": "sec@example.com"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    let token = s.handle().services.create_sensor("hp").await.unwrap().0;
    let ev = |ip: &str, session: &str, kind: &str, extra: Value| {
        let mut e = json!({"ts": T0.0, "src_ip": ip, "protocol": "ssh", "session_id": session, "kind": kind});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e.to_string()
    };
    let batch = [
        ev("45.155.206.3", "s1", "auth", json!({"username": "DEPLOY"})),
        ev("45.155.206.3", "s1", "auth", json!({"username": "root"})),
        ev("45.155.206.4", "s2", "connect", json!({})),
        ev("45.155.206.99", "s3", "connect", json!({})),
        ev(
            "46.1.1.1",
            "m1",
            "mail",
            json!({"protocol": "smtp", "email": "CEO@victim.example"}),
        ),
    ]
    .join("\n");
    let resp = s.send_events(&token, batch).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let mail = sink.wait_for(2).await;
    let mut subjects: Vec<(String, String)> = mail
        .iter()
        .map(|m| {
            let data = m["data"].as_str().unwrap();
            let subject = data
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned();
            (m["to"][0].as_str().unwrap().to_owned(), subject)
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            (
                "ops@example.com".to_owned(),
                "[sikker] username alert: deploy".to_owned()
            ),
            (
                "sec@example.com".to_owned(),
                "[sikker] e-mail alert: ceo@victim.example".to_owned()
            ),
        ]
    );
    let hook = &hooks.wait_for(1).await[0];
    verify(&secret, hook);
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["kind"], "range");
    let mut matched: Vec<&str> = body["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    matched.sort_unstable();
    assert_eq!(matched, ["45.155.206.3", "45.155.206.4"]);
    assert_eq!(body["matches"], 3, "three events came from the range");
    let range = &list(&s, &k, "range").await[0];
    assert_eq!(range["uniqueMatches"], 2);
    assert_eq!(range["matchCount"], 3);
    assert_eq!(list(&s, &k, "username").await[0]["matchCount"], 1);
    assert_eq!(list(&s, &k, "email").await[0]["matchCount"], 1);
}

#[tokio::test]
async fn undelivered_notifications_are_retried_and_survive_a_restart() {
    // Nothing listens on the SMTP port yet; the webhook answers 503.
    let port = free_port();
    let hooks = Receiver::start().await;
    hooks.status.store(503, Ordering::SeqCst);
    let s = start_with_smtp(port).await;
    let (k, _) = key(&s, None).await;
    let (_, a) = post(
        &s,
        &k,
        "/v1/key/ip-alerts",
        &json!({"ip": "45.155.205.9", "notifyEmail": "ops@example.com", "webhookUrl": hooks.url()}),
    )
    .await;
    let secret = a["webhookSecret"].as_str().unwrap().to_owned();
    report(&s, &k, "45.155.205.9").await;

    let log = eventually("both first attempts to fail", || async {
        let log = deliveries(&s, &k).await;
        (log.len() == 2 && log.iter().all(|d| d["attempts"] == 1)).then_some(log)
    })
    .await;
    for d in &log {
        assert_eq!(d["status"], "pending", "{d}");
        assert_eq!(d["nextAttemptAt"], "2026-03-21T12:00:30Z", "30 s backoff");
        assert!(d["lastError"].is_string(), "{d}");
    }
    let hook_err = log.iter().find(|d| d["channel"] == "webhook").unwrap();
    assert!(
        hook_err["lastError"].as_str().unwrap().contains("503"),
        "{hook_err}"
    );
    assert_eq!(hooks.hooks().len(), 1);

    // A failed retry doubles the delay.
    s.clock.advance(Duration::from_secs(31));
    let log = eventually("the second attempts", || async {
        let log = deliveries(&s, &k).await;
        log.iter().all(|d| d["attempts"] == 2).then_some(log)
    })
    .await;
    for d in &log {
        assert_eq!(d["nextAttemptAt"], "2026-03-21T12:01:31Z", "{d}");
    }

    // Restart with the outbox still holding both; bring the receivers up.
    let (dir, data) = s.into_dirs().await;
    let sink = SmtpSink::start_on(port);
    hooks.status.store(200, Ordering::SeqCst);
    let flags = smtp_flags(port);
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = TestServer::start_in(dir, data, &refs).await;
    // The restarted server's clock starts at T0 again; step past the retry.
    s.clock.advance(Duration::from_secs(92));
    let mail = sink.wait_for(1).await;
    assert_eq!(mail[0]["to"], json!(["ops@example.com"]));
    assert!(
        mail[0]["data"]
            .as_str()
            .unwrap()
            .contains("Subject: [sikker] IP alert: 45.155.205.9")
    );
    let calls = hooks.wait_for(3).await;
    verify(&secret, &calls[2]);
    assert_eq!(
        calls[0].delivery, calls[2].delivery,
        "the same delivery, retried"
    );
    let log = eventually("both to be delivered", || async {
        let log = deliveries(&s, &k).await;
        log.iter()
            .all(|d| d["status"] == "delivered")
            .then_some(log)
    })
    .await;
    for d in &log {
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["nextAttemptAt"], Value::Null);
    }
    assert_eq!(sink.messages().len(), 1, "delivered once");
}
