//! Packaging artefacts checked with the real tools: the systemd unit with
//! `systemd-analyze verify`, the sysusers entry with `systemd-sysusers`,
//! the environment example against the binary's own option list, and the
//! `.deb` built by `cargo deb` and unpacked with `dpkg -x`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sikker");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The path of `tool`, or a failure saying how to get it.
pub fn need_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{tool}` not found: install the Debian package `{package}` (the install part of .ci/run does)"
    );
}

/// `Key=value` pairs of an INI-style unit file, in order, per section.
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value line");
        out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

#[test]
fn unit_has_the_required_hardening_and_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(repo("packaging/sikker.service")).unwrap();
    let entries = unit_entries(&text);
    let get = |key: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    for (key, want) in [
        ("Type", "notify"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "sikker"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(get(key), vec![want.to_owned()], "{key}");
    }
    assert!(
        get("SystemCallFilter").contains(&"@system-service".to_owned()),
        "SystemCallFilter=@system-service"
    );

    // ExecStart's arguments must be ones the binary accepts.
    let exec = get("ExecStart");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(&args[..2], ["/usr/bin/sikker", "serve"]);
    let out = Command::new(BIN)
        .args(["config", "check"])
        .args(&args[2..])
        .env_remove("SIKKER_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/var/lib/sikker"));

    // systemd checks the executable exists: point it at the built binary.
    let analyze = need_tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("sikker.service");
    std::fs::write(&unit, text.replace("/usr/bin/sikker", BIN)).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    // Unknown keys and bad values are only warnings: there must be none.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sikker.service"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze: {complaints:#?}");
}

#[test]
fn sysusers_entry_creates_the_user_the_unit_runs_as() {
    let tool = need_tool("systemd-sysusers", "systemd");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let out = Command::new(tool)
        .arg(format!("--root={}", root.path().display()))
        .arg(repo("packaging/sikker.sysusers"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("sikker:"))
        .unwrap_or_else(|| panic!("no sikker user in {passwd}"));
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!(fields[5], "/var/lib/sikker");
    assert_eq!(fields[6], "/usr/sbin/nologin");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("sikker:")), "{group}");
    let unit = std::fs::read_to_string(repo("packaging/sikker.service")).unwrap();
    assert!(unit.contains("\nUser=sikker\n"));
}

#[test]
fn env_example_names_only_real_options_and_is_accepted() {
    let text = std::fs::read_to_string(repo("packaging/sikker.env.example")).unwrap();
    let mut active = Vec::new();
    let mut all = Vec::new();
    for line in text.lines() {
        let commented = line.starts_with('#');
        let body = line.trim_start_matches('#');
        let Some((k, v)) = body.split_once('=') else {
            continue;
        };
        if !k.starts_with("SIKKER_") || k.contains(' ') {
            continue;
        }
        all.push((k.into(), v.into()));
        if !commented {
            active.push((k.to_owned(), v.to_owned()));
        }
    }
    assert!(active.len() >= 5, "{active:?}");
    let unknown = sikker::config::unknown_env_vars(all.into_iter());
    assert!(unknown.is_empty(), "unknown variables: {unknown:?}");
    let data = tempfile::tempdir().unwrap();
    let mut c = Command::new(BIN);
    c.args(["config", "check", "--data-dir"]).arg(data.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("SIKKER_") {
            c.env_remove(k);
        }
    }
    c.envs(active.iter().map(|(k, v)| (k, v)));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("[::]:443"), "{shown}");
    assert!(shown.contains("https://rep.example.net"), "{shown}");
}

/// Builds the .deb from the binary under test (no second, release build:
/// `cargo deb --no-build` packages whatever `target/release/sikker` is, so
/// a scratch target dir holds a copy of the test binary there), unpacks it
/// with `dpkg -x` and checks what lands where.
#[test]
fn deb_package_installs_binary_unit_sysusers_examples_and_licences() {
    let cargo_deb = need_cargo_deb();
    let dpkg = need_tool("dpkg", "dpkg");
    let dpkg_deb = need_tool("dpkg-deb", "dpkg");
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(BIN, target.join("release/sikker")).unwrap();
    let out_dir = work.path().join("out");
    let out = Command::new(&cargo_deb)
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "--fast",
            "--locked",
            "-o",
        ])
        .arg(&out_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb in the output dir");

    let info = Command::new(&dpkg_deb)
        .args(["-f"])
        .arg(&deb)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&info.stdout);
    assert!(control.contains("Package: sikker"), "{control}");
    assert!(
        control.contains(&format!("Version: {}-1", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );

    let root = work.path().join("root");
    let x = Command::new(&dpkg)
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));

    // The installed binary runs.
    let bin = root.join("usr/bin/sikker");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // Files identical to the sources they come from.
    for (installed, source) in [
        (
            "usr/lib/systemd/system/sikker.service",
            "packaging/sikker.service",
        ),
        (
            "usr/lib/sysusers.d/sikker.conf",
            "packaging/sikker.sysusers",
        ),
        (
            "usr/share/doc/sikker/examples/sikker.env",
            "packaging/sikker.env.example",
        ),
        (
            "usr/share/doc/sikker/examples/sikker.toml",
            "packaging/sikker.toml.example",
        ),
        ("usr/share/doc/sikker/README.md", "README.md"),
        ("usr/share/doc/sikker/geoip/NOTICE", "geoip/NOTICE"),
        (
            "usr/share/doc/sikker/examples/fail2ban/action.d/sikker.conf",
            "packaging/fail2ban/action.d/sikker.conf",
        ),
    ] {
        let a = std::fs::read(root.join(installed))
            .unwrap_or_else(|e| panic!("{installed} not in the package: {e}"));
        assert_eq!(a, std::fs::read(repo(source)).unwrap(), "{installed}");
    }
    // The example config is what the packaged binary itself prints.
    let ex = Command::new(&bin)
        .args(["config", "example"])
        .output()
        .unwrap();
    assert_eq!(
        ex.stdout,
        std::fs::read(root.join("usr/share/doc/sikker/examples/sikker.toml")).unwrap(),
        "packaging/sikker.toml.example is stale: regenerate with `sikker config example`"
    );
    // Licences: the project's own and the GeoIP data attribution.
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/sikker/copyright")).unwrap();
    assert!(copyright.contains("Apache"), "{copyright}");

    // The maintainer scripts create the user and enable (not start) the unit.
    let ctl = work.path().join("control");
    let e = Command::new(&dpkg_deb)
        .arg("-e")
        .arg(&deb)
        .arg(&ctl)
        .output()
        .unwrap();
    assert!(e.status.success());
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper enable sikker.service"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
}

/// `cargo` when the cargo-deb subcommand is installed.
fn need_cargo_deb() -> PathBuf {
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let ok = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "cargo-deb is not installed: run `cargo install cargo-deb --locked` (the install part of .ci/run does)"
    );
    cargo
}

/// Docker cannot run here, so the image is checked piecewise: every path
/// the Dockerfile copies exists and survives its .dockerignore, and the
/// runtime stage's `ENV` plus its `HEALTHCHECK` command work with the binary
/// (the server started with the image's environment, the health check with
/// the same environment, exit code 0; then 1 once the server is gone).
#[test]
fn dockerfile_copies_existing_files_and_its_healthcheck_works_with_its_env() {
    let text = std::fs::read_to_string(repo("packaging/Dockerfile")).unwrap();
    // Join continuation lines.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(lines.contains(&"USER sikker:sikker"));
    assert!(lines.contains(&"VOLUME [\"/var/lib/sikker\"]"));
    let hc = lines.iter().find(|l| l.starts_with("HEALTHCHECK")).unwrap();
    assert!(hc.ends_with("CMD [\"sikker\", \"healthcheck\"]"), "{hc}");

    let ignore = std::fs::read_to_string(repo("packaging/Dockerfile.dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(repo(src).exists(), "COPY {src}: no such path");
            let top = src.split('/').next().unwrap();
            assert!(
                allowed.contains(src) || allowed.contains(&top),
                "COPY {src} is excluded by Dockerfile.dockerignore"
            );
        }
    }

    // The runtime ENV (the last stage's), with the address moved to loopback.
    let runtime = joined.rsplit("\nFROM ").next().unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for l in runtime.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("ENV ") {
            for kv in rest.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap();
                env.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    let listen = env
        .iter()
        .find(|(k, _)| k == "SIKKER_LISTEN")
        .unwrap()
        .1
        .clone();
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(port, "8443", "EXPOSE and the listen port agree");
    assert!(runtime.contains("EXPOSE 8443"));
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let data = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "SIKKER_LISTEN" => (k, format!("127.0.0.1:{port}")),
            "SIKKER_DATA_DIR" => (k, data.path().join("d").display().to_string()),
            _ => (k, v),
        })
        .collect();
    let with_env = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("SIKKER_") {
                c.env_remove(k);
            }
        }
        c.envs(env.iter().map(|(k, v)| (k, v)));
        c
    };
    let mut server = with_env(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let healthy = loop {
        let st = with_env(&["healthcheck"]).status().unwrap();
        if st.success() || std::time::Instant::now() > deadline {
            break st.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        healthy,
        "sikker healthcheck never passed with the image's ENV"
    );
    let st = with_env(&["healthcheck"]).status().unwrap();
    assert!(!st.success(), "healthcheck passes with no server");
}
