//! Configuration through the real binary: precedence flag > env > file >
//! default, the example file, and errors that name the flag and env var.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

fn check(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("config").arg("check").args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn value(out: &std::process::Output, key: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("{key} missing in {text}"))
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sikker.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9001\"\nmax_connections = 11\nlog = \"debug\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();

    let out = check(&["--config", f], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(value(&out, "listen"), "\"127.0.0.1:9001\"");
    assert_eq!(value(&out, "max_connections"), "11");
    assert_eq!(
        value(&out, "request_timeout"),
        "\"30s\"",
        "defaults fill the rest"
    );

    let out = check(&["--config", f], &[("SIKKER_LISTEN", "127.0.0.1:9002")]);
    assert_eq!(
        value(&out, "listen"),
        "\"127.0.0.1:9002\"",
        "env beats file"
    );
    assert_eq!(value(&out, "max_connections"), "11");

    let out = check(
        &["--config", f, "--listen", "127.0.0.1:9003"],
        &[("SIKKER_LISTEN", "127.0.0.1:9002")],
    );
    assert_eq!(
        value(&out, "listen"),
        "\"127.0.0.1:9003\"",
        "flag beats env"
    );

    let out = check(&[], &[("SIKKER_CONFIG", f)]);
    assert_eq!(
        value(&out, "listen"),
        "\"127.0.0.1:9001\"",
        "SIKKER_CONFIG names the file"
    );
}

#[test]
fn bad_values_fail_naming_flag_and_env() {
    let out = check(&[], &[("SIKKER_MAX_CONNECTIONS", "lots")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-connections") && err.contains("SIKKER_MAX_CONNECTIONS"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxy",
            "10.0.0.0/99",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--trusted-proxy") && err.contains("SIKKER_TRUSTED_PROXY"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["serve", "--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a cert without a key is a usage error"
    );
}

#[test]
fn unreadable_tls_files_fail_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/cert.pem") && err.contains("SIKKER_TLS_CERT"),
        "{err}"
    );
}

#[test]
fn config_example_lists_every_option() {
    let out = Command::new(BIN)
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for a in sikker::config::option_args() {
        if a.get_id() == "config" {
            continue;
        }
        let env = a.get_env().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&env), "example lacks {env}");
        assert!(
            text.contains(&format!("# {} = ", a.get_id())),
            "example lacks key {}",
            a.get_id()
        );
    }
}
