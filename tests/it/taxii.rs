//! The TAXII 2.1 surface against the real server: discovery and
//! collections, errors as TAXII error messages, cursor pagination under
//! concurrent ingest, `added_after` to the millisecond, filters, manifest
//! and versions, the TAXII quota, hidden IPs — and every object checked by
//! the OASIS STIX validator while an independent TAXII client walks the feed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{T0, TestServer};

const TAXII: &str = "application/taxii+json;version=2.1";
const COL: &str = "/taxii2/collections/sikker-threat-intel";

const TIERS: &str = r#"
[tiers.free]
name = "Free"
lookups = 100000
reports = 100000
blacklist = 100000
taxii = 100000
ip_alerts = 1
range_alerts = 1
range_max_prefix = 28
username_alerts = 2
email_alerts = 3

[tiers.tiny]
name = "Tiny"
lookups = 10
reports = 10
blacklist = 10
taxii = 5
ip_alerts = 1
range_alerts = 1
range_max_prefix = 28
username_alerts = 1
email_alerts = 1
"#;

struct Feed {
    s: TestServer,
    key: String,
}

impl Feed {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiers.toml");
        std::fs::write(&path, TIERS).unwrap();
        let s = TestServer::start_with(&["--tiers-file", path.to_str().unwrap()]).await;
        // The tiers file is read at start; the temp dir may go.
        drop(dir);
        let key = Self::new_key(&s, "free").await;
        Self { s, key }
    }

    async fn new_key(s: &TestServer, tier: &str) -> String {
        s.handle()
            .services
            .create_api_key("taxii-tests", tier, None)
            .await
            .unwrap()
            .0
    }

    async fn get_as(&self, path: &str, key: Option<&str>, accept: &str) -> reqwest::Response {
        let mut r = self.s.client.get(self.s.url(path)).header("accept", accept);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, Some(&self.key), TAXII).await
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], TAXII, "{path}");
        r.json().await.unwrap()
    }

    /// Reports every IP (one bulk request: one transaction).
    async fn report(&self, ips: &[String], category: &str) {
        let rows: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "category": category, "protocol": "ssh"}))
            .collect();
        let r = self
            .s
            .client
            .post(self.s.url("/v1/key/bulk-report"))
            .bearer_auth(&self.key)
            .json(&rows)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["accepted"].as_u64(), Some(ips.len() as u64), "{v}");
    }

    /// Follows `next` from `first` to the end; returns every page.
    async fn walk(&self, first: &str) -> Vec<Value> {
        let mut pages = vec![self.json(first).await];
        while pages.last().unwrap()["more"] == true {
            let next = pages.last().unwrap()["next"].as_str().unwrap().to_owned();
            let sep = if first.contains('?') { '&' } else { '?' };
            pages.push(self.json(&format!("{first}{sep}next={next}")).await);
        }
        pages
    }
}

fn ips(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}.{}", i + 1)).collect()
}

fn objects(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p["objects"].as_array().unwrap().clone())
        .collect()
}

/// The IP of an indicator's pattern.
fn ip_of(o: &Value) -> String {
    let p = o["pattern"].as_str().unwrap();
    p.split('\'').nth(1).unwrap().to_owned()
}

fn indicators(objs: &[Value]) -> Vec<&Value> {
    objs.iter().filter(|o| o["type"] == "indicator").collect()
}

/// Asserts the body is a TAXII error message and nothing else.
async fn assert_taxii_error(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], TAXII);
    let v: Value = r.json().await.unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["title", "description", "http_status", "error"]),
        "{v}"
    );
    assert_eq!(v["http_status"], status.as_u16().to_string(), "{v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
    v
}

#[tokio::test]
async fn discovery_and_collections_are_public_and_negotiated() {
    let f = Feed::start().await;
    for path in ["/taxii2/", "/taxii2", "//taxii2/"] {
        // The official CLI sends `Accept: application/json` everywhere.
        let r = f.get_as(path, None, "application/json").await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], TAXII);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["title"], "SikkerNet TAXII Server");
        assert_eq!(v["default"], "/taxii2/collections/sikker-threat-intel/");
        assert_eq!(v["api_roots"], json!(["/taxii2/"]));
        assert_eq!(v["versions"], json!([TAXII]));
        assert!(v["max_content_length"].is_u64());
    }
    let v: Value = f
        .get_as("/taxii2/collections/", None, "*/*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["collections"][0]["id"], "sikker-threat-intel");
    assert_eq!(v["collections"][0]["can_read"], true);
    assert_eq!(v["collections"][0]["can_write"], false);
    assert_eq!(
        v["collections"][0]["media_types"],
        json!(["application/stix+json;version=2.1"])
    );
    let r = f.get_as(COL, None, TAXII).await;
    assert_eq!(r.status(), StatusCode::OK);
    let one: Value = r.json().await.unwrap();
    assert_eq!(one, v["collections"][0]);
    // Public endpoints carry no quota headers.
    let r = f.get(&format!("{COL}/")).await;
    assert!(r.headers().get("x-taxii-limit").is_none());
}

#[tokio::test]
async fn errors_are_taxii_error_messages() {
    let f = Feed::start().await;
    let r = f.get_as(&format!("{COL}/objects/"), None, TAXII).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"sikker\"");
    assert_taxii_error(r, StatusCode::UNAUTHORIZED).await;
    let r = f
        .get_as(&format!("{COL}/objects/"), Some("sk_free_nope"), TAXII)
        .await;
    assert!(r.headers().contains_key("www-authenticate"));
    assert_taxii_error(r, StatusCode::UNAUTHORIZED).await;

    for accept in [
        "text/html",
        "application/taxii+json;version=2.0",
        "application/json;q=0",
    ] {
        let r = f.get_as("/taxii2/", None, accept).await;
        assert_taxii_error(r, StatusCode::NOT_ACCEPTABLE).await;
        let r = f
            .get_as(&format!("{COL}/objects/"), Some(&f.key), accept)
            .await;
        assert_taxii_error(r, StatusCode::NOT_ACCEPTABLE).await;
    }
    for ok in ["application/stix+json;version=2.1", "application/*", "*/*"] {
        let r = f.get_as(&format!("{COL}/objects/"), Some(&f.key), ok).await;
        assert_eq!(r.status(), StatusCode::OK, "{ok}");
    }

    let bad = [
        ("/taxii2/collections/nope/", StatusCode::NOT_FOUND),
        ("/taxii2/collections/nope/objects/", StatusCode::NOT_FOUND),
        ("/taxii2/collections/nope/manifest/", StatusCode::NOT_FOUND),
        ("/taxii2/nothing/", StatusCode::NOT_FOUND),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?added_after=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?limit=1001",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?limit=ten",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?match[foo]=bar",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?match[version]=newest",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?next=forged",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/?offset=-1",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/203.0.113.77/",
            StatusCode::NOT_FOUND,
        ),
        (
            "/taxii2/collections/sikker-threat-intel/objects/indicator--00000000-0000-5000-8000-000000000000/versions/",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, status) in bad {
        let v = assert_taxii_error(f.get(path).await, status).await;
        assert!(!v["error"].as_str().unwrap().is_empty(), "{path}: {v}");
    }
    let v = assert_taxii_error(
        f.get(&format!("{COL}/objects/?limit=5000")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(v["description"].as_str().unwrap().contains("limit"), "{v}");
    let r =
        f.s.client
            .post(f.s.url(&format!("{COL}/objects/")))
            .bearer_auth(&f.key)
            .header("content-type", "application/taxii+json;version=2.1")
            .body("{}")
            .send()
            .await
            .unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_taxii_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn pages_never_miss_or_repeat_under_concurrent_ingest() {
    let f = Feed::start().await;
    let initial = ips("45.10.0", 40);
    f.report(&initial, "brute_force").await;
    let first = f.json(&format!("{COL}/objects/?limit=7")).await;
    assert_eq!(first["objects"].as_array().unwrap().len(), 7);
    assert_eq!(first["objects"][0]["type"], "identity");
    assert_eq!(first["more"], true);

    // Walk while writing: new IPs in the same millisecond as everything
    // else (the clock does not move), and new versions of IPs both already
    // walked and not yet walked.
    let mut pages = vec![first];
    let mut added: Vec<String> = Vec::new();
    let mut round = 0;
    while pages.last().unwrap()["more"] == true {
        round += 1;
        let fresh = ips(&format!("45.20.{round}"), 3);
        f.report(&fresh, "port_scan").await;
        added.extend(fresh);
        let seen = ip_of(indicators(&objects(&pages))[0]);
        f.report(&[seen, initial[39 - round].clone()], "ddos").await;
        let next = pages.last().unwrap()["next"].as_str().unwrap().to_owned();
        pages.push(f.json(&format!("{COL}/objects/?limit=7&next={next}")).await);
        assert!(round < 100, "the walk must end");
    }
    assert!(pages.last().unwrap().get("next").is_none());
    let objs = objects(&pages);
    let mut versions: HashSet<(String, String)> = HashSet::new();
    let mut last_modified: BTreeMap<String, String> = BTreeMap::new();
    for o in indicators(&objs) {
        let id = o["id"].as_str().unwrap().to_owned();
        let m = o["modified"].as_str().unwrap().to_owned();
        assert!(
            versions.insert((id.clone(), m.clone())),
            "version {id} {m} served twice"
        );
        if let Some(prev) = last_modified.insert(id.clone(), m.clone()) {
            assert!(prev < m, "versions of {id} out of order");
        }
    }
    let got: BTreeSet<String> = indicators(&objs).iter().map(|o| ip_of(o)).collect();
    for ip in initial.iter().chain(&added) {
        assert!(got.contains(ip), "{ip} missed");
    }
    assert_eq!(got.len(), initial.len() + added.len());
    assert_eq!(
        objs.iter().filter(|o| o["type"] == "identity").count(),
        1,
        "the identity heads the first page only"
    );
    // date_added order across the whole walk.
    let dates: Vec<&str> = indicators(&objs)
        .iter()
        .map(|o| o["modified"].as_str().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
}

#[tokio::test]
async fn added_after_is_exact_to_the_millisecond_with_date_added_headers() {
    let f = Feed::start().await;
    f.report(&["45.30.0.1".into()], "brute_force").await;
    f.s.clock.advance(Duration::from_millis(1));
    f.report(&["45.30.0.2".into()], "brute_force").await;
    f.s.clock.advance(Duration::from_millis(1));
    f.report(&["45.30.0.3".into()], "brute_force").await;
    let t1 = "2026-03-21T12:00:00.001Z";
    let only = |v: &Value| -> Vec<String> {
        indicators(v["objects"].as_array().unwrap())
            .iter()
            .map(|o| ip_of(o))
            .collect()
    };
    let v = f.json(&format!("{COL}/objects/?added_after={t1}")).await;
    assert_eq!(
        only(&v),
        ["45.30.0.3"],
        "strictly after, to the millisecond"
    );
    // Sub-millisecond precision as Python's isoformat() sends it, URL-encoded.
    let v = f
        .json(&format!(
            "{COL}/objects/?added_after=2026-03-21T12%3A00%3A00.000999%2B00%3A00"
        ))
        .await;
    assert_eq!(only(&v), ["45.30.0.2", "45.30.0.3"]);
    // A raw '+' (unencoded, arriving as a space) is read as '+'.
    let v = f
        .json(&format!(
            "{COL}/objects/?added_after=2026-03-21T13:00:00.000+01:00"
        ))
        .await;
    assert_eq!(only(&v), ["45.30.0.2", "45.30.0.3"]);
    let v = f
        .json(&format!(
            "{COL}/objects/?added_after=2026-03-21T12:00:00.002Z"
        ))
        .await;
    assert_eq!(v["more"], false);
    assert_eq!(only(&v), Vec::<String>::new());

    let r = f
        .get(&format!("{COL}/objects/?match[type]=indicator"))
        .await;
    assert_eq!(
        r.headers()["x-taxii-date-added-first"],
        "2026-03-21T12:00:00.000Z"
    );
    assert_eq!(
        r.headers()["x-taxii-date-added-last"],
        "2026-03-21T12:00:00.002Z"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["objects"][2]["modified"], "2026-03-21T12:00:00.002Z");
    let r = f
        .get(&format!("{COL}/manifest/?match[type]=indicator"))
        .await;
    assert_eq!(
        r.headers()["x-taxii-date-added-last"],
        "2026-03-21T12:00:00.002Z"
    );
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["objects"].as_array().unwrap().len(), 3);
    assert_eq!(m["objects"][0]["date_added"], "2026-03-21T12:00:00.000Z");
    assert_eq!(m["objects"][0]["version"], "2026-03-21T12:00:00.000Z");
    assert_eq!(
        m["objects"][0]["media_type"],
        "application/stix+json;version=2.1"
    );
}

#[tokio::test]
async fn filters_one_object_versions_and_the_cli_forms() {
    let f = Feed::start().await;
    f.report(
        &["45.40.0.1".into(), "2a00:1450:4001::7".into()],
        "web_exploit",
    )
    .await;
    let all = f.json(&format!("{COL}/objects/")).await;
    let objs = all["objects"].as_array().unwrap();
    assert_eq!(objs.len(), 3);
    let v4 = indicators(objs)
        .into_iter()
        .find(|o| ip_of(o) == "45.40.0.1")
        .unwrap()
        .clone();
    let v6 = indicators(objs)
        .into_iter()
        .find(|o| ip_of(o) == "2a00:1450:4001::7")
        .unwrap()
        .clone();
    assert_eq!(v6["pattern"], "[ipv6-addr:value = '2a00:1450:4001::7']");
    assert_eq!(v4["created_by_ref"], objs[0]["id"]);
    let id = v4["id"].as_str().unwrap();

    let v = f.json(&format!("{COL}/objects/?match[id]={id}")).await;
    assert_eq!(v["objects"], json!([v4]));
    let v = f
        .json(&format!("{COL}/objects/?match[type]=identity"))
        .await;
    assert_eq!(v["objects"].as_array().unwrap().len(), 1);
    assert_eq!(v["objects"][0]["type"], "identity");
    let modified = v4["modified"].as_str().unwrap();
    let v = f
        .json(&format!(
            "{COL}/objects/?match[type]=indicator&match[version]={modified}"
        ))
        .await;
    assert_eq!(v["objects"].as_array().unwrap().len(), 2);
    let v = f
        .json(&format!(
            "{COL}/objects/?match[version]=2026-03-21T12:00:00.001Z"
        ))
        .await;
    assert_eq!(v["objects"], json!([]));
    for q in [
        "match[version]=first",
        "match[version]=last,all",
        "match[spec_version]=2.1",
    ] {
        let v = f.json(&format!("{COL}/objects/?{q}")).await;
        assert_eq!(v["objects"].as_array().unwrap().len(), 3, "{q}");
    }
    let v = f
        .json(&format!("{COL}/objects/?match[spec_version]=2.0"))
        .await;
    assert_eq!(v["objects"], json!([]));

    // By STIX id: an envelope; by IP (the official CLI): a bundle.
    let v = f.json(&format!("{COL}/objects/{id}/")).await;
    assert_eq!(v["objects"], json!([v4]));
    let b = f.json(&format!("{COL}/objects/45.40.0.1/")).await;
    assert_eq!(b["type"], "bundle");
    assert!(b["id"].as_str().unwrap().starts_with("bundle--"));
    assert_eq!(b["objects"][0], objs[0]);
    assert_eq!(b["objects"][1], v4);
    let b = f.json(&format!("{COL}/objects/2a00:1450:4001::7")).await;
    assert_eq!(b["objects"][1], v6);
    let v = f.json(&format!("{COL}/objects/{id}/versions/")).await;
    assert_eq!(v, json!({"more": false, "versions": [modified]}));

    // The CLI's `offset`: objects counted from the identity.
    let v = f.json(&format!("{COL}/objects/?offset=1&limit=1")).await;
    assert_eq!(v["objects"].as_array().unwrap().len(), 1);
    assert_eq!(v["objects"][0]["type"], "indicator");
    assert_eq!(v["more"], true);
    let v = f.json(&format!("{COL}/objects/?offset=3")).await;
    assert_eq!(v["objects"], json!([]));
    assert_eq!(v["more"], false);

    // limit=1 walks identity, then each indicator, one per page.
    let pages = f.walk(&format!("{COL}/objects/?limit=1")).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(objects(&pages), *objs);
    // A new version keeps id and created, and moves modified on (past the
    // 15-minute window in which the same reporter counts once).
    f.s.clock.advance(Duration::from_secs(16 * 60));
    f.report(&["45.40.0.1".into()], "brute_force").await;
    let v = f.json(&format!("{COL}/objects/{id}/")).await;
    let newer = &v["objects"][0];
    assert_eq!(newer["created"], v4["created"]);
    assert_eq!(newer["modified"], "2026-03-21T12:16:00.000Z");
    assert!(
        newer["labels"]
            .as_array()
            .unwrap()
            .contains(&json!("brute-force"))
    );
}

#[tokio::test]
async fn whitelisted_and_expired_ips_are_absent() {
    let f = Feed::start().await;
    f.report(&["45.50.0.1".into(), "45.50.0.2".into()], "ddos")
        .await;
    f.s.handle()
        .services
        .whitelist_add("45.50.0.2/32", "operator's own host")
        .await
        .unwrap();
    let v = f.json(&format!("{COL}/objects/")).await;
    let got: Vec<String> = indicators(v["objects"].as_array().unwrap())
        .iter()
        .map(|o| ip_of(o))
        .collect();
    assert_eq!(got, ["45.50.0.1"]);
    let r = f.get(&format!("{COL}/objects/45.50.0.2/")).await;
    assert_taxii_error(r, StatusCode::NOT_FOUND).await;
    // Past the retention (30 days without evidence) nothing is served, even
    // before a sweep; after the sweep the feed forgets it too.
    f.s.clock.advance(Duration::from_secs(30 * 86_400));
    let v = f.json(&format!("{COL}/objects/")).await;
    assert_eq!(indicators(v["objects"].as_array().unwrap()).len(), 0);
    // The sweep drops whole expiry days once they are over.
    f.s.clock.advance(Duration::from_secs(86_400));
    let services = &f.s.handle().services;
    let swept = services.sweep(services.clock.now(), 10).await.unwrap();
    assert_eq!(swept.indicators, 2);
    let r = f.get(&format!("{COL}/objects/45.50.0.1/")).await;
    assert_taxii_error(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn object_requests_count_against_the_taxii_quota() {
    let f = Feed::start().await;
    f.report(&ips("45.60.0", 8), "brute_force").await;
    let tiny = Feed::new_key(&f.s, "tiny").await;
    let r = f
        .get_as(&format!("{COL}/objects/?limit=4"), Some(&tiny), TAXII)
        .await;
    assert_eq!(r.headers()["x-taxii-limit"], "5");
    assert_eq!(r.headers()["x-taxii-remaining"], "2");
    assert_eq!(r.headers()["x-daily-used"], "3");
    let v: Value = r.json().await.unwrap();
    assert_eq!(indicators(v["objects"].as_array().unwrap()).len(), 3);
    // The page is cut to what is left, and says there is more.
    let next = v["next"].as_str().unwrap();
    let r = f
        .get_as(
            &format!("{COL}/objects/?limit=4&next={next}"),
            Some(&tiny),
            TAXII,
        )
        .await;
    assert_eq!(r.headers()["x-taxii-remaining"], "0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["objects"].as_array().unwrap().len(), 2);
    assert_eq!(v["more"], true);
    let r = f
        .get_as(&format!("{COL}/objects/?limit=4"), Some(&tiny), TAXII)
        .await;
    assert!(crate::common::retry_after(&r) > 0);
    assert_taxii_error(r, StatusCode::TOO_MANY_REQUESTS).await;
    // Metadata endpoints need the key but are not charged.
    let r = f
        .get_as(&format!("{COL}/manifest/"), Some(&tiny), TAXII)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Midnight UTC resets the quota.
    f.s.clock
        .set(sikker::domain::UnixMillis(T0.0 + 12 * 3_600_000));
    let r = f
        .get_as(&format!("{COL}/objects/?limit=2"), Some(&tiny), TAXII)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-taxii-remaining"], "4");
}

const CLIENT: &str = r#"
import json, sys
import requests
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Server, as_pages

url, key, cert, per_request = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class Bearer(requests.auth.AuthBase):
    def __call__(self, r):
        r.headers["Authorization"] = "Bearer " + key
        return r

server = Server(url + "/taxii2/", verify=cert, auth=Bearer())
root = server.api_roots[0]
collection = root.collections[0]
out = {"title": server.title, "root_versions": root.versions,
       "collection": collection.id, "can_read": collection.can_read}
objects, pages = [], 0
for envelope in as_pages(collection.get_objects, per_request=per_request):
    pages += 1
    objects.extend(envelope.get("objects", []))
manifest = []
for envelope in as_pages(collection.get_manifest, per_request=per_request):
    manifest.extend(envelope.get("objects", []))
# Strict: every SHOULD is an error, except two deliberate choices:
# 103 wants UUIDv4 ids, but indicator ids are UUIDv5 of the IP so that one
# IP keeps one id; 302 wants hashes next to URLs, which ATT&CK technique
# pages (live documents, published without hashes by MITRE itself) cannot have.
options = ValidationOptions(version="2.1", strict=True, disabled=["103", "302"])
problems = []
for o in objects:
    r = validate_instance(o, options)
    if not r.is_valid or r.warnings:
        problems.append({"id": o.get("id"), "errors": [str(e) for e in r.errors],
                         "warnings": [str(w) for w in r.warnings]})
one = requests.get(url + "/taxii2/collections/sikker-threat-intel/objects/" + sys.argv[5] + "/",
                   headers={"Accept": "application/json"}, auth=Bearer(), verify=cert).json()
r = validate_instance(one, options)
if not r.is_valid or r.warnings:
    problems.append({"id": "bundle", "errors": [str(e) for e in r.errors],
                     "warnings": [str(w) for w in r.warnings]})
out.update(objects=objects, pages=pages, manifest=manifest, problems=problems)
print(json.dumps(out))
"#;

#[tokio::test]
async fn stix_validator_and_an_independent_taxii_client_agree() {
    let python = crate::common::python::python();
    let f = Feed::start().await;
    let v4 = ips("45.70.0", 45);
    f.report(&v4, "brute_force").await;
    f.report(&v4[..10], "web_exploit").await;
    let v6: Vec<String> = (1..=5).map(|i| format!("2a00:1450:4002::{i:x}")).collect();
    f.report(&v6, "port_scan").await;
    // Sensor evidence too, so behaviours, kill chains and ATT&CK references appear.
    let token = f.s.handle().services.create_sensor("pot").await.unwrap().0;
    let events: Vec<String> = (0..30)
        .map(|i| {
            json!({"ts": T0.0 - 1000 + i, "src_ip": "45.70.1.1", "protocol": "ssh", "dst_port": 22,
                   "session_id": format!("s{}", i / 10), "kind": "auth", "username": "root",
                   "credential_hash": format!("h{}", i % 3)})
            .to_string()
        })
        .collect();
    let r = f.s.send_events(&token, events.join("\n")).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("walk.py");
    std::fs::write(&script, CLIENT).unwrap();
    let cert = f.s.data_dir.join("tls/self-signed.crt");
    let url = f.s.url("");
    let key = f.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            // requests lets these override an explicit `verify=` certificate.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .arg(&script)
            .args([&url, &key, cert.to_str().unwrap(), "8", "45.70.0.1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"], json!([]), "STIX validator findings");
    assert_eq!(v["title"], "SikkerNet TAXII Server");
    assert_eq!(v["root_versions"], json!([TAXII]));
    assert_eq!(v["collection"], "sikker-threat-intel");
    assert_eq!(v["can_read"], true);
    let objs = v["objects"].as_array().unwrap();
    let expected = v4.len() + v6.len() + 1;
    assert_eq!(
        objs.len(),
        expected + 1,
        "every indicator plus the identity"
    );
    assert_eq!(v["pages"], (expected + 1).div_ceil(8));
    let got: BTreeSet<String> = indicators(objs).iter().map(|o| ip_of(o)).collect();
    let want: BTreeSet<String> = v4
        .iter()
        .chain(&v6)
        .cloned()
        .chain(["45.70.1.1".to_owned()])
        .collect();
    assert_eq!(got, want);
    let ids: HashSet<&str> = objs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), objs.len(), "no object twice");
    let manifest = v["manifest"].as_array().unwrap();
    assert_eq!(manifest.len(), objs.len());
    for (m, o) in manifest.iter().zip(objs) {
        assert_eq!(m["id"], o["id"]);
        assert_eq!(m["version"], o["modified"]);
    }
    let sensor = indicators(objs)
        .into_iter()
        .find(|o| ip_of(o) == "45.70.1.1")
        .unwrap();
    assert!(
        sensor["external_references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["external_id"] == "T1110"),
        "{sensor}"
    );
    let text = serde_json::to_string(objs).unwrap();
    assert!(!text.contains("root"), "no usernames in the feed (P12)");
}
