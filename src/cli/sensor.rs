//! `sikker sensor`: the honeypot sensor's options (flags and SIKKER_SENSOR_*
//! variables) and its run loop until SIGINT/SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::domain::{Clock, Protocol};
use crate::sensor::{self, Limits, Service, Settings};

/// Options of `sikker sensor`. Listeners are off unless given an address.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Sensor options")]
pub struct SensorArgs {
    /// Base URL of the sikker server to ship events to, e.g. https://sikker.example:8443 (required).
    #[arg(long, env = "SIKKER_SENSOR_SERVER", value_name = "URL", value_parser = parse_server)]
    pub server: String,

    /// Sensor token from `sikker admin sensor create` (required; prefer the env var over the flag).
    #[arg(
        long,
        env = "SIKKER_SENSOR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: String,

    /// PEM certificate to trust for the server, e.g. its DATA_DIR/tls/self-signed.crt; system roots otherwise.
    #[arg(long, env = "SIKKER_SENSOR_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Directory for unsent events, the SSH host key and the credential-hash key; created with mode 0700.
    #[arg(
        long,
        env = "SIKKER_SENSOR_SPOOL_DIR",
        value_name = "DIR",
        default_value = "./sikker-sensor-spool"
    )]
    pub spool_dir: PathBuf,

    /// Spooled bytes at most while the server is unreachable; newer events are dropped beyond.
    #[arg(long, env = "SIKKER_SENSOR_SPOOL_MAX_BYTES", value_name = "BYTES", default_value = "268435456",
          value_parser = clap::value_parser!(u64).range(65_536..))]
    pub spool_max_bytes: u64,

    /// SSH honeypot address, e.g. :2222 (off by default).
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_SSH", value_name = "ADDR", value_parser = parse_addr)]
    pub listen_ssh: Option<SocketAddr>,

    /// Telnet honeypot address, e.g. :2323 (off by default).
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_TELNET", value_name = "ADDR", value_parser = parse_addr)]
    pub listen_telnet: Option<SocketAddr>,

    /// HTTP honeypot address, e.g. :8080 (off by default).
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_HTTP", value_name = "ADDR", value_parser = parse_addr)]
    pub listen_http: Option<SocketAddr>,

    /// SMTP honeypot address, e.g. :2525 (off by default).
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_SMTP", value_name = "ADDR", value_parser = parse_addr)]
    pub listen_smtp: Option<SocketAddr>,

    /// Redis honeypot address, e.g. :6379 (off by default).
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_REDIS", value_name = "ADDR", value_parser = parse_addr)]
    pub listen_redis: Option<SocketAddr>,

    /// Generic TCP listeners recording connections only: PORT, :PORT or ADDR:PORT, optionally /PROTOCOL (e.g. 3306/mysql); comma-separated; none by default.
    #[arg(long, env = "SIKKER_SENSOR_LISTEN_TCP", value_name = "ADDR[/PROTO]", value_delimiter = ',', value_parser = parse_tcp)]
    pub listen_tcp: Vec<(SocketAddr, Protocol)>,

    /// Identification string the SSH honeypot announces.
    #[arg(long, env = "SIKKER_SENSOR_SSH_BANNER", value_name = "TEXT", default_value = "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",
          value_parser = parse_banner)]
    pub ssh_banner: String,

    /// Simultaneous connections over all listeners; further ones are closed at once.
    #[arg(long, env = "SIKKER_SENSOR_MAX_CONNECTIONS", value_name = "N", default_value = "256",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,

    /// A honeypot client silent for this long is disconnected.
    #[arg(long, env = "SIKKER_SENSOR_IDLE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Events per batch sent to the server (at most 10000).
    #[arg(long, env = "SIKKER_SENSOR_BATCH_SIZE", value_name = "N", default_value = "500",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// A partly filled batch is sent after this long.
    #[arg(long, env = "SIKKER_SENSOR_FLUSH_INTERVAL", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// Log filter in tracing's EnvFilter syntax.
    #[arg(
        long,
        env = "SIKKER_SENSOR_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log: String,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

pub(crate) fn parse_server(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must start with https:// (or http://)")?;
    if rest.trim_end_matches('/').is_empty() || rest.contains(['?', '#', ' ']) {
        return Err("must be a scheme and host with an optional port and path".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_banner(s: &str) -> Result<String, String> {
    if !s.starts_with("SSH-2.0-") || s.len() > 200 || s.chars().any(char::is_control) {
        return Err("must start with SSH-2.0- and be one printable line".into());
    }
    Ok(s.to_owned())
}

/// `2222`, `:2222` (all IPv4 interfaces) or `ADDR:PORT` (`[::]:2222` for IPv6).
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)));
    }
    s.parse()
        .map_err(|_| "expected PORT, :PORT or ADDR:PORT such as 0.0.0.0:2222".into())
}

fn parse_tcp(s: &str) -> Result<(SocketAddr, Protocol), String> {
    let (addr, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = parse_addr(addr)?;
    let proto = match proto {
        Some(p) => p
            .parse::<Protocol>()
            .map_err(|()| format!("unknown protocol '{p}'"))?,
        None => guess(addr.port()).ok_or_else(|| {
            format!(
                "port {} has no well-known protocol: name one, e.g. {s}/mysql",
                addr.port()
            )
        })?,
    };
    Ok((addr, proto))
}

/// The protocol a port usually carries.
fn guess(port: u16) -> Option<Protocol> {
    Some(match port {
        21 => Protocol::Ftp,
        22 => Protocol::Ssh,
        23 => Protocol::Telnet,
        25 | 465 | 587 => Protocol::Smtp,
        80 | 443 | 8000 | 8080 | 8443 => Protocol::Http,
        139 | 445 => Protocol::Smb,
        143 | 993 => Protocol::Imap,
        554 => Protocol::Rtsp,
        1433 => Protocol::Mssql,
        2375 | 2376 => Protocol::Docker,
        3306 => Protocol::Mysql,
        5060 => Protocol::Sip,
        5432 => Protocol::Postgresql,
        6379 => Protocol::Redis,
        9200 => Protocol::Elasticsearch,
        27017 => Protocol::Mongodb,
        _ => return None,
    })
}

impl SensorArgs {
    /// The library settings, reading the CA file.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let ca_pem = match &self.ca_file {
            Some(f) => Some(std::fs::read(f).with_context(|| {
                format!(
                    "cannot read {} (--ca-file / SIKKER_SENSOR_CA_FILE)",
                    f.display()
                )
            })?),
            None => None,
        };
        let mut listeners = Vec::new();
        for (service, addr) in [
            (Service::Ssh, self.listen_ssh),
            (Service::Telnet, self.listen_telnet),
            (Service::Http, self.listen_http),
            (Service::Smtp, self.listen_smtp),
            (Service::Redis, self.listen_redis),
        ] {
            listeners.extend(addr.map(|a| (service, a)));
        }
        listeners.extend(self.listen_tcp.iter().map(|(a, p)| (Service::Tcp(*p), *a)));
        if listeners.is_empty() {
            anyhow::bail!(
                "no listener enabled: give at least one of --listen-ssh, --listen-telnet, --listen-http, --listen-smtp, --listen-redis, --listen-tcp"
            );
        }
        Ok(Settings {
            server: self.server.clone(),
            token: self.token.clone(),
            ca_pem,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_bytes,
            batch_size: self.batch_size as usize,
            flush_interval: self.flush_interval,
            ssh_banner: self.ssh_banner.clone(),
            listeners,
            limits: Limits {
                max_connections: self.max_connections as usize,
                idle_timeout: self.idle_timeout,
                ..Limits::default()
            },
        })
    }
}

pub async fn run(args: SensorArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let handle = sensor::start(settings, Clock::system()).await?;
    for (service, addr) in &handle.addrs {
        println!("{} honeypot listening on {addr}", service.protocol());
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("sensor shutting down; unsent events stay in the spool");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_tcp_specs() {
        assert_eq!(parse_addr(":2222").unwrap().port(), 2222);
        assert_eq!(parse_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(parse_addr("nowhere").is_err());
        assert_eq!(parse_tcp("3306").unwrap().1, Protocol::Mysql);
        assert_eq!(parse_tcp("127.0.0.1:7000/sip").unwrap().1, Protocol::Sip);
        assert!(parse_tcp("7000").unwrap_err().contains("/mysql"));
        assert!(parse_tcp("7000/gopher").is_err());
    }
}
