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
