//! `sikker admin` as the compiled binary: user and key commands, streamed
//! imports with line-numbered errors, export, backup while the server
//! runs, restore (refused while it runs, refused for damaged files, and a
//! round trip that keeps the logical content), offline and online.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

fn admin(data: &Path, args: &[&str]) -> (i32, String, String) {
    admin_in(data, args, "")
}

fn admin_in(data: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(["admin", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &Path, args: &[&str]) -> String {
    let (code, out, err) = admin(data, args);
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    out
}

fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(data, &a)).unwrap()
}

/// Everything an operator sees of the logical content.
fn content(
    data: &Path,
) -> (
    String,
    serde_json::Value,
    serde_json::Value,
    serde_json::Value,
) {
    (
        ok(data, &["export", "indicators", "--format", "json"]),
        json(data, &["user", "list"]),
        json(data, &["key", "list"]),
        json(data, &["whitelist", "list"]),
    )
}

fn add_alice(data: &Path) {
    let (code, out, err) = admin_in(
        data,
        &[
            "user",
            "add",
            "alice",
            "--email",
            "alice@example.org",
            "--first-name",
            "Alice",
            "--last-name",
            "Doe",
            "--country",
            "NO",
            "--password-stdin",
        ],
        "a long and fine passphrase\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("account alice created"), "{out}");
}

#[test]
fn offline_users_keys_imports_and_backup_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    add_alice(&data);
    let users = json(&data, &["user", "list"]);
    assert_eq!(users[0]["username"], "alice");
    ok(&data, &["user", "set-role", "alice", "admin"]);
    assert_eq!(
        json(&data, &["user", "show", "alice@example.org"])["role"],
        "admin"
    );
    ok(&data, &["user", "disable", "alice"]);
    assert_eq!(json(&data, &["user", "show", "1"])["disabled"], true);
    ok(&data, &["user", "enable", "alice"]);
    let (code, _, err) = admin(&data, &["user", "show", "bob"]);
    assert_eq!(code, 1);
    assert!(err.contains("account 'bob' not found"), "{err}");
    let (code, _, err) = admin(&data, &["user", "set-tier", "alice", "platinum"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown tier"), "{err}");
    let (code, _, err) = admin(&data, &["user", "delete", "alice"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = admin(&data, &["key", "revoke", "999"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let k = json(
        &data,
        &["key", "create", "--name", "laptop", "--user", "alice"],
    );
    assert_eq!(k["account"], 1);
    assert!(k["key"].as_str().unwrap().starts_with("sk_free_"));
    ok(
        &data,
        &["whitelist", "add", "192.0.2.0/24", "--reason", "docs"],
    );

    // Malformed lines are reported with their numbers; the rest is imported.
    let csv = dir.path().join("r.csv");
    std::fs::write(
        &csv,
        "IP,Category,Protocol,Comment\n45.33.32.1,brute_force,ssh,x\nnot-an-ip,1\n80.82.77.9,99\n\n45.33.32.2;ddos\n45.33.32.3,ddos,http,\"quoted, comment\"\n",
    )
    .unwrap();
    let (code, out, err) = admin(&data, &["import", "reports", csv.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("r.csv:3: Invalid IP address"), "{err}");
    assert!(err.contains("r.csv:4: Unknown category '99'"), "{err}");
    assert!(err.contains("r.csv:6:"), "{err}");
    assert!(out.contains("2 accepted, 3 rejected"), "{out}");

    let list = dir.path().join("l.txt");
    std::fs::write(
        &list,
        "# blocked\n80.82.77.0/30\n10.0.0.0/8\n45.33.32.1 # again\n",
    )
    .unwrap();
    let (code, out, err) = admin(
        &data,
        &[
            "import",
            "list",
            list.to_str().unwrap(),
            "--category",
            "port_scan",
            "--json",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["errors"][0]["line"], 3, "{v}");

    let ips: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&ok(
        &data,
        &["export", "indicators", "--format", "json"],
    ))
    .unwrap()
    .iter()
    .map(|i| i["ip"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(
        ips,
        ["45.33.32.1", "45.33.32.3", "80.82.77.1", "80.82.77.2"]
    );

    // Backup, then a damaged and a foreign file change nothing.
    let before = content(&data);
    let bak = dir.path().join("b.bak");
    ok(&data, &["backup", bak.to_str().unwrap()]);
    let bytes = std::fs::read(&bak).unwrap();
    let cut = dir.path().join("cut.bak");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let (code, _, err) = admin(&data, &["restore", cut.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("truncated") && err.contains("nothing was changed"),
        "{err}"
    );
    let (code, _, err) = admin(&data, &["restore", csv.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a sikker backup"), "{err}");
    assert_eq!(content(&data), before);

    // The round trip: a fresh data dir restored from the backup.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    ok(&other, &["restore", bak.to_str().unwrap()]);
    assert_eq!(content(&other), before);

    let del = json(&data, &["user", "delete", "alice", "--yes"]);
    assert_eq!(del["keys_revoked"], 1);
    assert_eq!(json(&data, &["user", "list"]), serde_json::json!([]));
    let r = json(&data, &["stats"]);
    assert!(r["store"]["tables"].as_array().unwrap().len() > 30, "{r}");
    let r = json(&data, &["retention", "status"]);
    assert!(r.as_array().is_some_and(|a| !a.is_empty()), "{r}");
}

#[test]
fn online_import_backup_and_restore_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || for _ in stdout.lines() {});
    // The admin socket is bound just after the listening line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !admin(&data, &["ping"]).1.contains("server running") {
        assert!(
            std::time::Instant::now() < deadline,
            "the admin socket never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Cowrie logs become events of the built-in import sensor.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let cowrie = dir.path().join("cowrie.json");
    std::fs::write(
        &cowrie,
        format!(
            "{{\"eventid\":\"cowrie.session.connect\",\"src_ip\":\"45.33.32.50\",\"session\":\"s1\",\"timestamp\":\"{now}\",\"dst_port\":22}}\n\
             {{\"eventid\":\"cowrie.login.failed\",\"username\":\"root\",\"src_ip\":\"45.33.32.50\",\"session\":\"s1\",\"timestamp\":\"{now}\"}}\n\
             {{\"eventid\":\"cowrie.client.version\",\"src_ip\":\"45.33.32.50\",\"session\":\"s1\",\"timestamp\":\"{now}\"}}\n\
             {{broken\n"
        ),
    )
    .unwrap();
    let (code, out, err) = admin(&data, &["import", "cowrie", cowrie.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cowrie.json:4: not JSON"), "{err}");
    assert!(out.contains("2 accepted, 1 rejected"), "{out}");
    let sensors = json(&data, &["sensor", "list"]);
    assert_eq!(sensors[0]["name"], "import");
    assert_eq!(sensors[0]["events"], 2);

    let f2b = "Status for the jail: sshd\n|- Filter\n`- Actions\n   `- Banned IP list:\t80.82.77.77 80.82.77.78\n";
    let (code, out, err) = admin_in(&data, &["import", "fail2ban", "-"], f2b);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 accepted"), "{out}");

    let bak = dir.path().join("live.bak");
    let out = ok(&data, &["backup", bak.to_str().unwrap()]);
    assert!(out.contains("online"), "{out}");
    let (code, _, err) = admin(&data, &["restore", bak.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("stop it before restoring"), "{err}");
    let (code, _, err) = admin(&data, &["compact"]);
    assert_eq!(code, 1);
    assert!(err.contains("stop it before compacting"), "{err}");
    // The file against its tables, from the running server.
    let db = &json(&data, &["stats"])["database"];
    let n = |k: &str| db[k].as_u64().unwrap();
    assert!(
        n("stored_bytes") > 0 && n("stored_bytes") < n("table_bytes"),
        "{db}"
    );
    assert_eq!(n("file_bytes") - n("table_bytes"), n("free_bytes"), "{db}");
    let v = json(&data, &["restore", bak.to_str().unwrap(), "--verify-only"]);
    assert!(v["entries"].as_u64().unwrap() > 0);
    let stix: serde_json::Value =
        serde_json::from_str(&ok(&data, &["export", "indicators", "--format", "stix"])).unwrap();
    assert_eq!(stix["type"], "bundle");
    assert_eq!(stix["objects"].as_array().unwrap().len(), 4, "{stix}");

    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    // Stopped: the same backup restores offline, and the ingest log of the
    // replaced database goes with it (never replayed into the restored one).
    let ingest_log = data.join(sikker::store::ingest_log::LOG_FILE);
    std::fs::write(&ingest_log, sikker::store::ingest_log::frame(b"old")).unwrap();
    ok(&data, &["restore", bak.to_str().unwrap()]);
    assert!(!ingest_log.exists());
    assert_eq!(json(&data, &["sensor", "list"])[0]["events"], 2);
    // And compaction keeps every row.
    let kept = content(&data);
    let c = json(&data, &["compact"]);
    assert_eq!(
        c["before"]["stored_bytes"], c["after"]["stored_bytes"],
        "{c}"
    );
    assert_eq!(c["before"]["table_bytes"], c["after"]["table_bytes"], "{c}");
    assert!(
        c["after"]["file_bytes"].as_u64() <= c["before"]["file_bytes"].as_u64(),
        "{c}"
    );
    assert_eq!(content(&data), kept);
    assert!(ok(&data, &["compact"]).starts_with("database compacted in"));
}

/// Another user (not the server's, not root) gets a clear refusal from the
/// admin socket — first from its file permissions, then, with those opened
/// up, from the server's peer-credential check — and nothing is done.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_socket_refuses_other_users_clearly() {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test switches to another user id with setpriv, which needs root (CI runs as root)"
    );
    let s = crate::common::TestServer::start().await;
    let data = s.data_dir.clone();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["admin", "--data-dir", data.to_str().unwrap()])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&["key", "create", "--name", "mallory"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("permission denied"), "{err}");

    // Even a socket anyone may open answers only the server's user or root.
    for p in [s.dir.path(), data.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        data.join("admin.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let (code, err) = as_nobody(&["key", "create", "--name", "mallory"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("user id 65534 may not use it (only the server's user, id 0, or root)"),
        "{err}"
    );
    let keys = s.handle().services.list_api_keys().unwrap();
    assert!(keys.iter().all(|k| k.name != "mallory"), "{keys:?}");
}

#[test]
fn a_changed_retention_files_the_stored_indicators_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "IP,Category\n45.33.32.1,brute_force\n").unwrap();
    ok(&data, &["import", "reports", csv.to_str().unwrap()]);
    let day_in = |days: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .date()
            .to_string()
    };
    // The expiry bucket and its entry count, as `admin stats` shows them
    // under the retention `config` sets (none: the 30-day default).
    let bucket = |config: Option<&Path>| {
        let mut args = Vec::new();
        if let Some(c) = config {
            args.extend(["--config", c.to_str().unwrap()]);
        }
        args.push("stats");
        let r = json(&data, &args);
        let of = |list: &str, key: &str, table: &str| {
            r["store"][list]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["table"] == table)
                .map(|t| t[key].clone())
                .unwrap()
        };
        (
            of("oldest_bucket", "day", "day_ip_expiry"),
            of("tables", "entries", "day_ip_expiry"),
        )
    };
    let today_plus = |d: i64| (serde_json::json!(day_in(d)), serde_json::json!(1));
    assert_eq!(bucket(None), today_plus(30));
    let short = dir.path().join("short.toml");
    std::fs::write(&short, "retention_indicators = \"5d\"\n").unwrap();
    assert_eq!(bucket(Some(&short)), today_plus(5));
    let long = dir.path().join("long.toml");
    std::fs::write(&long, "retention_indicators = \"90d\"\n").unwrap();
    assert_eq!(bucket(Some(&long)), today_plus(90));
    assert_eq!(bucket(None), today_plus(30));
    // An offline command with other settings than the recorded ones says
    // so; the next one with the same settings has nothing to move.
    let with_short = ["--config", short.to_str().unwrap(), "stats"];
    let warning = "pass the server's --config to offline commands";
    let (code, _, err) = admin(&data, &with_short);
    assert!(code == 0 && err.contains(warning), "{err}");
    let (code, _, err) = admin(&data, &with_short);
    assert!(code == 0 && !err.contains(warning), "{err}");
}

/// Compaction of a data dir that holds no database yet is refused clearly,
/// and creates none.
#[test]
fn compact_refuses_a_data_dir_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = admin(dir.path(), &["compact"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("holds no database yet"), "{err}");
    assert!(!dir.path().join("sikker.redb").exists());
}
