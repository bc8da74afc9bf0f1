//! GeoIP: the embedded tables in check, bulk-check and block-list answers
//! and filters; operator `.mmdb` files replacing them, reloaded by the admin
//! request and by SIGHUP; bad files refused naming file and flag; Tor exit
//! import; and lookups that work with no network at all.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sikker::config::Config;
use sikker::domain::{Clock, IpKey};
use sikker::service::admin::AdminRequest;

use crate::common::mmdb;
use crate::common::{T0, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

fn ip(s: &str) -> IpKey {
    s.parse().unwrap()
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

async fn report(s: &TestServer, key: &str, ip: &str, category: &str) {
    let r = s
        .client
        .post(s.url("/v1/key/report"))
        .bearer_auth(key)
        .json(&json!({"ip": ip, "category": category, "protocol": "ssh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "report {ip}");
}

#[tokio::test]
async fn check_bulk_and_blacklist_carry_geolocation_and_filter_by_it() {
    let s = TestServer::start().await;
    let services = s.handle().services.clone();
    let key = services
        .create_api_key("geo", "free", None)
        .await
        .unwrap()
        .0;
    report(&s, &key, "8.8.8.8", "brute_force").await;
    report(&s, &key, "1.1.1.1", "open_proxy").await;
    report(&s, &key, "2606:4700:4700::1111", "port_scan").await;
    let imported = services
        .import_tor_exits("# exits\n1.1.1.0/24  # a comment\n\n2001:db8::/32\n")
        .await
        .unwrap();
    assert_eq!((imported.imported, imported.ipv4, imported.ipv6), (2, 1, 1));

    // What the embedded tables say (see geoip/README.md).
    let google = json!({"countryCode": "US", "countryName": "United States", "city": null,
        "asn": "15169", "asnOrg": "Google LLC", "isTor": false, "isProxy": false});
    let v = get(&s, &key, "/v1/key/check/8.8.8.8").await;
    assert_eq!(v["geolocation"], google);
    let v = get(&s, &key, "/v1/key/check/::ffff:8.8.8.8").await;
    assert_eq!(
        v["geolocation"], google,
        "IPv4-mapped IPv6 is the IPv4 address"
    );
    let v = get(&s, &key, "/v1/key/check/1.1.1.1").await;
    assert_eq!(
        v["geolocation"],
        json!({"countryCode": "AU", "countryName": "Australia", "city": null, "asn": "13335",
            "asnOrg": "Cloudflare, Inc.", "isTor": true, "isProxy": true}),
        "Tor from the imported list, proxy from the open_proxy report"
    );
    let v = get(&s, &key, "/v1/key/check/2606:4700:4700::1111").await;
    assert_eq!(v["geolocation"]["countryCode"], "US");
    assert_eq!(v["geolocation"]["asn"], "13335");
    assert_eq!(v["geolocation"]["isTor"], false);
    assert_eq!(v["geolocation"]["isProxy"], false, "no proxy evidence");
    // Not found, but still placed; a Tor exit that nobody reported.
    let v = get(&s, &key, "/v1/key/check/2001:db8::5").await;
    assert_eq!(v["found"], false);
    assert_eq!(v["geolocation"]["isTor"], true);
    assert!(v["geolocation"]["countryCode"].is_null());
    assert_eq!(services.geo(ip("9.9.9.9")).asn, Some(19281));

    let r = s
        .client
        .post(s.url("/v1/key/bulk-check-inline"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("8.8.8.8\n1.1.1.1\n9.9.9.9\n")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let codes: Vec<&Value> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["countryCode"])
        .collect();
    assert_eq!(codes, [&json!("US"), &json!("AU"), &json!("US")]);

    let list = |q: &'static str| {
        let (s, key) = (&s, &key);
        async move {
            let v = get(s, key, &format!("/v1/key/blacklist?scoreMinimum=1&{q}")).await;
            let mut ips: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["ip"].as_str().unwrap().to_owned())
                .collect();
            ips.sort();
            (ips, v)
        }
    };
    let (all, v) = list("").await;
    assert_eq!(all, ["1.1.1.1", "2606:4700:4700::1111", "8.8.8.8"]);
    let row = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ip"] == "8.8.8.8")
        .unwrap();
    assert_eq!(row["countryCode"], "US");
    assert_eq!(row["asn"], "15169");
    assert_eq!(row["asnOrg"], "Google LLC");
    assert_eq!(list("onlyCountries=AU").await.0, ["1.1.1.1"]);
    assert_eq!(list("onlyCountries=au,cn").await.0, ["1.1.1.1"]);
    assert_eq!(list("exceptCountries=US").await.0, ["1.1.1.1"]);
    assert_eq!(
        list("onlyAsn=AS13335").await.0,
        ["1.1.1.1", "2606:4700:4700::1111"]
    );
    assert_eq!(list("exceptAsn=13335").await.0, ["8.8.8.8"]);
    // A filtered list shows the geolocation its filter read.
    let (_, v) = list("exceptAsn=13335").await;
    assert_eq!(v["data"][0]["asnOrg"], "Google LLC");
    assert_eq!(v["data"][0]["countryCode"], "US");
    assert_eq!(
        list("onlyAsn=AS15169,AS13335&exceptCountries=AU").await.0,
        ["2606:4700:4700::1111", "8.8.8.8"]
    );
    assert!(list("onlyCountries=CN").await.0.is_empty());
    assert_eq!(
        list("ipVersion=6&onlyCountries=US").await.0,
        ["2606:4700:4700::1111"]
    );

    // The attribution the data's licences ask for is served by the UI.
    let about = s.get("/about.html").await;
    assert_eq!(about.status(), StatusCode::OK);
    let text = about.text().await.unwrap();
    assert!(
        text.contains("https://db-ip.com") && text.contains("routeviews") && text.contains("NRO"),
        "{text}"
    );
}

/// Operator files: a country, an ASN and a city database.
fn write_files(dir: &Path, country: &str, country_name: &str) {
    let c = mmdb::build(
        "GeoLite2-Country",
        &[
            ("8.8.8.0/24", mmdb::country(country, country_name)),
            ("2001:4860::/32", mmdb::country("DE", "Germany")),
            // Only the country the network is registered in.
            (
                "9.9.9.0/24",
                mmdb::map(&[(
                    "registered_country",
                    mmdb::map(&[("iso_code", mmdb::s("CH"))]),
                )]),
            ),
        ],
    );
    std::fs::write(dir.join("country.mmdb"), c).unwrap();
    let a = mmdb::build(
        "GeoLite2-ASN",
        &[
            ("8.8.8.0/24", mmdb::asn(64500, "Test Org")),
            ("2001:4860::/32", mmdb::asn(64501, "Test Org v6")),
        ],
    );
    std::fs::write(dir.join("asn.mmdb"), a).unwrap();
    let city = mmdb::build(
        "GeoLite2-City",
        &[("8.8.8.0/24", mmdb::city(country, "Amsterdam"))],
    );
    std::fs::write(dir.join("city.mmdb"), city).unwrap();
}

fn file_flags(dir: &Path) -> Vec<String> {
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "--geoip-country".into(),
        p("country.mmdb"),
        "--geoip-asn".into(),
        p("asn.mmdb"),
        "--geoip-city".into(),
        p("city.mmdb"),
    ]
}

#[tokio::test]
async fn operator_files_replace_the_embedded_tables_and_reload() {
    let files = tempfile::tempdir().unwrap();
    write_files(files.path(), "NL", "Netherlands");
    let flags = file_flags(files.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = TestServer::start_with(&flags).await;
    let services = s.handle().services.clone();
    let key = services
        .create_api_key("geo", "free", None)
        .await
        .unwrap()
        .0;

    let v = get(&s, &key, "/v1/key/check/8.8.8.8").await;
    assert_eq!(
        v["geolocation"],
        json!({"countryCode": "NL", "countryName": "Netherlands", "city": "Amsterdam",
            "asn": "64500", "asnOrg": "Test Org", "isTor": false, "isProxy": false})
    );
    let g = services.geo(ip("2001:4860:4860::8888"));
    assert_eq!(g.country_code.unwrap().as_str(), "DE");
    assert_eq!(g.asn, Some(64501));
    assert_eq!(g.city, None);
    // The files replace the embedded tables: no fallback to them.
    assert_eq!(services.geo(ip("1.1.1.1")), Default::default());
    let v = get(&s, &key, "/v1/key/check/1.1.1.1").await;
    assert!(v["geolocation"].is_null());

    let info = services.admin(AdminRequest::GeoipInfo).await.unwrap();
    let dbs = info["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 3);
    for (d, kind, ty) in [
        (&dbs[0], "country", "GeoLite2-Country"),
        (&dbs[1], "asn", "GeoLite2-ASN"),
        (&dbs[2], "city", "GeoLite2-City"),
    ] {
        assert_eq!(d["kind"], kind);
        assert_eq!(d["database"], ty);
        assert_eq!(d["build_date"], "2026-01-01");
        assert!(d["source"].as_str().unwrap().ends_with(".mmdb"));
        assert!(d["records"].as_u64().unwrap() > 0);
    }

    // The JSON block list shows the geolocation; its tag names the data.
    report(&s, &key, "8.8.8.8", "brute_force").await;
    let listed = |s: &TestServer, key: &str| {
        let req = s
            .client
            .get(s.url("/v1/key/blacklist?scoreMinimum=1"))
            .bearer_auth(key);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let tag = r.headers()["etag"].to_str().unwrap().to_owned();
            let v: Value = r.json().await.unwrap();
            let first = &v["data"][0];
            // The AS, as the file names it (borrowed from the file).
            assert_eq!(first["asn"], "64500");
            assert_eq!(first["asnOrg"], "Test Org");
            (tag, first["countryCode"].clone())
        }
    };
    let (tag_nl, country) = listed(&s, &key).await;
    assert_eq!(country, "NL");
    assert_eq!(listed(&s, &key).await.0, tag_nl, "same data, same tag");

    // New data in place: a reload picks it up without a restart. The
    // files keep their build date, type, size and path; the tag still moves.
    write_files(files.path(), "SE", "Sweden");
    services.admin(AdminRequest::GeoipReload).await.unwrap();
    let v = get(&s, &key, "/v1/key/check/8.8.8.8").await;
    assert_eq!(v["geolocation"]["countryCode"], "SE");
    assert_eq!(v["geolocation"]["countryName"], "Sweden");
    let (tag_se, country) = listed(&s, &key).await;
    assert_eq!(country, "SE");
    assert_ne!(tag_se, tag_nl);
    // A record with only a registered country: the check and the list's
    // country filter (which reads the code alone) agree.
    report(&s, &key, "9.9.9.9", "brute_force").await;
    let v = get(&s, &key, "/v1/key/check/9.9.9.9").await;
    assert_eq!(v["geolocation"]["countryCode"], "CH");
    let r = s
        .client
        .get(s.url("/v1/key/blacklist?scoreMinimum=1&plaintext=true&onlyCountries=CH"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "9.9.9.9\n");

    // A damaged file: the reload fails naming it and its flag; the old data stays.
    let bad = files.path().join("country.mmdb");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&bad, &bytes).unwrap();
    let e = services
        .admin(AdminRequest::GeoipReload)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("country.mmdb") && e.contains("--geoip-country"),
        "{e}"
    );
    assert_eq!(
        services.geo(ip("8.8.8.8")).country_code.unwrap().as_str(),
        "SE"
    );
    // An ASN database where a country database belongs.
    std::fs::copy(files.path().join("asn.mmdb"), &bad).unwrap();
    let e = services
        .admin(AdminRequest::GeoipReload)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GeoLite2-ASN") && e.contains("--geoip-country"),
        "{e}"
    );
    assert_eq!(
        services.geo(ip("8.8.8.8")).country_code.unwrap().as_str(),
        "SE"
    );
}

#[tokio::test]
async fn bad_operator_files_fail_at_start_naming_file_and_flag() {
    let files = tempfile::tempdir().unwrap();
    write_files(files.path(), "NL", "Netherlands");
    let junk = files.path().join("junk.mmdb");
    std::fs::write(&junk, b"\xAB\xCD\xEFMaxMind.com garbage").unwrap();
    // Metadata intact, search tree pointing past the data section.
    let mut damaged = std::fs::read(files.path().join("country.mmdb")).unwrap();
    damaged[..6].fill(0xEE);
    std::fs::write(files.path().join("damaged.mmdb"), damaged).unwrap();
    let p = |f: &str| files.path().join(f).display().to_string();
    for (flag, file, expect) in [
        ("--geoip-country", p("junk.mmdb"), "junk.mmdb"),
        ("--geoip-country", p("damaged.mmdb"), "damaged MaxMind DB"),
        ("--geoip-country", p("asn.mmdb"), "GeoLite2-ASN"),
        ("--geoip-asn", p("country.mmdb"), "GeoLite2-Country"),
        ("--geoip-city", p("country.mmdb"), "GeoLite2-Country"),
        ("--geoip-city", p("absent.mmdb"), "absent.mmdb"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").display().to_string();
        let config =
            Config::from_serve_args(["--data-dir", &data, "--listen", "127.0.0.1:0", flag, &file])
                .unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let e = sikker::app::start(&config, listener, Clock::manual(T0))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect) && e.contains(flag), "{flag} {file}: {e}");
    }
}

fn admin(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["admin", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn lookup_country(data: &Path, addr: &str) -> Value {
    let out = admin(data, &["--json", "geoip", "lookup", addr]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["geolocation"]["countryCode"].clone()
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_over_the_admin_socket() {
    let files = tempfile::tempdir().unwrap();
    write_files(files.path(), "NL", "Netherlands");
    let data = files.path().join("data");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(file_flags(files.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    // Keep reading so the server's later lines never meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(first.starts_with("listening on"), "{first}");

    let ping = admin(&data, &["ping"]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains("server running"));
    assert_eq!(lookup_country(&data, "8.8.8.8"), "NL");

    write_files(files.path(), "SE", "Sweden");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let mut now = Value::Null;
    for _ in 0..100 {
        now = lookup_country(&data, "8.8.8.8");
        if now == "SE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(now, "SE", "SIGHUP reloads the GeoIP files");

    write_files(files.path(), "FI", "Finland");
    let out = admin(&data, &["geoip", "reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lookup_country(&data, "8.8.8.8"), "FI");
    let info = String::from_utf8(admin(&data, &["geoip", "info"]).stdout).unwrap();
    assert!(
        info.contains("GeoLite2-City") && info.contains("city.mmdb"),
        "{info}"
    );

    // Reload with a damaged file: a clear error, the server keeps the old data.
    std::fs::write(files.path().join("asn.mmdb"), b"not a database").unwrap();
    let out = admin(&data, &["geoip", "reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("asn.mmdb") && err.contains("--geoip-asn"),
        "{err}"
    );
    let out = admin(&data, &["--json", "geoip", "lookup", "8.8.8.8"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geolocation"]["asn"], "64500");

    // The Tor exit list, imported through the socket.
    let list = files.path().join("exits.txt");
    std::fs::write(&list, "# Tor exits\n8.8.8.8\n").unwrap();
    let out = admin(&data, &["import", "tor-exits", list.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = admin(&data, &["--json", "geoip", "lookup", "::ffff:8.8.8.8"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geolocation"]["isTor"], true);
    std::fs::write(&list, "8.8.8.8\nnot-an-ip\n").unwrap();
    let out = admin(&data, &["import", "tor-exits", list.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));

    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Lookups run inside a network namespace that has no interface but a
/// down loopback: if geolocation needed the network, they would fail.
#[test]
fn geolocation_needs_no_network() {
    let present = Command::new("sh")
        .args(["-c", "command -v unshare"])
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        present,
        "unshare (util-linux) is missing: run the install part of .ci/run"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let script = format!(
        "test \"$(tail -n +3 /proc/net/dev | grep -vc '^ *lo:')\" = 0 || exit 9; \
         for a in 8.8.8.8 2606:4700:4700::1111 ::ffff:1.1.1.1; do {BIN} admin --data-dir {} --json geoip lookup $a || exit 1; done",
        data.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    let orgs: Vec<&Value> = answers
        .iter()
        .map(|a| &a["geolocation"]["asnOrg"])
        .collect();
    assert_eq!(
        orgs,
        [
            &json!("Google LLC"),
            &json!("Cloudflare, Inc."),
            &json!("Cloudflare, Inc.")
        ]
    );
}
