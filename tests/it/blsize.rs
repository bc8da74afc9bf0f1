//! Block lists sized for their target against the real server: exact CIDR
//! collapsing that never covers an allowlisted address, `maxEntries` by
//! confidence, `ipv6Prefix`, the firewall formats loaded into the real
//! tools, the AbuseIPDB dialect, bad input, and the bouncer's pass-through.

use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::blocklist::in_netns;
use crate::common::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

async fn server() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    let (key, token) = s.key_and_sensor("tier_4").await;
    (s, key, token)
}

async fn get(s: &TestServer, key: &str, path: &str) -> (StatusCode, String) {
    let r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .header("Key", key)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn plain(s: &TestServer, key: &str, q: &str) -> Vec<String> {
    let (st, body) = get(s, key, &format!("/v1/key/blacklist?plaintext=true&{q}")).await;
    assert_eq!(st, StatusCode::OK, "{q}: {body}");
    body.lines().map(str::to_owned).collect()
}

fn net(line: &str) -> IpNet {
    line.parse::<IpNet>()
        .unwrap_or_else(|_| IpNet::from(line.parse::<IpAddr>().unwrap()))
}

fn covers(list: &[String], ip: &str) -> bool {
    let ip: IpAddr = ip.parse().unwrap();
    list.iter().any(|l| net(l).contains(&ip))
}

async fn blacklist_used(s: &TestServer, key: &str) -> u64 {
    let (_, body) = get(s, key, "/v1/key/status").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["quotas"]["blacklist"]["used"].as_u64().unwrap()
}

fn slash24(prefix: &str, events: usize) -> Vec<(String, usize)> {
    (0..256)
        .map(|i| (format!("{prefix}.{i}"), events))
        .collect()
}

#[tokio::test]
async fn collapse_is_exact_and_never_covers_the_allowlist() {
    let (s, key, token) = server().await;
    s.attack(&token, &slash24("80.8.0", 3)).await;
    let all = plain(&s, &key, "scoreMinimum=1").await;
    assert_eq!(all.len(), 256);
    assert_eq!(
        plain(&s, &key, "scoreMinimum=1&collapse=true").await,
        ["80.8.0.0/24"]
    );

    let services = s.handle().services.clone();
    services
        .whitelist_add("80.8.0.7", "our resolver")
        .await
        .unwrap();
    let listed = plain(&s, &key, "scoreMinimum=1&collapse=true").await;
    assert!(!covers(&listed, "80.8.0.7"), "{listed:?}");
    for i in (0..256).filter(|i| *i != 7) {
        assert!(
            covers(&listed, &format!("80.8.0.{i}")),
            "80.8.0.{i}: {listed:?}"
        );
    }
    assert!(!covers(&listed, "80.8.1.0") && !covers(&listed, "80.7.255.255"));
    // The fewest CIDRs for .0-.6 and .8-.255 (sorted by address on equal
    // confidence and recency, so compare as a set).
    let mut sorted = listed.clone();
    sorted.sort_by_key(|l| net(l));
    assert_eq!(
        sorted,
        [
            "80.8.0.0/30",
            "80.8.0.4/31",
            "80.8.0.6",
            "80.8.0.8/29",
            "80.8.0.16/28",
            "80.8.0.32/27",
            "80.8.0.64/26",
            "80.8.0.128/25"
        ]
    );
    // Every format honours it.
    for q in ["format=csv", "format=ipset", "format=nft", "ipv6Prefix=64"] {
        let (_, body) = get(
            &s,
            &key,
            &format!("/v1/key/blacklist?scoreMinimum=1&collapse=true&{q}"),
        )
        .await;
        assert!(body.contains("80.8.0.128/25"), "{q}: {body}");
        assert!(!body.contains("80.8.0.0/24"), "{q}: {body}");
    }
    let (_, body) = get(&s, &key, "/v1/key/blacklist?scoreMinimum=1&collapse=true").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["meta"]["count"], 8);
    assert_eq!(v["meta"]["collapse"], true);
    let ips: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap().to_owned())
        .collect();
    assert!(!covers(&ips, "80.8.0.7") && covers(&ips, "80.8.0.200"));
    // A merged entry carries its members' summed sessions.
    let big = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ip"] == "80.8.0.128/25")
        .unwrap()
        .clone();
    let (_, body) = get(&s, &key, "/v1/key/blacklist?scoreMinimum=1").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let upper = net("80.8.0.128/25");
    let sum: u64 = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| upper.contains(&net(e["ip"].as_str().unwrap())))
        .map(|e| e["sessions"].as_u64().unwrap())
        .sum();
    assert!(sum >= 128);
    assert_eq!(big["sessions"].as_u64().unwrap(), sum, "{big}");
}

#[tokio::test]
async fn max_entries_keeps_the_highest_confidence() {
    let (s, key, token) = server().await;
    // Confidence rises with the number of attempts: .1 strongest.
    let ips: Vec<(String, usize)> = (1..=6)
        .map(|i| (format!("80.1.{i}.1"), 60 / i))
        .chain((0..64).map(|i| (format!("80.2.0.{i}"), 3)))
        .collect();
    s.attack(&token, &ips).await;
    let full = plain(&s, &key, "scoreMinimum=1").await;
    assert_eq!(full.len(), 70);
    assert_eq!(full[0], "80.1.1.1");
    let used = blacklist_used(&s, &key).await;
    let top = plain(&s, &key, "scoreMinimum=1&maxEntries=3").await;
    assert_eq!(top, full[..3], "the cap keeps the list's head");
    assert_eq!(
        blacklist_used(&s, &key).await,
        used + 3,
        "only sent entries are charged"
    );
    // Ties (the 64 equal addresses) break the same way every time.
    let tied = plain(&s, &key, "scoreMinimum=1&maxEntries=20").await;
    assert_eq!(tied, plain(&s, &key, "scoreMinimum=1&maxEntries=20").await);
    assert_eq!(tied, full[..20]);

    // Collapsed first, then capped: the 64 become one /26 carrying their
    // highest confidence; the cap keeps the strongest entries.
    let collapsed = plain(&s, &key, "scoreMinimum=1&collapse=true").await;
    assert_eq!(collapsed.len(), 7, "{collapsed:?}");
    assert!(collapsed.contains(&"80.2.0.0/26".to_owned()));
    let capped = plain(&s, &key, "scoreMinimum=1&collapse=true&maxEntries=2").await;
    assert_eq!(capped, collapsed[..2]);
    let (_, body) = get(
        &s,
        &key,
        "/v1/key/blacklist?scoreMinimum=1&collapse=true&maxEntries=7",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let conf: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["confidenceLevel"].as_u64().unwrap())
        .collect();
    assert!(conf.windows(2).all(|w| w[0] >= w[1]), "{conf:?}");
    assert_eq!(v["meta"]["maxEntries"], 7);
    // maxEntries larger than the list changes nothing.
    assert_eq!(
        plain(&s, &key, "scoreMinimum=1&maxEntries=10000").await,
        full
    );
}

#[tokio::test]
async fn ipv6_prefix_widens_without_covering_the_allowlist() {
    let (s, key, token) = server().await;
    let ips: Vec<(String, usize)> = ["2a02:1::1", "2a02:1::2", "2a02:1:0:1::5", "80.3.0.1"]
        .iter()
        .map(|i| ((*i).to_owned(), 6))
        .collect();
    s.attack(&token, &ips).await;
    let mut listed = plain(&s, &key, "scoreMinimum=1&ipv6Prefix=64").await;
    listed.sort();
    assert_eq!(listed, ["2a02:1:0:1::/64", "2a02:1::/64", "80.3.0.1"]);
    // Two /64s inside one /48 collapse into it.
    assert_eq!(
        plain(
            &s,
            &key,
            "scoreMinimum=1&ipv6Prefix=/48&collapse=true&ipVersion=6"
        )
        .await,
        ["2a02:1::/48"]
    );
    // An allowlisted address inside the prefix is cut out of it, exactly.
    let services = s.handle().services.clone();
    services
        .whitelist_add("2a02:1::7", "partner")
        .await
        .unwrap();
    let listed = plain(&s, &key, "scoreMinimum=1&ipv6Prefix=64&ipVersion=6").await;
    assert!(!covers(&listed, "2a02:1::7"), "{listed:?}");
    for ip in [
        "2a02:1::1",
        "2a02:1::6",
        "2a02:1::8",
        "2a02:1::ffff:1",
        "2a02:1:0:1::9",
    ] {
        assert!(covers(&listed, ip), "{ip}: {listed:?}");
    }
    assert!(!covers(&listed, "2a02:1:0:2::1"));
    assert_eq!(listed.len(), 1 + 64, "a /64 minus one address is 64 CIDRs");
    let collapsed = plain(&s, &key, "scoreMinimum=1&ipv6Prefix=48&collapse=true").await;
    assert!(!covers(&collapsed, "2a02:1::7") && covers(&collapsed, "2a02:1:0:ffff::1"));
    assert!(covers(&collapsed, "80.3.0.1"));
    // Without the prefix nothing is widened.
    assert_eq!(plain(&s, &key, "scoreMinimum=1&ipVersion=6").await.len(), 3);
}

#[tokio::test]
async fn firewall_files_with_networks_load_into_the_real_tools() {
    let (s, key, token) = server().await;
    let mut ips = slash24("80.4.0", 3);
    ips.retain(|(ip, _)| ip != "80.4.0.7");
    ips.push(("2a02:2::1".into(), 6));
    s.attack(&token, &ips).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, nft) = get(
        &s,
        &key,
        "/v1/key/blacklist?scoreMinimum=1&collapse=true&ipv6Prefix=64&format=nft&table=sztest&setName=blk",
    )
    .await;
    assert!(nft.contains("flags interval"), "{nft}");
    let f = dir.path().join("list.nft");
    std::fs::write(&f, &nft).unwrap();
    if let Some(out) = in_netns(
        "nft",
        &format!(
            "nft -f {f} && nft -f {f} && nft list table inet sztest",
            f = f.display()
        ),
    ) {
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{nft}",
            String::from_utf8_lossy(&out.stderr)
        );
        for n in ["80.4.0.128/25", "80.4.0.8/29", "2a02:2::/64"] {
            assert!(listing.contains(n), "{n} missing from\n{listing}");
        }
    }
    let (_, ipset) = get(
        &s,
        &key,
        "/v1/key/blacklist?scoreMinimum=1&collapse=true&ipv6Prefix=64&format=ipset&setName=sztest",
    )
    .await;
    assert!(ipset.contains("hash:net"), "{ipset}");
    let f = dir.path().join("list.ipset");
    std::fs::write(&f, &ipset).unwrap();
    if let Some(out) = in_netns(
        "ipset",
        &format!(
            "ipset restore < {f} && ipset restore < {f} && ipset test sztest 80.4.0.200 && ! ipset test sztest 80.4.0.7 && ipset test sztest6 2a02:2::abcd && ipset list sztest",
            f = f.display()
        ),
    ) {
        assert!(
            out.status.success(),
            "{}\n{}\n{ipset}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn abuseipdb_blacklist_is_sized_too() {
    let (s, key, token) = server().await;
    s.attack(&token, &slash24("80.5.0", 30)).await;
    let (st, body) = get(
        &s,
        &key,
        "/api/v2/blacklist?confidenceMinimum=25&plaintext&collapse=true",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, "80.5.0.0/24\n");
    let (_, body) = get(
        &s,
        &key,
        "/api/v2/blacklist?confidenceMinimum=25&limit=2&maxEntries=1",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    // limit keeps its meaning (addresses taken), collapsing what is left.
    let (_, body) = get(
        &s,
        &key,
        "/api/v2/blacklist?confidenceMinimum=25&limit=2&collapse=true&plaintext",
    )
    .await;
    assert_eq!(body, "80.5.0.0/31\n");
    let (st, body) = get(&s, &key, "/api/v2/blacklist?maxEntries=0").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["source"]["parameter"], "maxEntries", "{v}");
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("maxEntries")
    );
    let (st, body) = get(&s, &key, "/api/v2/blacklist?ipv6Prefix=129").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("ipv6Prefix"), "{body}");
}

#[tokio::test]
async fn bad_sizing_is_a_400_naming_the_field_and_charges_nothing() {
    let (s, key, token) = server().await;
    s.attack(&token, &[("80.6.0.1".into(), 6)]).await;
    let before = blacklist_used(&s, &key).await;
    for (field, value) in [
        ("maxEntries", "0"),
        ("maxEntries", "-1"),
        ("maxEntries", "abc"),
        ("maxEntries", "1.5"),
        ("maxEntries", "10000001"),
        ("maxEntries", "99999999999999999999999999"),
        ("ipv6Prefix", "0"),
        ("ipv6Prefix", "/0"),
        ("ipv6Prefix", "31"),
        ("ipv6Prefix", "129"),
        ("ipv6Prefix", "/129"),
        ("ipv6Prefix", "junk"),
        ("ipv6Prefix", "64x"),
        ("collapse", "maybe"),
    ] {
        for fmt in ["", "&plaintext=true", "&format=nft"] {
            let (st, body) = get(
                &s,
                &key,
                &format!("/v1/key/blacklist?scoreMinimum=1&{field}={value}{fmt}"),
            )
            .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{field}={value}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["field"], field, "{v}");
            assert!(v["error"].as_str().unwrap().contains(field), "{v}");
        }
    }
    assert_eq!(blacklist_used(&s, &key).await, before, "nothing charged");
    // The edges of the ranges are accepted.
    for q in [
        "maxEntries=1",
        "maxEntries=10000000",
        "ipv6Prefix=32",
        "ipv6Prefix=128",
    ] {
        assert_eq!(
            plain(&s, &key, &format!("scoreMinimum=1&{q}")).await.len(),
            1,
            "{q}"
        );
    }
}

#[tokio::test]
async fn bouncer_passes_sizing_through() {
    let (s, key, token) = server().await;
    s.attack(&token, &slash24("80.7.0", 3)).await;
    let out = tokio::task::spawn_blocking({
        let url = s.url("");
        let ca = s.data_dir.join("tls/self-signed.crt");
        move || {
            Command::new(BIN)
                .args(["bouncer", "--once", "--dry-run", "--score-minimum", "1"])
                .args(["--url", url.trim_end_matches('/')])
                .args(["--collapse", "--max-entries", "5", "--ipv6-prefix", "64"])
                .arg("--ca-file")
                .arg(ca)
                .env("SIKKER_BOUNCER_KEY", key)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("# 1 listed, 1 added, 0 removed"),
        "{stdout}"
    );
    assert!(stdout.contains("flags interval"), "{stdout}");
    assert!(
        stdout.contains("add element inet sikker sikker_block4 { 80.7.0.0/24 }"),
        "{stdout}"
    );
    let bad = Command::new(BIN)
        .args(["bouncer", "--url", "https://x", "--key", "k"])
        .args(["--ipv6-prefix", "129"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--ipv6-prefix"));
}

#[tokio::test]
async fn json_plain_and_csv_stream_in_chunks() {
    let (s, key, token) = server().await;
    let mut ips = Vec::new();
    for net in ["80.9.0", "80.9.1", "80.9.2", "80.9.3", "80.9.4"] {
        ips.extend(slash24(net, 3));
    }
    s.attack(&token, &ips).await;
    let fetch = |q: &'static str| {
        let s = &s;
        let key = key.clone();
        async move {
            let r = s
                .client
                .get(s.url(&format!("/v1/key/blacklist?scoreMinimum=1&{q}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let length = r.headers().get("content-length").cloned();
            (length, r.text().await.unwrap())
        }
    };
    let (length, json) = fetch("").await;
    assert!(length.is_none(), "streamed, not sized up front: {length:?}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["meta"]["count"], 1280);
    assert_eq!(v["data"].as_array().unwrap().len(), 1280);
    // The same bytes as serialising the whole document at once.
    assert_eq!(serde_json::to_string(&v).unwrap(), json);
    let (length, plain) = fetch("plaintext=true").await;
    assert!(length.is_none());
    assert_eq!(plain.lines().count(), 1280);
    assert!(plain.ends_with('\n') && !plain.contains("\n\n"));
    let (length, csv) = fetch("format=csv").await;
    assert!(length.is_none());
    assert_eq!(csv.lines().count(), 1281);
    assert!(csv.starts_with("ip,confidence,last_seen,sessions,protocols\n80.9."));
    // Collapsed, five adjacent /24s are a /22 and a /24; an empty list is
    // valid JSON.
    let (_, plain) = fetch("plaintext=true&collapse=true").await;
    let mut lines: Vec<&str> = plain.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["80.9.0.0/22", "80.9.4.0/24"]);
    let (_, json) = fetch("scoreMinimum=100").await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data"], json!([]));
    // The firewall files are still sent whole, with their length.
    let (length, _) = fetch("format=ipset").await;
    assert!(length.is_some());
}

#[tokio::test]
async fn a_list_over_ipsets_default_fits_once_collapsed() {
    let (s, key, token) = server().await;
    // 72,000 consecutive addresses from 81.0.0.0 with every 97th missing.
    let base = u32::from(std::net::Ipv4Addr::new(81, 0, 0, 0));
    let listed = |k: u32| !k.is_multiple_of(97);
    let ips: Vec<(String, usize)> = (0..72_000_u32)
        .filter(|k| listed(*k))
        .map(|k| (std::net::Ipv4Addr::from(base + k).to_string(), 1))
        .collect();
    for batch in ips.chunks(9_000) {
        s.attack(&token, batch).await;
    }
    let started = std::time::Instant::now();
    let full = plain(&s, &key, "scoreMinimum=1").await;
    let full_took = started.elapsed();
    assert_eq!(full.len(), ips.len());
    assert!(full.len() > 65_536);
    let started = std::time::Instant::now();
    let collapsed = plain(&s, &key, "scoreMinimum=1&collapse=true").await;
    let collapsed_took = started.elapsed();
    eprintln!(
        "{} addresses ({full_took:?}) collapse to {} CIDRs ({collapsed_took:?})",
        full.len(),
        collapsed.len()
    );
    assert!(collapsed.len() < 10_000, "{}", collapsed.len());
    // Exact: every address from 80.255.255.255 to past the end is covered
    // exactly when it was listed.
    let mut spans: Vec<(u32, u32)> = collapsed
        .iter()
        .map(|l| match net(l) {
            IpNet::V4(n) => (u32::from(n.network()), u32::from(n.broadcast())),
            IpNet::V6(_) => panic!("{l}"),
        })
        .collect();
    spans.sort_unstable();
    for k in -1_i64..72_001 {
        let a = u32::try_from(i64::from(base) + k).unwrap();
        let i = spans.partition_point(|(lo, _)| *lo <= a);
        let covered = i > 0 && spans[i - 1].1 >= a;
        let want = (0..72_000).contains(&k) && listed(u32::try_from(k).unwrap());
        assert_eq!(covered, want, "{}", std::net::Ipv4Addr::from(a));
    }
    let waf = plain(&s, &key, "scoreMinimum=1&collapse=true&maxEntries=500").await;
    assert_eq!(waf.len(), 500);
}
