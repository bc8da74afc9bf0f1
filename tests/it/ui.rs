//! The web UI in a real headless Chromium against the real server: setup,
//! admin pages, sign-up with the e-mailed link, sign-in, keys, lookups, a
//! CSV upload, alerts, the privacy centre, session expiry and the consent
//! banner, with every request checked to stay on the server's origin and
//! no console error or CSP violation allowed. Screenshots go to
//! `tests/screenshots/` (not committed).

use std::path::PathBuf;

use serde_json::Value;

use crate::common::TestServer;
use crate::common::cdp::Browser;
use crate::common::smtp::SmtpSink;

const PW: &str = "Fjord-Lantern-2026";

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/screenshots")
}

/// Desktop and 360 px screenshots of the page now shown.
async fn snap(b: &Browser, name: &str) {
    b.viewport(360, 740, true).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    b.screenshot(&shots().join(format!("{name}-360.png"))).await;
    b.viewport(1280, 860, false).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    b.screenshot(&shots().join(format!("{name}-desktop.png")))
        .await;
}

async fn sign_in(b: &Browser, s: &TestServer, login: &str, remember: bool) {
    b.goto(&s.url("/login")).await;
    b.fill("[name=login]", login).await;
    b.fill("[name=password]", PW).await;
    b.fill("[name=remember]", if remember { "true" } else { "false" })
        .await;
    b.click("form button[type=submit]").await;
    b.wait(
        "location.pathname === '/dashboard' && document.querySelector('main h1')",
        "the dashboard",
    )
    .await;
}

async fn sign_out(b: &Browser) {
    b.click("#nav button.linkish").await;
    b.wait(
        "document.querySelector('#nav a[href=\"/login\"]')",
        "signed out",
    )
    .await;
}

/// API answers the page handles itself (401 before a refresh, 404 from a
/// server without the privacy endpoints) show up as network log entries.
fn api_answer(origin: &str) -> impl Fn(&Value) -> bool + '_ {
    move |entry: &Value| {
        entry["source"] == "network"
            && entry["url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{origin}/v1/")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser() {
    let mail = SmtpSink::start();
    let mut flags = mail.flags();
    flags.extend(["--registration".to_owned(), "open".to_owned()]);
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = TestServer::start_with(&refs).await;
    let origin = s.url("");
    let b = Browser::launch().await;
    b.viewport(1280, 860, false).await;

    // Start page and the consent banner: shown until answered, off by default.
    b.goto(&s.url("/")).await;
    b.wait(
        "!document.querySelector('#consent').hidden",
        "the consent banner",
    )
    .await;
    snap(&b, "home").await;
    b.click("#consent-no").await;
    assert_eq!(
        b.eval("document.cookie.includes('ska_analytics_consent=denied')")
            .await,
        true
    );
    b.goto(&s.url("/")).await;
    assert_eq!(
        b.eval("document.querySelector('#consent').hidden").await,
        true
    );
    b.eval("document.cookie = 'ska_analytics_consent=; Max-Age=0; Path=/'")
        .await;
    b.goto(&s.url("/")).await;
    b.wait(
        "!document.querySelector('#consent').hidden",
        "the banner again once the cookie is gone",
    )
    .await;
    b.click("#consent-yes").await;

    // First admin through the one-time setup link.
    let token = s.handle().bootstrap_token.clone().unwrap();
    b.goto(&s.url(&format!("/setup#token={token}"))).await;
    assert_eq!(
        b.eval("location.hash").await,
        "",
        "the token leaves the address bar"
    );
    for (f, v) in [
        ("username", "root"),
        ("email", "root@example.org"),
        ("password", PW),
        ("first_name", "Ada"),
        ("last_name", "Admin"),
        ("country", "NO"),
    ] {
        b.fill(&format!("[name={f}]"), v).await;
    }
    b.click("form button[type=submit]").await;
    b.wait(
        "document.querySelector('[data-field=age_confirmed] .field-error').textContent",
        "the client-side age check",
    )
    .await;
    b.fill("[name=age_confirmed]", "true").await;
    b.click("form button[type=submit]").await;
    b.wait("document.querySelector('.notice.ok')", "the admin account")
        .await;

    sign_in(&b, &s, "root", false).await;
    b.goto(&s.url("/admin/sensors")).await;
    b.fill("[name=name]", "honeypot-1").await;
    b.click("form button[type=submit]").await;
    let token = b
        .wait(
            "document.querySelector('.secret') && document.querySelector('.secret').textContent",
            "the sensor token",
        )
        .await;
    assert!(!token.as_str().unwrap().is_empty());
    b.wait("document.querySelector('table') && document.querySelector('table').innerText.includes('honeypot-1')", "the sensor list").await;
    snap(&b, "admin-sensors").await;
    b.goto(&s.url("/admin/whitelist")).await;
    b.fill("[name=net]", "192.0.2.0/24").await;
    b.fill("[name=reason]", "our office").await;
    b.click("form button[type=submit]").await;
    b.wait("document.querySelector('table') && document.querySelector('table').innerText.includes('192.0.2.0/24')", "the whitelist entry").await;
    b.goto(&s.url("/admin/health")).await;
    b.wait(
        "document.querySelector('[data-stat=Indicators] strong')",
        "health",
    )
    .await;
    snap(&b, "admin-health").await;
    b.goto(&s.url("/admin/users")).await;
    b.wait("document.querySelector('table') && document.querySelector('table').innerText.includes('root@example.org')", "the user list").await;
    snap(&b, "admin-users").await;
    b.goto(&s.url("/admin/corrections")).await;
    b.wait(
        "document.querySelector('#corrections p.muted')",
        "the empty correction queue",
    )
    .await;
    b.goto(&s.url("/admin/audience")).await;
    b.wait("document.querySelector('svg.chart')", "the audience charts")
        .await;
    sign_out(&b).await;

    // Sign-up, with the link from the real SMTP server.
    b.goto(&s.url("/signup")).await;
    for (f, v) in [
        ("username", "kari"),
        ("email", "kari@example.org"),
        ("password", "short"),
        ("first_name", "Kari"),
        ("last_name", "Nordmann"),
        ("country", "NO"),
        ("age_confirmed", "true"),
    ] {
        b.fill(&format!("[name={f}]"), v).await;
    }
    b.click("form button[type=submit]").await;
    b.wait(
        "document.querySelector('[data-field=password] .field-error').textContent",
        "the password error next to its field",
    )
    .await;
    b.fill("[name=password]", PW).await;
    b.fill("[name=username]", "root").await;
    b.click("form button[type=submit]").await;
    let taken = b
        .wait("document.querySelector('.field-error:not(:empty), .form-error:not(:empty)') && document.querySelector('.field-error:not(:empty), .form-error:not(:empty)').textContent", "the server's answer to a taken name")
        .await;
    assert!(!taken.as_str().unwrap().is_empty());
    b.fill("[name=username]", "kari").await;
    b.click("form button[type=submit]").await;
    b.wait(
        "document.querySelector('.notice.ok')",
        "the sign-up confirmation",
    )
    .await;
    snap(&b, "signup-done").await;
    let m = mail.last_to("kari@example.org", "Confirm").await;
    let body = m["body"].as_str().unwrap();
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/verify-email#token="))
        .expect("verification link");
    let token = link.split("#token=").nth(1).unwrap();
    b.goto(&s.url(&format!("/verify-email#token={token}")))
        .await;
    b.wait(
        "document.querySelector('.notice.ok')",
        "the verified address",
    )
    .await;

    sign_in(&b, &s, "kari", true).await;
    snap(&b, "dashboard-empty").await;

    // A key, shown once with a copy button.
    b.goto(&s.url("/keys")).await;
    b.fill("[name=name]", "firewall").await;
    b.click("form button[type=submit]").await;
    let key = b
        .wait(
            "document.querySelector('#new-key') && document.querySelector('#new-key').textContent",
            "the new key",
        )
        .await;
    assert!(key.as_str().unwrap().starts_with("sk_"), "{key}");
    snap(&b, "keys").await;

    // CSV upload with per-row results, then a single report.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("reports.csv");
    std::fs::write(
        &csv,
        "IP,Category,Protocol,Comment\n45.155.205.23,brute_force,ssh,many logins\n45.155.205.24,port_scan,,\nnot-an-ip,spam,,\n",
    )
    .unwrap();
    b.goto(&s.url("/report")).await;
    b.set_file("#csv-file", &csv).await;
    b.click("#csv-upload").await;
    let summary = b
        .wait("document.querySelector('#csv-result .notice') && document.querySelector('#csv-result').innerText", "the CSV results")
        .await;
    let summary = summary.as_str().unwrap();
    assert!(
        summary.contains("3 rows: 2 accepted, 1 rejected"),
        "{summary}"
    );
    assert!(summary.contains("not-an-ip"), "{summary}");
    assert_eq!(
        b.eval("document.querySelector('progress').value").await,
        100
    );
    b.fill("#report-form [name=ip]", "not an ip").await;
    b.click("#report-form button[type=submit]").await;
    b.wait(
        "document.querySelector('[data-field=ip] .field-error').textContent",
        "the IP error",
    )
    .await;
    b.fill("#report-form [name=ip]", "45.155.205.23").await;
    b.fill("#report-form [name=category]", "web_exploit").await;
    b.click("#report-form button[type=submit]").await;
    b.wait("document.querySelector('.notice.ok')", "the report")
        .await;
    snap(&b, "report").await;

    // Search from the start page, then the IP page.
    b.goto(&s.url("/")).await;
    b.fill("[name=ip]", "45.155.205.23").await;
    b.click("form button[type=submit]").await;
    b.wait(
        "location.pathname === '/ip/45.155.205.23' && document.querySelector('.gauge')",
        "the IP page",
    )
    .await;
    let page = b.text("main").await;
    assert!(
        page.contains("Behaviors") && page.contains("Protocols"),
        "{page}"
    );
    assert!(
        page.contains("brute_force") || page.contains("brute force"),
        "{page}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('svg.bars rect').length > 0")
            .await,
        true
    );
    snap(&b, "ip").await;
    b.goto(&s.url("/ip/192.0.2.7")).await;
    b.wait(
        "document.querySelector('.badge.ok')",
        "the whitelisted state",
    )
    .await;
    b.goto(&s.url("/ip/999.1.1.1")).await;
    b.wait(
        "document.querySelector('.form-error')",
        "the bad-IP message",
    )
    .await;

    // An alert with the delivery log.
    b.goto(&s.url("/alerts")).await;
    b.fill("[name=value]", "45.155.205.50").await;
    b.fill("[name=label]", "watch this").await;
    b.click("form button[type=submit]").await;
    b.wait("document.querySelector('table') && document.querySelector('table').innerText.includes('45.155.205.50')", "the alert in the list").await;
    snap(&b, "alerts").await;

    // Dashboard bars after the uploads.
    b.goto(&s.url("/dashboard")).await;
    b.wait(
        "document.querySelectorAll('.meter').length >= 8",
        "four quota and four alert bars",
    )
    .await;
    snap(&b, "dashboard").await;

    // Privacy centre: the export is saved as a JSON file about this account.
    let downloads = tempfile::tempdir().unwrap();
    b.allow_downloads(downloads.path()).await;
    b.goto(&s.url("/privacy-centre")).await;
    b.wait(
        "document.querySelector('#restricted-state')",
        "the privacy centre",
    )
    .await;
    b.click("#export-btn").await;
    b.wait("document.querySelector('#export-link')", "the export link")
        .await;
    let file = downloads.path().join("sikker-kari.json");
    let exported = crate::common::eventually("the downloaded export", || {
        let file = file.clone();
        async move {
            let text = std::fs::read_to_string(&file).ok()?;
            serde_json::from_str::<Value>(&text).ok()
        }
    })
    .await;
    assert_eq!(exported["format"], "sikker-export-1", "{exported}");
    assert_eq!(exported["account"]["username"], "kari", "{exported}");
    assert_eq!(exported["account"]["email"], "kari@example.org");
    snap(&b, "privacy-centre").await;

    // Restriction and objection go to the real endpoints and come back on.
    b.click("#restricted-btn").await;
    b.wait(
        "document.querySelector('#restricted-state').textContent === 'On'",
        "the restriction",
    )
    .await;
    b.click("#restricted-btn").await;
    b.wait(
        "document.querySelector('#restricted-state').textContent === 'Off'",
        "the lifted restriction",
    )
    .await;
    b.click("#objected_to_audience_measurement-btn").await;
    b.wait(
        "document.querySelector('#objected_to_audience_measurement-state').textContent === 'On'",
        "the objection",
    )
    .await;
    let requests = b
        .wait(
            "document.querySelector('#privacy-requests table') && document.querySelector('#privacy-requests').innerText",
            "the logged requests",
        )
        .await;
    let requests = requests.as_str().unwrap();
    assert!(
        requests.contains("restriction") && requests.contains("objection"),
        "{requests}"
    );
    // Consent was granted by the banner; withdrawing it is one click.
    assert_eq!(
        b.text("#consent-state").await,
        "granted",
        "the banner's answer"
    );
    b.click("#consent-btn").await;
    b.wait(
        "document.querySelector('#consent-state').textContent === 'not granted' && document.cookie.includes('ska_analytics_consent=denied')",
        "the withdrawn consent",
    )
    .await;

    // A correction for the reported address, from an address other than
    // itself: pending until an admin approves it in the queue.
    b.goto(&s.url("/correction?ip=45.155.205.23")).await;
    b.fill("#correction-form [name=reason]", "ownership_change")
        .await;
    b.fill("#correction-form [name=details]", "we took over this range")
        .await;
    b.click("#correction-form button[type=submit]").await;
    let status = b
        .wait(
            "document.querySelector('#correction-result') && document.querySelector('#correction-result').dataset.status",
            "the correction receipt",
        )
        .await;
    assert_eq!(status, "pending");
    sign_out(&b).await;
    sign_in(&b, &s, "root", false).await;
    b.goto(&s.url("/admin/corrections")).await;
    b.wait(
        "document.querySelector('.correction[data-status=pending]')",
        "the pending correction",
    )
    .await;
    b.click(".correction[data-status=pending] button.approve")
        .await;
    b.wait(
        "document.querySelector('.correction [aria-invalid=true]')",
        "the missing reason refused",
    )
    .await;
    b.fill(
        ".correction[data-status=pending] input",
        "ownership verified by RIPE record",
    )
    .await;
    b.click(".correction[data-status=pending] button.approve")
        .await;
    b.wait(
        "document.querySelector('#corrections p.muted') && !document.querySelector('.correction[data-status=pending]')",
        "the emptied queue",
    )
    .await;
    b.fill("#correction-filter", "granted").await;
    let granted = b
        .wait(
            "document.querySelector('.correction[data-status=granted]') && document.querySelector('.correction[data-status=granted]').innerText",
            "the granted correction",
        )
        .await;
    let granted = granted.as_str().unwrap();
    assert!(
        granted.contains("45.155.205.23") && granted.contains("ownership verified by RIPE record"),
        "{granted}"
    );
    snap(&b, "admin-corrections").await;
    b.goto(&s.url("/ip/45.155.205.23")).await;
    b.wait(
        "document.querySelector('.badge.not-listed')",
        "the corrected IP answered as not listed",
    )
    .await;
    let page = b.text("main").await;
    assert!(!page.contains("Behaviors"), "{page}");
    assert!(!page.contains("brute"), "{page}");

    // The other privacy pages of the admin, on the real endpoints.
    b.goto(&s.url("/admin/gdpr")).await;
    b.wait("document.querySelector('#gdpr')", "the GDPR requests")
        .await;
    b.goto(&s.url("/admin/retention")).await;
    let retention = b
        .wait(
            "document.querySelector('#retention table') && document.querySelector('#retention').innerText",
            "the retention status",
        )
        .await;
    let retention = retention.as_str().unwrap();
    assert!(
        retention.contains("raw reports") && retention.contains("395 days"),
        "{retention}"
    );
    b.goto(&s.url("/admin/audience")).await;
    let views = b
        .wait(
            "document.querySelector('[data-stat=\"Page views\"] strong') && document.querySelector('[data-stat=\"Page views\"] strong').textContent",
            "the audience figures",
        )
        .await;
    assert_ne!(views, "0", "page loads are counted");
    assert_eq!(
        b.eval("document.querySelectorAll('svg.chart').length >= 4")
            .await,
        true
    );
    snap(&b, "admin-audience").await;
    sign_out(&b).await;
    sign_in(&b, &s, "kari", true).await;

    // The policy page states the live retention settings.
    b.goto(&s.url("/privacy")).await;
    let days = b
        .wait("document.querySelector('tr[data-key=rawReportsDays] td:last-child') && document.querySelector('tr[data-key=rawReportsDays] td:last-child').textContent", "the policy")
        .await;
    assert_eq!(days, "30 days");
    for (key, want) in [
        ("indicatorsDays", "30 days"),
        ("apiUsageDays", "730 days"),
        ("networkDays", "730 days"),
        ("accountAfterDeletionDays", "365 days"),
        ("analyticsDays", "730 days"),
        ("audienceDays", "395 days"),
        ("privacyLogDays", "730 days"),
    ] {
        let got = b.text(&format!("tr[data-key={key}] td:last-child")).await;
        assert_eq!(got, want, "{key}");
    }
    snap(&b, "privacy").await;

    // Session expiry: a lost access token is refreshed silently; a lost
    // session sends the person to login and back.
    b.call(
        "Network.deleteCookies",
        serde_json::json!({"name": "access_token", "url": origin}),
    )
    .await;
    b.goto(&s.url("/sessions")).await;
    b.wait(
        "document.querySelector('table') && location.pathname === '/sessions'",
        "the sessions after a refresh",
    )
    .await;
    snap(&b, "sessions").await;
    for c in ["access_token", "refresh_token"] {
        b.call(
            "Network.deleteCookies",
            serde_json::json!({"name": c, "url": format!("{origin}/v1/session/refresh")}),
        )
        .await;
        b.call(
            "Network.deleteCookies",
            serde_json::json!({"name": c, "url": origin}),
        )
        .await;
    }
    b.goto(&s.url("/keys")).await;
    b.wait(
        "location.pathname === '/login' && location.search.includes('next=%2Fkeys')",
        "the login page",
    )
    .await;
    b.fill("[name=login]", "kari").await;
    b.fill("[name=password]", PW).await;
    b.click("form button[type=submit]").await;
    b.wait(
        "location.pathname === '/keys' && document.querySelector('table')",
        "the keys page again",
    )
    .await;

    // Nothing left the origin, and nothing went wrong in the page.
    let requests = b.requests();
    assert!(requests.len() > 20, "{requests:?}");
    let foreign: Vec<&String> = requests
        .iter()
        .filter(|u| {
            !u.starts_with(&origin)
                && !u.starts_with("data:")
                && !u.starts_with("blob:")
                && *u != "about:blank"
        })
        .collect();
    assert!(foreign.is_empty(), "requests to other origins: {foreign:?}");
    let problems = b.problems(api_answer(&origin));
    assert!(problems.is_empty(), "problems in the page: {problems:#?}");

    // The detector itself: an inline script must be reported as a CSP violation.
    b.eval("(() => { const s = document.createElement('script'); s.textContent = 'window.x = 1'; document.body.append(s); return true; })()").await;
    let detected = crate::common::eventually("the CSP violation to be reported", || async {
        let p = b.problems(api_answer(&origin));
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert!(
        detected
            .iter()
            .any(|p| p.contains("CSP") || p.contains("Content Security Policy")),
        "{detected:?}"
    );
    assert_eq!(
        b.eval("window.x === undefined").await,
        true,
        "inline script was blocked"
    );
}
