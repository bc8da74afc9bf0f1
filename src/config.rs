//! One `Config` for the server: clap flags, `SIKKER_*` environment variables
//! and an optional TOML file, with precedence flag > env > file > default.
//!
//! File values are applied by parsing the command line again with the file's
//! keys added as flags wherever neither a flag nor an env var set them, so a
//! value from the file goes through exactly the same validation as a flag.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use ipnet::IpNet;

use crate::cli::Cli;
use crate::domain::LogIpMode;

/// Every server option. Doc comments are the help text and the comments of
/// `sikker config example`; each states its default.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Server options")]
pub struct Config {
    /// TOML configuration file; flags and SIKKER_* variables override its values.
    #[arg(long, env = "SIKKER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database, keys and certificates; created with mode 0700.
    #[arg(
        long,
        env = "SIKKER_DATA_DIR",
        value_name = "DIR",
        default_value = "./sikker-data"
    )]
    pub data_dir: PathBuf,

    /// Address to serve HTTPS on (plain HTTP with --insecure-http); port 0 picks a free port.
    #[arg(
        long,
        env = "SIKKER_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443"
    )]
    pub listen: SocketAddr,

    /// PEM certificate chain to serve instead of the self-signed one; reloaded on SIGHUP.
    #[arg(
        long,
        env = "SIKKER_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key belonging to --tls-cert; reloaded on SIGHUP.
    #[arg(
        long,
        env = "SIKKER_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Domain to obtain a certificate for from an ACME CA (repeat the flag or separate with commas); the certificate replaces the self-signed one and is renewed automatically. The CA validates with TLS-ALPN-01 on DOMAIN:443, which must reach --listen. Naming a domain accepts the CA's terms of service. None by default (no ACME).
    #[arg(long, env = "SIKKER_ACME_DOMAIN", value_name = "DOMAIN", value_delimiter = ',', value_parser = parse_domain)]
    pub acme_domain: Vec<String>,

    /// ACME directory URL of the CA; default Let's Encrypt production (staging: https://acme-staging-v02.api.letsencrypt.org/directory).
    #[arg(long, env = "SIKKER_ACME_DIRECTORY", value_name = "URL",
          default_value = crate::acme::LETS_ENCRYPT, value_parser = parse_https_url)]
    pub acme_directory: String,

    /// Contact URI for the ACME account, e.g. mailto:admin@example.org (repeat or separate with commas); the CA may send expiry warnings there. None by default.
    #[arg(long, env = "SIKKER_ACME_CONTACT", value_name = "URI", value_delimiter = ',', value_parser = parse_mailto)]
    pub acme_contact: Vec<String>,

    /// PEM root certificate trusted for the ACME directory's own HTTPS instead of the system roots (a private or test CA such as pebble); none by default.
    #[arg(long, env = "SIKKER_ACME_CA_FILE", value_name = "FILE")]
    pub acme_ca_file: Option<PathBuf>,

    /// Renew the ACME certificate this long before it expires (at most a third of its lifetime, for short-lived certificates).
    #[arg(long, env = "SIKKER_ACME_RENEW_BEFORE", value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub acme_renew_before: Duration,

    /// Serve plain HTTP instead of HTTPS, for use behind a TLS-terminating reverse proxy only.
    #[arg(long, env = "SIKKER_INSECURE_HTTP")]
    pub insecure_http: bool,

    /// Proxy addresses (CIDRs, comma-separated) whose X-Forwarded-For header is believed; none by default.
    #[arg(long, env = "SIKKER_TRUSTED_PROXY", value_name = "CIDR", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxy: Vec<IpNet>,

    /// Also listen on this address for plain HTTP and answer every request with 308 to HTTPS.
    #[arg(long, env = "SIKKER_HTTP_REDIRECT_LISTEN", value_name = "ADDR")]
    pub http_redirect_listen: Option<SocketAddr>,

    /// Public base URL (https://host[:port]) used in links and redirects; derived from the request when unset.
    #[arg(long, env = "SIKKER_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "sikker=debug".
    #[arg(long, env = "SIKKER_LOG", value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    pub log: String,

    /// Log line format.
    #[arg(
        long,
        env = "SIKKER_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// How client addresses appear in logs: truncated to /24 and /48, or omitted. Never raw.
    #[arg(
        long,
        env = "SIKKER_LOG_CLIENT_IP",
        value_name = "MODE",
        default_value = "truncate"
    )]
    pub log_client_ip: LogIpMode,

    /// Maximum simultaneous client connections; further ones are closed at once.
    #[arg(long, env = "SIKKER_MAX_CONNECTIONS", value_name = "N", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Maximum simultaneous connections from one client address (IPv6: one /64); further ones are closed at once. Trusted proxies are exempt.
    #[arg(long, env = "SIKKER_MAX_CONNECTIONS_PER_IP", value_name = "N", default_value = "64",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_ip: u32,

    /// Sustained requests a second allowed from one client address (behind a trusted proxy: the forwarded address); faster clients get 429 with Retry-After. 0 turns the limit off. /healthz is not counted.
    #[arg(long, env = "SIKKER_RATE_LIMIT_PER_IP", value_name = "REQ_PER_SEC", default_value = "100",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit_per_ip: u32,

    /// Requests one client address may send at once before --rate-limit-per-ip applies.
    #[arg(long, env = "SIKKER_RATE_LIMIT_BURST", value_name = "N", default_value = "500",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: u32,

    /// Maximum size of a request's header section in bytes (answered with 431 beyond).
    #[arg(long, env = "SIKKER_MAX_HEADER_BYTES", value_name = "BYTES", default_value = "16384",
          value_parser = clap::value_parser!(u32).range(8192..=1_048_576))]
    pub max_header_bytes: u32,

    /// Maximum request body in bytes for ordinary JSON endpoints (bulk endpoints have their own documented limits).
    #[arg(long, env = "SIKKER_MAX_BODY_BYTES", value_name = "BYTES", default_value = "65536",
          value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub max_body_bytes: u32,

    /// Time allowed for a whole request, body included (408 for a slow body, 503 for a slow answer).
    #[arg(long, env = "SIKKER_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Time allowed for a client to send a request's headers once it has started.
    #[arg(long, env = "SIKKER_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// A connection with no traffic for this long is closed; must not be shorter than --request-timeout.
    #[arg(long, env = "SIKKER_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// MaxMind GeoIP2/GeoLite2 Country (or City) `.mmdb` replacing the embedded country table; reloaded on SIGHUP. Default: the embedded table.
    #[arg(long, env = "SIKKER_GEOIP_COUNTRY", value_name = "FILE")]
    pub geoip_country: Option<PathBuf>,

    /// MaxMind GeoLite2-ASN (or GeoIP2-ISP) `.mmdb` replacing the embedded AS table; reloaded on SIGHUP. Default: the embedded table.
    #[arg(long, env = "SIKKER_GEOIP_ASN", value_name = "FILE")]
    pub geoip_asn: Option<PathBuf>,

    /// MaxMind GeoIP2/GeoLite2 City `.mmdb` that adds city names; reloaded on SIGHUP. Default: none (city is null).
    #[arg(long, env = "SIKKER_GEOIP_CITY", value_name = "FILE")]
    pub geoip_city: Option<PathBuf>,

    /// Raw reports are deleted this long after they were made.
    #[arg(long, env = "SIKKER_RETENTION_REPORTS", value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub retention_reports: Duration,

    /// An IP's indicator is purged after this long without new evidence from any source.
    #[arg(long, env = "SIKKER_RETENTION_INDICATORS", value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub retention_indicators: Duration,

    /// The repeat-offender history of an IP (how often its indicator expired, and the last expiry day; no evidence) is purged this long after its last indicator expired.
    #[arg(long, env = "SIKKER_RETENTION_REPEAT_HISTORY", value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub retention_repeat_history: Duration,

    /// IPv6 evidence is also aggregated per prefix of this length (32 to 128; 128 turns grouping off), and checks show the prefix's verdict.
    #[arg(long, env = "SIKKER_IPV6_PREFIX", value_name = "N", default_value = "64", value_parser = parse_ipv6_prefix)]
    pub ipv6_prefix: crate::domain::prefix::PrefixLen,

    /// API usage counters (per key, day and endpoint group) are deleted this long after their day.
    #[arg(long, env = "SIKKER_RETENTION_USAGE", value_name = "DURATION", default_value = "730d", value_parser = parse_duration)]
    pub retention_usage: Duration,

    /// Network data of account holders (the registration address) is deleted this long after collection.
    #[arg(long, env = "SIKKER_RETENTION_NETWORK", value_name = "DURATION", default_value = "730d", value_parser = parse_duration)]
    pub retention_network: Duration,

    /// What is left of an erased account (profile, e-mail) is purged this long after erasure.
    #[arg(long, env = "SIKKER_RETENTION_ACCOUNT_AFTER_DELETION", value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub retention_account_after_deletion: Duration,

    /// First-party analytics events (collected only with consent) are deleted this long after collection.
    #[arg(long, env = "SIKKER_RETENTION_ANALYTICS", value_name = "DURATION", default_value = "730d", value_parser = parse_duration)]
    pub retention_analytics: Duration,

    /// Anonymous audience-measurement page views are deleted this long after their day (13 months).
    #[arg(long, env = "SIKKER_RETENTION_AUDIENCE", value_name = "DURATION", default_value = "395d", value_parser = parse_duration)]
    pub retention_audience: Duration,

    /// The consent log, the data-subject request log and the notice log are kept this long.
    #[arg(long, env = "SIKKER_RETENTION_PRIVACY_LOG", value_name = "DURATION", default_value = "730d", value_parser = parse_duration)]
    pub retention_privacy_log: Duration,

    /// Most notice e-mails (`sikker admin notify`) queued per minute; the rest wait their turn in the outbox.
    #[arg(long, env = "SIKKER_NOTIFY_RATE", value_name = "N", default_value = "60", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub notify_rate: u32,

    /// redb's page cache in MiB (reads and the write buffer together); the in-memory index answers the hot lookups, so a small cache is enough.
    #[arg(long, env = "SIKKER_DB_CACHE_MIB", value_name = "MIB", default_value = "16", value_parser = clap::value_parser!(u32).range(4..=65_536))]
    pub db_cache_mib: u32,

    /// Memory in MiB for the entries of block lists being built and sent at once (48 bytes per listed address until its last byte is sent); a list that finds no room waits for it, up to half the request timeout, then gets 503 with Retry-After.
    #[arg(long, env = "SIKKER_BLOCKLIST_MEMORY_MIB", value_name = "MIB", default_value = "128", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub blocklist_memory_mib: u32,

    /// Memory in MiB for sensor batches being received and ingested at once (each holds its declared length until answered); a batch that finds no room waits up to a second, then gets 503 with Retry-After and the sensor retries it.
    #[arg(long, env = "SIKKER_SENSOR_BATCH_MEMORY_MIB", value_name = "MIB", default_value = "32", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub sensor_batch_memory_mib: u32,

    /// How often the retention sweep runs (it also runs at start-up).
    #[arg(long, env = "SIKKER_SWEEP_INTERVAL", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// TOML file of tiers and their daily quotas (`[tiers.<id>]` tables); SikkerAPI's published table when unset.
    #[arg(long, env = "SIKKER_TIERS_FILE", value_name = "FILE")]
    pub tiers_file: Option<PathBuf>,

    /// Who may create an account: open (anyone), invite (holders of an admin's invitation) or closed.
    #[arg(
        long,
        env = "SIKKER_REGISTRATION",
        value_name = "MODE",
        default_value = "invite"
    )]
    pub registration: crate::service::accounts::Registration,

    /// Failed sign-ins per account name within --lockout-window before further attempts are refused (a source address gets four times as many).
    #[arg(long, env = "SIKKER_LOCKOUT_FAILURES", value_name = "N", default_value = "5",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub lockout_failures: u32,

    /// The window in which failed sign-ins are counted, and how long a lockout lasts.
    #[arg(long, env = "SIKKER_LOCKOUT_WINDOW", value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub lockout_window: Duration,

    /// Password hashes (argon2id) computed at the same time; more sign-ins wait, so a flood cannot starve the API.
    #[arg(long, env = "SIKKER_HASH_CONCURRENCY", value_name = "N", default_value = "2",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub hash_concurrency: u32,

    /// Days after which the web sessions' JWT signing key is replaced by a new one (tokens signed with the previous key stay valid until they expire).
    #[arg(long, env = "SIKKER_JWT_ROTATE_DAYS", value_name = "DAYS", default_value = "30",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub jwt_rotate_days: u32,
    /// On the first start of a data dir, fill it with a labelled synthetic demo data set (sensor "demo (synthetic data)"); ignored for a data dir that already exists. Off by default.
    #[arg(long, env = "SIKKER_DEMO")]
    pub demo: bool,

    /// An alert notifies at most once per this period; matches in between are sent together as a digest.
    #[arg(long, env = "SIKKER_ALERT_COOLDOWN", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub alert_cooldown: Duration,

    /// SMTP relay that alert e-mails are sent through; e-mail notifications are off when unset.
    #[arg(long, env = "SIKKER_SMTP_HOST", value_name = "HOST")]
    pub smtp_host: Option<String>,

    /// SMTP relay port; unset means 587 for starttls, 465 for tls and 25 for plain.
    #[arg(long, env = "SIKKER_SMTP_PORT", value_name = "PORT")]
    pub smtp_port: Option<u16>,

    /// How to talk to the SMTP relay: starttls (required), tls (implicit, as on port 465) or plain (only to a loopback relay).
    #[arg(
        long,
        env = "SIKKER_SMTP_TLS",
        value_name = "MODE",
        default_value = "starttls"
    )]
    pub smtp_tls: SmtpTls,

    /// User name for SMTP authentication; none when unset.
    #[arg(long, env = "SIKKER_SMTP_USERNAME", value_name = "USER")]
    pub smtp_username: Option<String>,

    /// File holding the SMTP password (one line); read at start-up.
    #[arg(long, env = "SIKKER_SMTP_PASSWORD_FILE", value_name = "FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// Sender of alert e-mails, e.g. "sikker <alerts@example.org>"; required with --smtp-host.
    #[arg(long, env = "SIKKER_SMTP_FROM", value_name = "MAILBOX")]
    pub smtp_from: Option<String>,

    /// Accept http:// webhook URLs and loopback or private webhook targets (for tests and closed networks).
    #[arg(long, env = "SIKKER_WEBHOOK_ALLOW_HTTP")]
    pub webhook_allow_http: bool,

    /// PEM certificates trusted for https webhooks besides the system roots (a private CA); none by default.
    #[arg(long, env = "SIKKER_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    /// Extra regular expression whose matches in report comments are replaced by `[redacted]` before storage (repeat the flag; the variable and each TOML array item hold one pattern); none by default.
    #[arg(long, env = "SIKKER_SCRUB_PATTERN", value_name = "REGEX", value_parser = parse_scrub_pattern)]
    pub scrub_pattern: Vec<String>,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish before the server exits.
    #[arg(long, env = "SIKKER_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption; allowed only for a relay on a loopback address.
    Plain,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_ipv6_prefix(s: &str) -> Result<crate::domain::prefix::PrefixLen, String> {
    s.parse()
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.trim()
        .parse::<IpNet>()
        .or_else(|_| s.trim().parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| "expected an IP address or CIDR such as 10.0.0.0/8".into())
}

fn parse_domain(s: &str) -> Result<String, String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
        return Err(
            "expected a DNS name such as sikker.example.org (no wildcard, no IP address)".into(),
        );
    }
    if d.parse::<std::net::IpAddr>().is_ok()
        || d.rsplit('.')
            .next()
            .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("expected a DNS name, not an IP address".into());
    }
    Ok(d)
}

fn parse_https_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or("must start with https://")?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains([' ', '@']) {
        return Err("must be an https:// URL with a host".into());
    }
    Ok(s.to_owned())
}

fn parse_mailto(s: &str) -> Result<String, String> {
    let s = s.trim();
    let addr = s
        .strip_prefix("mailto:")
        .ok_or("must be a mailto: URI such as mailto:admin@example.org")?;
    if addr.parse::<lettre::Address>().is_err() {
        return Err(format!("{addr} is not an e-mail address"));
    }
    Ok(s.to_owned())
}

fn parse_scrub_pattern(s: &str) -> Result<String, String> {
    crate::domain::scrub::Scrubber::new(&[s.to_owned()])?;
    Ok(s.to_owned())
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must start with https:// (or http:// behind a proxy)")?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be a scheme and host with an optional port, without a path".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Why the command line, environment or config file could not be used.
#[derive(Debug)]
pub enum ParseError {
    /// Help, version, or a usage error clap renders itself.
    Clap(clap::Error),
    /// A value that was syntactically fine but not acceptable, already worded.
    Invalid(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Clap(e) => write!(f, "{}", e.render()),
            Self::Invalid(m) => f.write_str(m),
        }
    }
}

/// The clap `Command` describing the server options alone.
pub fn options_command() -> clap::Command {
    <Config as clap::Args>::augment_args(clap::Command::new("sikker-options"))
}

/// Server options that can be set, with their file key and env var.
pub fn option_args() -> Vec<clap::Arg> {
    options_command()
        .get_arguments()
        .filter(|a| a.get_id() != "help" && a.get_id() != "version")
        .cloned()
        .collect()
}

fn env_name(a: &clap::Arg) -> String {
    a.get_env()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn key_of(a: &clap::Arg) -> String {
    a.get_id().as_str().to_owned()
}

/// "flag --listen, env SIKKER_LISTEN, or `listen` in the config file".
pub fn describe_option(id: &str) -> String {
    option_args().iter().find(|a| a.get_id() == id).map_or_else(
        || id.to_owned(),
        |a| {
            format!(
                "--{} (env {}, or `{}` in the config file)",
                a.get_long().unwrap_or(id),
                env_name(a),
                key_of(a)
            )
        },
    )
}

/// Parses the whole command line, applying a config file where one is named.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let root = Cli::command();
    let matches = root
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| annotate(e, None))?;
    if let Some((file, sub_cmd, sub_matches)) = config_scope(&root, &matches) {
        let extra = file_args(&file, &sub_cmd, sub_matches)?;
        if !extra.is_empty() {
            args.extend(extra);
            let matches = root
                .try_get_matches_from(&args)
                .map_err(|e| annotate(e, Some(&file)))?;
            return finish(&matches);
        }
    }
    finish(&matches)
}

fn finish(matches: &clap::ArgMatches) -> Result<Cli, ParseError> {
    let cli = Cli::from_arg_matches(matches).map_err(|e| annotate(e, None))?;
    if let Some(cfg) = cli.command.config() {
        cfg.validate().map_err(ParseError::Invalid)?;
    }
    Ok(cli)
}

/// The subcommand whose arguments a config file applies to, if a file is named.
fn config_scope<'m>(
    root: &clap::Command,
    matches: &'m clap::ArgMatches,
) -> Option<(PathBuf, clap::Command, &'m clap::ArgMatches)> {
    let mut cmd = root.clone();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        cmd = cmd.find_subcommand(name)?.clone();
        m = sub;
        if cmd.get_arguments().any(|a| a.get_id() == "config") {
            let file = m.get_one::<PathBuf>("config")?.clone();
            return Some((file, cmd, m));
        }
    }
    None
}

/// The file's keys as extra flags, for every key the subcommand takes and
/// that neither a flag nor an env var already set.
fn file_args(
    file: &PathBuf,
    sub: &clap::Command,
    m: &clap::ArgMatches,
) -> Result<Vec<OsString>, ParseError> {
    let where_ = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| {
        ParseError::Invalid(format!(
            "cannot read config file {where_} (--config / SIKKER_CONFIG): {e}"
        ))
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ParseError::Invalid(format!("config file {where_} is not valid TOML: {e}")))?;
    let known = option_args();
    let mut out = Vec::new();
    for (raw_key, value) in &table {
        let key = raw_key.replace('-', "_");
        let Some(arg) = known
            .iter()
            .find(|a| a.get_id() == key.as_str() && key != "config")
        else {
            return Err(ParseError::Invalid(format!(
                "config file {where_}: unknown key `{raw_key}` (see `sikker config example`)"
            )));
        };
        let Some(sub_arg) = sub.get_arguments().find(|a| a.get_id() == key.as_str()) else {
            continue; // an option this subcommand does not use
        };
        if matches!(
            m.value_source(&key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = format!("--{}", sub_arg.get_long().unwrap_or(&key));
        let bad = |why: &str| {
            ParseError::Invalid(format!(
                "config file {where_}: `{raw_key}` {why} ({})",
                describe_option(&key)
            ))
        };
        let is_flag = matches!(arg.get_action(), ArgAction::SetTrue);
        match value {
            toml::Value::Boolean(b) if is_flag => {
                if *b {
                    out.push(long.into());
                }
            }
            _ if is_flag => return Err(bad("must be true or false")),
            toml::Value::Array(items) => {
                for item in items {
                    out.push(long.clone().into());
                    out.push(
                        scalar(item)
                            .ok_or_else(|| bad("must be a list of strings"))?
                            .into(),
                    );
                }
            }
            other => {
                out.push(long.into());
                out.push(
                    scalar(other)
                        .ok_or_else(|| bad("must be a string or number"))?
                        .into(),
                );
            }
        }
    }
    Ok(out)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Adds which flag, env var and file key a bad value belongs to.
fn annotate(e: clap::Error, file: Option<&PathBuf>) -> ParseError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return ParseError::Clap(e);
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return ParseError::Clap(e),
    };
    let long = arg
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    let id = option_args()
        .iter()
        .find(|a| a.get_long() == Some(long.as_str()))
        .map(key_of);
    let mut msg = e.render().to_string().trim_end().to_owned();
    if let Some(id) = id {
        let _ = write!(msg, "\n  this value is set by {}", describe_option(&id));
    }
    if let Some(f) = file {
        let _ = write!(msg, "\n  (config file in use: {})", f.display());
    }
    ParseError::Invalid(msg)
}

impl Config {
    /// The retention periods the services enforce.
    pub fn retention(&self) -> crate::service::Retention {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::service::Retention {
            reports_ms: ms(self.retention_reports),
            indicators_ms: ms(self.retention_indicators),
            repeat_history_ms: ms(self.retention_repeat_history),
        }
    }

    /// The privacy retention table and notice rate (P13–P22, P58).
    pub fn privacy_options(&self) -> crate::service::privacy::PrivacyOptions {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::service::privacy::PrivacyOptions {
            usage_ms: ms(self.retention_usage),
            network_ms: ms(self.retention_network),
            account_after_deletion_ms: ms(self.retention_account_after_deletion),
            analytics_ms: ms(self.retention_analytics),
            audience_ms: ms(self.retention_audience),
            privacy_log_ms: ms(self.retention_privacy_log),
            notify_per_minute: self.notify_rate,
        }
    }

    /// Everything the services take from the configuration; reads the
    /// tier file, so a bad one fails here naming its flag.
    pub fn service_options(&self) -> Result<crate::service::Options, String> {
        let tiers = match &self.tiers_file {
            Some(p) => crate::service::tiers::TierTable::load(p)
                .map_err(|e| format!("{}: {e}", describe_option("tiers_file")))?,
            None => crate::service::tiers::TierTable::default(),
        };
        let window_ms = i64::try_from(self.lockout_window.as_millis()).unwrap_or(i64::MAX);
        Ok(crate::service::Options {
            retention: self.retention(),
            ipv6_prefix: self.ipv6_prefix,
            db_cache_bytes: (self.db_cache_mib as usize) << 20,
            blocklist_memory_bytes: (self.blocklist_memory_mib as usize) << 20,
            sensor_batch_memory_bytes: (self.sensor_batch_memory_mib as usize) << 20,
            privacy: self.privacy_options(),
            tiers,
            accounts: crate::service::accounts::AccountOptions {
                registration: self.registration,
                base_url: self.public_url.clone().unwrap_or_else(|| {
                    format!(
                        "{}://{}",
                        if self.insecure_http { "http" } else { "https" },
                        self.listen
                    )
                }),
                lockout: crate::service::lockout::LockoutPolicy {
                    per_login: self.lockout_failures as usize,
                    per_source: self.lockout_failures as usize * 4,
                    window_ms,
                },
                hash_concurrency: self.hash_concurrency as usize,
                jwt_rotate_ms: i64::from(self.jwt_rotate_days)
                    * crate::domain::time::MILLIS_PER_DAY,
            },
            geoip: self.geoip_files(),
            alerts: crate::service::alerts::AlertOptions {
                cooldown: self.alert_cooldown,
                webhook_allow_http: self.webhook_allow_http,
                email_enabled: self.smtp_host.is_some(),
            },
            scrubber: crate::domain::scrub::Scrubber::new(&self.scrub_pattern)
                .map_err(|e| format!("{}: {e}", describe_option("scrub_pattern")))?,
        })
    }

    /// The SMTP relay settings, reading the password file; `None` when no
    /// relay is configured.
    pub fn smtp(&self) -> Result<Option<crate::notify::smtp::SmtpOptions>, String> {
        let Some(host) = self.smtp_host.clone() else {
            return Ok(None);
        };
        let password = match &self.smtp_password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        format!(
                            "{}: cannot read {}: {e}",
                            describe_option("smtp_password_file"),
                            p.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        let from = self.smtp_from.clone().unwrap_or_default();
        Ok(Some(crate::notify::smtp::SmtpOptions {
            host,
            port: self.smtp_port,
            tls: match self.smtp_tls {
                SmtpTls::Starttls => crate::notify::smtp::TlsMode::Starttls,
                SmtpTls::Tls => crate::notify::smtp::TlsMode::Tls,
                SmtpTls::Plain => crate::notify::smtp::TlsMode::Plain,
            },
            username: self.smtp_username.clone(),
            password,
            from,
        }))
    }

    /// The operator's GeoIP files (each replaces its embedded table).
    pub fn geoip_files(&self) -> crate::geoip::GeoFiles {
        crate::geoip::GeoFiles {
            country: self.geoip_country.clone(),
            asn: self.geoip_asn.clone(),
            city: self.geoip_city.clone(),
        }
    }

    /// Checks that span several options.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout < self.request_timeout {
            return Err(format!(
                "{} must not be shorter than {}",
                describe_option("idle_timeout"),
                describe_option("request_timeout")
            ));
        }
        if self.insecure_http && self.tls_cert.is_some() {
            return Err(format!(
                "{} cannot be combined with {}",
                describe_option("insecure_http"),
                describe_option("tls_cert")
            ));
        }
        self.validate_acme()?;
        if self.insecure_http && self.http_redirect_listen.is_some() {
            return Err(format!(
                "{} cannot be combined with {}",
                describe_option("insecure_http"),
                describe_option("http_redirect_listen")
            ));
        }
        self.validate_smtp()
    }

    fn validate_acme(&self) -> Result<(), String> {
        if self.acme_domain.is_empty() {
            for (set, id) in [
                (!self.acme_contact.is_empty(), "acme_contact"),
                (self.acme_ca_file.is_some(), "acme_ca_file"),
            ] {
                if set {
                    return Err(format!(
                        "{} needs {}",
                        describe_option(id),
                        describe_option("acme_domain")
                    ));
                }
            }
            return Ok(());
        }
        for (set, id) in [
            (self.insecure_http, "insecure_http"),
            (self.tls_cert.is_some(), "tls_cert"),
        ] {
            if set {
                return Err(format!(
                    "{} cannot be combined with {}",
                    describe_option("acme_domain"),
                    describe_option(id)
                ));
            }
        }
        Ok(())
    }

    /// The ACME settings, `None` without --acme-domain.
    pub fn acme(&self) -> Option<crate::acme::AcmeOptions> {
        if self.acme_domain.is_empty() {
            return None;
        }
        let mut domains: Vec<String> = Vec::new();
        for d in &self.acme_domain {
            if !domains.contains(d) {
                domains.push(d.clone());
            }
        }
        Some(crate::acme::AcmeOptions {
            domains,
            directory: self.acme_directory.clone(),
            contacts: self.acme_contact.clone(),
            ca_file: self.acme_ca_file.clone(),
            renew_before: self.acme_renew_before,
        })
    }

    fn validate_smtp(&self) -> Result<(), String> {
        let Some(host) = &self.smtp_host else {
            for (set, id) in [
                (self.smtp_from.is_some(), "smtp_from"),
                (self.smtp_username.is_some(), "smtp_username"),
                (self.smtp_password_file.is_some(), "smtp_password_file"),
                (self.smtp_port.is_some(), "smtp_port"),
            ] {
                if set {
                    return Err(format!(
                        "{} needs {}",
                        describe_option(id),
                        describe_option("smtp_host")
                    ));
                }
            }
            return Ok(());
        };
        let Some(from) = &self.smtp_from else {
            return Err(format!(
                "{} needs {}",
                describe_option("smtp_host"),
                describe_option("smtp_from")
            ));
        };
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "{} is not a mailbox such as \"sikker <alerts@example.org>\"",
                describe_option("smtp_from")
            ));
        }
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.smtp_tls == SmtpTls::Plain && !loopback {
            return Err(format!(
                "{} plain sends mail unencrypted and is allowed only for a loopback relay, not {host}",
                describe_option("smtp_tls")
            ));
        }
        if self.smtp_password_file.is_some() && self.smtp_username.is_none() {
            return Err(format!(
                "{} needs {}",
                describe_option("smtp_password_file"),
                describe_option("smtp_username")
            ));
        }
        Ok(())
    }

    /// A config from the arguments that would follow `sikker serve`
    /// (SIKKER_* variables still apply, as on the real command line).
    pub fn from_serve_args<I, T>(args: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let full: Vec<OsString> = ["sikker".into(), "serve".into()]
            .into_iter()
            .chain(args.into_iter().map(Into::into))
            .collect();
        match parse_cli(full)?.command {
            crate::cli::Command::Serve(c) => Ok(*c),
            _ => Err(ParseError::Invalid("not a serve command".into())),
        }
    }
}

/// `SIKKER_*` variables in `vars` that no option reads.
pub fn unknown_env_vars(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<String> {
    let mut known: Vec<String> = option_args().iter().map(env_name).collect();
    known.extend(sensor_args().iter().map(env_name));
    known.extend(bouncer_args().iter().map(env_name));
    let mut unknown: Vec<String> = vars
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("SIKKER_") && !known.contains(k))
        .collect();
    unknown.sort();
    unknown
}

/// The options of `sikker sensor` (flags and env vars only).
fn sensor_args() -> Vec<clap::Arg> {
    <crate::cli::sensor::SensorArgs as clap::Args>::augment_args(clap::Command::new("sensor"))
        .get_arguments()
        .filter(|a| a.get_id() != "help" && a.get_id() != "version")
        .cloned()
        .collect()
}

/// The options of `sikker bouncer` (flags and env vars only).
fn bouncer_args() -> Vec<clap::Arg> {
    <crate::cli::bouncer::BouncerArgs as clap::Args>::augment_args(clap::Command::new("bouncer"))
        .get_arguments()
        .filter(|a| a.get_id() != "help" && a.get_id() != "version")
        .cloned()
        .collect()
}

/// A commented TOML file listing every option with its default.
pub fn example() -> String {
    let mut out = String::from(
        "# sikker configuration file (TOML). Pass it with --config FILE or SIKKER_CONFIG.\n\
         # Precedence: command-line flag > SIKKER_* environment variable > this file > default.\n\
         # Every option is shown commented out with its default; durations accept 30s, 2m, 1h.\n",
    );
    for a in option_args() {
        if a.get_id() == "config" {
            continue;
        }
        out.push('\n');
        if let Some(h) = a.get_help() {
            for line in h.to_string().lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
        let _ = writeln!(
            out,
            "# flag: --{}   env: {}",
            a.get_long().unwrap_or_default(),
            env_name(&a)
        );
        let key = key_of(&a);
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let value = if matches!(a.get_action(), ArgAction::SetTrue) {
            "false".to_owned()
        } else if a.get_value_delimiter().is_some() || matches!(a.get_action(), ArgAction::Append) {
            "[]".to_owned()
        } else if let Some(d) = defaults.first() {
            toml_literal(d)
        } else {
            let _ = writeln!(out, "# (no default)");
            format!(
                "\"{}\"",
                a.get_value_names()
                    .and_then(|v| v.first())
                    .map_or("VALUE".to_owned(), ToString::to_string)
            )
        };
        let _ = writeln!(out, "# {key} = {value}");
    }
    for (title, args) in [
        (
            "`sikker sensor` options. The sensor does not read this file: set them as\n\
             # flags or SIKKER_SENSOR_* environment variables.",
            sensor_args(),
        ),
        (
            "`sikker bouncer` options. The bouncer does not read this file: set them as\n\
             # flags or SIKKER_BOUNCER_* environment variables.",
            bouncer_args(),
        ),
    ] {
        let _ = writeln!(
            out,
            "\n# ---------------------------------------------------------------------------\n# {title}"
        );
        list_args(&mut out, &args);
    }
    out
}

fn list_args(out: &mut String, args: &[clap::Arg]) {
    for a in args {
        let default = a.get_default_values().first().map_or_else(
            || "(no default)".to_owned(),
            |v| v.to_string_lossy().into_owned(),
        );
        let help = a.get_help().map(ToString::to_string).unwrap_or_default();
        let _ = writeln!(
            out,
            "#   --{}  env {}  default {default}\n#       {help}",
            a.get_long().unwrap_or_default(),
            env_name(a)
        );
    }
}

fn toml_literal(s: &str) -> String {
    if s.parse::<i64>().is_ok() || s == "true" || s == "false" {
        s.to_owned()
    } else {
        toml::Value::String(s.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_mentions_every_option_and_is_valid_toml_when_uncommented() {
        let ex = example();
        let mut uncommented = String::new();
        for a in option_args() {
            if a.get_id() == "config" {
                continue;
            }
            let key = key_of(&a);
            assert!(ex.contains(&format!("# {key} = ")), "example lacks {key}");
            assert!(ex.contains(&env_name(&a)), "example lacks env of {key}");
        }
        for line in ex.lines() {
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            if rest.contains(" = ") && !rest.starts_with("flag:") && !rest.contains("(no default)")
            {
                let key = rest.split(' ').next().unwrap();
                if option_args().iter().any(|a| a.get_id() == key) && a_has_default(key) {
                    uncommented.push_str(rest);
                    uncommented.push('\n');
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &uncommented).unwrap();
        let from_file = Config::from_serve_args(["--config", p.to_str().unwrap()]).unwrap();
        let defaults = Config::from_serve_args(Vec::<String>::new()).unwrap();
        assert_eq!(
            format!(
                "{:?}",
                Config {
                    config: None,
                    ..from_file
                }
            ),
            format!("{defaults:?}")
        );
    }

    fn a_has_default(key: &str) -> bool {
        option_args().iter().any(|a| {
            a.get_id() == key
                && (!a.get_default_values().is_empty()
                    || matches!(a.get_action(), ArgAction::SetTrue)
                    || a.get_value_delimiter().is_some()
                    || matches!(a.get_action(), ArgAction::Append))
        })
    }

    #[test]
    fn db_cache_is_bounded_and_named_in_the_error() {
        let c = Config::from_serve_args(Vec::<String>::new()).unwrap();
        assert_eq!(c.db_cache_mib, 16);
        assert_eq!(c.service_options().unwrap().db_cache_bytes, 16 << 20);
        for bad in ["0", "3", "65537", "lots"] {
            let e = Config::from_serve_args(["--db-cache-mib", bad]).unwrap_err();
            assert!(e.to_string().contains("--db-cache-mib"), "{bad}: {e}");
        }
        let c = Config::from_serve_args(["--db-cache-mib", "256"]).unwrap();
        assert_eq!(c.service_options().unwrap().db_cache_bytes, 256 << 20);
    }

    /// A memory budget in MiB: `default` bytes unset, `bad` values refused
    /// naming the flag, 64 MiB taken as given.
    fn mib_flag(flag: &str, bad: &str, of: fn(&crate::service::Options) -> usize, default: usize) {
        let c = Config::from_serve_args(Vec::<String>::new()).unwrap();
        assert_eq!(of(&c.service_options().unwrap()), default);
        for bad in ["0", bad, "much"] {
            let e = Config::from_serve_args([flag, bad]).unwrap_err();
            assert!(e.to_string().contains(flag), "{bad}: {e}");
        }
        let c = Config::from_serve_args([flag, "64"]).unwrap();
        assert_eq!(of(&c.service_options().unwrap()), 64 << 20);
    }

    #[test]
    fn blocklist_memory_is_bounded_and_named_in_the_error() {
        mib_flag(
            "--blocklist-memory-mib",
            "1048577",
            |o| o.blocklist_memory_bytes,
            crate::service::list_room::DEFAULT_BYTES,
        );
    }

    #[test]
    fn sensor_batch_memory_is_bounded_and_named_in_the_error() {
        mib_flag(
            "--sensor-batch-memory-mib",
            "65537",
            |o| o.sensor_batch_memory_bytes,
            crate::service::batch_room::DEFAULT_BYTES,
        );
    }

    #[test]
    fn scrub_patterns_from_a_toml_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "scrub_pattern = [\"customer-\\\\d+\", \"ticket#\\\\d+\"]\n",
        )
        .unwrap();
        let c = Config::from_serve_args(["--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(c.scrub_pattern, [r"customer-\d+", r"ticket#\d+"]);
        std::fs::write(&p, "scrub_pattern = [\"(\"]\n").unwrap();
        let e = Config::from_serve_args(["--config", p.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("scrub-pattern"), "{e}");
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\nmax-connections = 7\ntrusted_proxy = [\"10.0.0.0/8\", \"::1\"]\ninsecure_http = true\n",
        )
        .unwrap();
        let f = p.to_str().unwrap();
        let c = Config::from_serve_args(["--config", f]).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.trusted_proxy.len(), 2);
        assert!(c.insecure_http);
        let c = Config::from_serve_args(["--config", f, "--listen", "127.0.0.1:9100"]).unwrap();
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn bad_values_name_flag_and_env() {
        let e = Config::from_serve_args(["--listen", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--listen") && e.contains("SIKKER_LISTEN"), "{e}");
        let e = Config::from_serve_args(["--request-timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SIKKER_REQUEST_TIMEOUT"), "{e}");
        let e = Config::from_serve_args(["--idle-timeout", "1s"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SIKKER_IDLE_TIMEOUT") && e.contains("SIKKER_REQUEST_TIMEOUT"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "max_connections = 0\n").unwrap();
        let e = Config::from_serve_args(["--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SIKKER_MAX_CONNECTIONS") && e.contains("c.toml"),
            "{e}"
        );
        std::fs::write(&p, "lissten = 1\n").unwrap();
        let e = Config::from_serve_args(["--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `lissten`"), "{e}");
        std::fs::write(&p, "listen = [").unwrap();
        let e = Config::from_serve_args(["--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn smtp_settings_are_checked_together() {
        let e = Config::from_serve_args(["--smtp-host", "mail.example.org"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SIKKER_SMTP_FROM"), "{e}");
        let e = Config::from_serve_args(["--smtp-from", "a@b.example"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs --smtp-host"), "{e}");
        let e = Config::from_serve_args([
            "--smtp-host",
            "mail.example.org",
            "--smtp-from",
            "a@b.example",
            "--smtp-tls",
            "plain",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = Config::from_serve_args([
            "--smtp-host",
            "mail.example.org",
            "--smtp-from",
            "not a mailbox",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("SIKKER_SMTP_FROM"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let c = Config::from_serve_args([
            "--smtp-host",
            "localhost",
            "--smtp-tls",
            "plain",
            "--smtp-from",
            "sikker <alerts@example.org>",
            "--smtp-username",
            "alerts",
            "--smtp-password-file",
            pw.to_str().unwrap(),
        ])
        .unwrap();
        let smtp = c.smtp().unwrap().unwrap();
        assert_eq!(smtp.password.as_deref(), Some("s3cret"));
        assert!(!format!("{smtp:?}").contains("s3cret"), "never in Debug");
        assert!(c.service_options().unwrap().alerts.email_enabled);
        std::fs::remove_file(&pw).unwrap();
        let e = c.smtp().unwrap_err();
        assert!(e.contains("SIKKER_SMTP_PASSWORD_FILE"), "{e}");
    }

    #[test]
    fn acme_settings_are_checked() {
        let c = Config::from_serve_args([
            "--acme-domain",
            "Rep.Example.org,b.example.org",
            "--acme-domain",
            "rep.example.org",
            "--acme-contact",
            "mailto:ops@example.org",
        ])
        .unwrap();
        let a = c.acme().unwrap();
        assert_eq!(a.domains, ["rep.example.org", "b.example.org"]);
        assert_eq!(a.directory, crate::acme::LETS_ENCRYPT);
        assert_eq!(a.renew_before, Duration::from_secs(30 * 86_400));
        assert!(
            Config::from_serve_args(Vec::<String>::new())
                .unwrap()
                .acme()
                .is_none()
        );
        for (args, needle) in [
            (vec!["--acme-domain", "*.example.org"], "SIKKER_ACME_DOMAIN"),
            (vec!["--acme-domain", "192.0.2.1"], "SIKKER_ACME_DOMAIN"),
            (vec!["--acme-domain", "localhost"], "SIKKER_ACME_DOMAIN"),
            (
                vec![
                    "--acme-domain",
                    "a.example",
                    "--acme-contact",
                    "ops@example.org",
                ],
                "SIKKER_ACME_CONTACT",
            ),
            (
                vec![
                    "--acme-domain",
                    "a.example",
                    "--acme-directory",
                    "http://ca/dir",
                ],
                "SIKKER_ACME_DIRECTORY",
            ),
            (
                vec!["--acme-contact", "mailto:ops@example.org"],
                "needs --acme-domain",
            ),
            (vec!["--acme-ca-file", "/x.pem"], "needs --acme-domain"),
            (
                vec!["--acme-domain", "a.example", "--insecure-http"],
                "cannot be combined with --insecure-http",
            ),
            (
                vec![
                    "--acme-domain",
                    "a.example",
                    "--tls-cert",
                    "c",
                    "--tls-key",
                    "k",
                ],
                "cannot be combined with --tls-cert",
            ),
        ] {
            let e = Config::from_serve_args(args.clone())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn unknown_env_vars_are_found() {
        let vars = [
            ("SIKKER_LISTEN".into(), "x".into()),
            ("SIKKER_LISTNE".into(), "x".into()),
            ("PATH".into(), "x".into()),
        ];
        assert_eq!(
            unknown_env_vars(vars.into_iter()),
            vec!["SIKKER_LISTNE".to_owned()]
        );
    }
}
