//! The Python interpreter of the test tools' venv: `SIKKER_TEST_PYTHON`
//! (exported by `.ci/run`), else the repository's `.ci/venv`, which is
//! created from `tests/python-requirements.txt` on first use so plain
//! `cargo test` works on a machine with python3 and its venv module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static SETUP: Mutex<Option<PathBuf>> = Mutex::new(None);

const MODULES: &str = "import abuseipdb_wrapper, stix2validator, taxii2client, aiosmtpd";

fn ready(p: &Path) -> bool {
    Command::new(p)
        .args(["-c", MODULES])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn python() -> PathBuf {
    let mut done = SETUP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = done.as_ref() {
        return p.clone();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(p) = std::env::var_os("SIKKER_TEST_PYTHON").map(PathBuf::from) {
        assert!(
            ready(&p),
            "SIKKER_TEST_PYTHON={} lacks the test tools of tests/python-requirements.txt",
            p.display()
        );
        *done = Some(p.clone());
        return p;
    }
    let venv = root.join(".ci/venv");
    let p = venv.join("bin/python");
    if !ready(&p) {
        let made = p.exists()
            || Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
        let installed = made
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(root.join("tests/python-requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            installed && ready(&p),
            "cannot set up {}: install python3 with its venv module (Debian: python3-venv) \
             or run .ci/run once",
            venv.display()
        );
    }
    *done = Some(p.clone());
    p
}
