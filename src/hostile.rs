//! Property tests feeding hostile input to every parser the crate owns: each
//! must either parse cleanly or return a clean error, never panic.
//!
//! Case counts are small so `cargo test` stays fast; run longer with e.g.
//! `PROPTEST_CASES=20000 cargo test --lib hostile::` (the `PROPTEST_CASES`
//! variable overrides the per-test defaults below).

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::domain::IpKey;
use crate::http::api::{report, sensor};
use crate::http::compat::abuseipdb::params::{Params, Source};
use crate::http::error::HttpError;
use crate::http::query::Query;
use crate::jwt::{Claims, JwtError, JwtKey};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A clean error is a client error with a message, never an internal one.
fn clean(e: &HttpError) {
    let text = format!("{e:?}");
    assert!(
        !text.contains("Internal"),
        "parser error is internal: {text}"
    );
}

/// Text that looks like what a hostile client would send: separators,
/// quotes, escapes, unicode, control bytes and numbers in odd forms.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        "[0-9a-fA-F:.,;/%\\[\\]=&+ \t\"'\\\\\r\n-]{0,120}",
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn ip_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string()),
        any::<[u8; 16]>().prop_map(|o| IpAddr::from(o).to_string()),
        (any::<[u8; 4]>(), 0u8..40).prop_map(|(o, p)| format!("{}/{p}", IpAddr::from(o))),
        (any::<[u8; 16]>(), 0u8..140).prop_map(|(o, p)| format!("{}/{p}", IpAddr::from(o))),
        "[0-9.:a-f%/ ]{0,45}",
        hostile_text(),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ip_parsing(s in ip_like()) {
        if let Ok(k) = s.parse::<IpKey>() {
            // A parsed address prints and re-parses to itself.
            prop_assert_eq!(k.to_string().parse::<IpKey>().unwrap(), k);
            let _ = k.is_public();
            let _ = crate::domain::ip::truncate(k.to_ip());
        }
        if let Ok(net) = crate::service::whitelist::parse_net(&s) {
            let (lo, hi) = crate::index::ranges::bounds(&net);
            prop_assert!(lo <= hi);
            let set = crate::index::ranges::CidrSet::new([(net, ())]);
            prop_assert!(set.contains(IpKey(lo)) && set.contains(IpKey(hi)));
        }
    }

    #[test]
    fn forwarded_for(xff in hostile_text(), peer in any::<[u8; 4]>()) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v.clone());
            h.insert("forwarded", v);
        }
        let proxies = ["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        let _ = crate::http::client_ip::resolve(IpAddr::from(peer), &h, &proxies);
    }

    #[test]
    fn csv_bulk_reports(
        rows in proptest::collection::vec(
            (ip_like(), "[a-z_0-9 ]{0,14}", hostile_text(), hostile_text()), 0..20),
        sep in prop_oneof![Just(","), Just(";"), Just("\t")],
        header in any::<bool>(),
        junk in hostile_text(),
    ) {
        let mut text = String::new();
        if header {
            text.push_str("IP,Categories,Protocol,Comment\n");
        }
        for (ip, cat, proto, comment) in &rows {
            text.push_str(&[ip.as_str(), cat, proto, comment].join(sep));
            text.push('\n');
        }
        text.push_str(&junk);
        match report::csv_rows(text.as_bytes()) {
            Ok((ok, errors)) => prop_assert!(ok.len() + errors.len() <= text.lines().count() + 1),
            Err(e) => clean(&e),
        }
        if let Err(e) = report::csv_rows(junk.as_bytes()) {
            clean(&e);
        }
    }

    #[test]
    fn json_bulk_reports(body in prop_oneof![
        hostile_text(),
        proptest::collection::vec((ip_like(), any::<i64>(), hostile_text()), 0..10).prop_map(|v| {
            serde_json::json!({"reports": v.iter().map(|(ip, c, m)| serde_json::json!(
                {"ip": ip, "category": c, "comment": m})).collect::<Vec<_>>()}).to_string()
        }),
    ]) {
        if let Err(e) = report::json_rows(&bytes::Bytes::from(body)) {
            clean(&e);
        }
    }

    #[test]
    fn ndjson_sensor_batches(
        lines in proptest::collection::vec(prop_oneof![
            hostile_text(),
            (any::<i64>(), ip_like(), "[a-z]{0,8}", "[a-z_]{0,14}", hostile_text()).prop_map(
                |(ts, ip, proto, kind, user)| serde_json::json!({
                    "ts": ts, "src_ip": ip, "protocol": proto, "session_id": "s",
                    "kind": kind, "username": user, "email": user, "command": user,
                }).to_string()),
            (hostile_text(), ip_like()).prop_map(|(ts, ip)| serde_json::json!({
                "ts": ts, "src_ip": ip, "protocol": "ssh", "session_id": ts,
                "kind": "auth", "dst_port": 22}).to_string()),
        ], 0..12),
        array in any::<bool>(),
    ) {
        let text = if array { format!("[{}]", lines.join(",")) } else { lines.join("\n") };
        match sensor::parse(&text) {
            Ok((events, errors)) => {
                prop_assert!(!(events.is_empty() && errors.is_empty()));
                let now = crate::domain::UnixMillis(1_774_094_400_000);
                for w in &events {
                    let _ = crate::service::sensors::validate_event(w, now, 30 * 86_400_000);
                }
            }
            Err(e) => clean(&e),
        }
    }

    #[test]
    fn query_strings(q in prop_oneof![
        hostile_text(),
        proptest::collection::vec(("[a-zA-Z\\[\\]0-9%]{0,12}", hostile_text()), 0..8).prop_map(|kv| {
            kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
        }),
    ]) {
        let query = Query::parse(Some(&q));
        for name in ["verbose", "limit", "confidenceMinimum", "ip", "", "plaintext"] {
            let _ = query.get(name);
            if let Err(e) = query.bool(name, false) { clean(&e); }
            if let Err(e) = query.uint(name, 0, 100) { clean(&e); }
            let _ = query.list(name);
        }
        // TAXII filters and paging.
        if let Err(e) = crate::http::taxii::page_request(Some(&q)) { clean(&e); }
        // AbuseIPDB parameters (query and urlencoded body merged).
        let mut p = Params::default();
        p.push_form(q.as_bytes(), Source::Query);
        p.push_form(q.as_bytes(), Source::Body);
        for name in ["ipAddress", "maxAgeInDays", "categories", "network", "confidenceMinimum"] {
            let _ = p.text(name);
            let _ = p.flag(name);
            let _ = p.list(name);
            if let Err(e) = p.int(name, 1, 365, 30, "out of range") { clean(&e); }
            if let Err(e) = p.required("ipAddress", "an IP") { clean(&e); }
        }
    }

    #[test]
    fn taxii_filters(
        key in prop_oneof![Just("match[id]"), Just("match[type]"), Just("match[version]"),
            Just("match[spec_version]"), Just("added_after"), Just("limit"), Just("next"),
            Just("offset"), Just("match[other]")],
        value in prop_oneof![hostile_text(), "v1\\.[0-9-]{0,25}\\.[0-9-]{0,25}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?"],
    ) {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(key, &value)
            .finish();
        if let Err(e) = crate::http::taxii::page_request(Some(&q)) { clean(&e); }
        let _ = crate::service::stix::parse_timestamp(&value);
    }

    #[test]
    fn jwts(token in prop_oneof![
        hostile_text(),
        (hostile_text(), hostile_text(), hostile_text()).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        ("[A-Za-z0-9_-]{0,60}", "[A-Za-z0-9_-]{0,60}", "[A-Za-z0-9_-]{0,60}")
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
    ], flip in any::<(usize, u8)>()) {
        let key = JwtKey::new(&[7; 32]);
        let _ = key.verify(&token, 0);
        // A real token with one byte changed never verifies.
        let good = key.sign(&Claims { sub: 1, sid: 2, iat: 0, exp: i64::MAX });
        let mut bytes = good.clone().into_bytes();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1.max(1);
        if let Ok(t) = String::from_utf8(bytes) && t != good {
            prop_assert!(key.verify(&t, 0).is_err(), "tampered token verified: {}", t);
        }
        prop_assert_eq!(key.verify(&good, i64::MAX), Err(JwtError::Expired));
    }

    #[test]
    fn cookies(values in proptest::collection::vec(hostile_text(), 0..4)) {
        let mut h = HeaderMap::new();
        for v in &values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(http::header::COOKIE, v);
            }
        }
        for name in ["access_token", "refresh_token", "csrf_token", ""] {
            let _ = crate::http::cookies::get(&h, name);
        }
    }

    #[test]
    fn admin_protocol(line in prop_oneof![
        hostile_text(),
        (hostile_text(), "[a-z_]{0,16}", hostile_text()).prop_map(|(v, op, x)| serde_json::json!(
            {"version": v, "request": {"op": op, "name": x, "id": x, "net": x, "text": x}}).to_string()),
    ]) {
        // The server's decode step; a failure becomes an `invalid` reply.
        let _ = serde_json::from_str::<crate::admin::Envelope>(line.trim_end());
    }
}

proptest! {
    // Each case writes a file and parses the whole command line: fewer cases.
    #![proptest_config(config(64))]

    #[test]
    fn config_files(
        text in prop_oneof![
            hostile_text(),
            proptest::collection::vec((
                prop_oneof![Just("listen"), Just("retention-days"), Just("log"), Just("trusted-proxy"),
                    Just("registration"), Just("hash-concurrency"), Just("public-url"), Just("tiers"),
                    Just("bogus"), Just("data-dir")],
                prop_oneof![
                    hostile_text().prop_map(|s| toml::Value::String(s).to_string()),
                    any::<i64>().prop_map(|i| i.to_string()),
                    any::<bool>().prop_map(|b| b.to_string()),
                    Just("[1, \"a\", {x = 1}]".to_owned()),
                    Just("{ a = 1 }".to_owned()),
                ],
            ), 0..5).prop_map(|kv| kv.iter().fold(String::new(), |mut s, (k, v)| {
                s.push_str(k);
                s.push_str(" = ");
                s.push_str(v);
                s.push('\n');
                s
            })),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sikker.toml");
        std::fs::write(&file, &text).unwrap();
        let data = dir.path().join("data");
        let r = crate::config::Config::from_serve_args([
            "--data-dir", data.to_str().unwrap(), "--config", file.to_str().unwrap(),
        ]);
        if let Ok(c) = r {
            let _ = c.validate();
            let _ = c.service_options();
        }
    }
}
