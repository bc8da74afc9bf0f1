//! `sikker admin …`: talks to a running server over its admin socket, or,
//! when none runs, opens the data dir itself under its lock. Both paths run
//! the same service code.
//!
//! Exit codes: 0 success; 1 the operation failed (unknown user or key,
//! refused input, an import with rejected lines, a missing data dir, server
//! errors); 2 usage or configuration errors (bad flags or arguments, an
//! invalid configuration).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::admin::Outcome;
use crate::admin::client::Client;
use crate::crypto::SecretKey;
use crate::datadir::{DataDir, DataDirError};
use crate::domain::Clock;
use crate::service::admin::AdminRequest;
use crate::service::{Mode, Options, Services};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// TOML configuration file (its data dir, retention and tiers apply).
    #[arg(long, env = "SIKKER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's data directory.
    #[arg(
        long,
        env = "SIKKER_DATA_DIR",
        value_name = "DIR",
        default_value = "./sikker-data"
    )]
    pub data_dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

#[derive(clap::Subcommand, Debug)]
#[command(
    after_help = "Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error.\n\nExamples:\n  sikker admin user list --json\n  sikker admin import reports reports.csv\n  sikker admin backup /var/backups/sikker-$(date +%F).sikker"
)]
pub enum AdminCmd {
    /// Check that the running server, or (when stopped) the database, answers.
    Ping,
    /// Issue a new one-time bootstrap token for creating the first admin account.
    Bootstrap,
    /// Accounts: add, list, show, disable, enable, set-role, set-tier, reset-password, delete.
    #[command(subcommand)]
    User(UserCmd),
    /// API keys: create (the key is shown once), list, revoke.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Sensors: add (the token is shown once), list, revoke.
    #[command(subcommand)]
    Sensor(SensorCmd),
    /// Whitelisted IPs and networks: never listed, flagged in answers.
    #[command(subcommand)]
    Whitelist(WhitelistCmd),
    /// Run the retention sweep now.
    Sweep,
    /// Counts of indicators, buckets and keys, and the database file against what its tables use.
    Stats,
    /// Check that the in-memory index equals the database (exit 1 naming the differences).
    Verify,
    /// The admin audit log: operator requests, admin API calls and configuration changes, newest first.
    #[command(after_help = "Example: sikker admin audit --limit 20")]
    Audit {
        #[arg(long, default_value = "100")]
        limit: usize,
    },
    /// GeoIP databases: which are in use, reload the operator's files, look up an IP.
    #[command(subcommand)]
    Geoip(GeoipCmd),
    /// Import data files (streamed in batches, with progress and a summary).
    #[command(subcommand)]
    Import(ImportCmd),
    /// Export data.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Write a consistent backup of the database while the server keeps running.
    #[command(
        after_help = "Example: sikker admin backup /var/backups/sikker.bak\nThe file holds the secret key and password hashes: keep it private."
    )]
    Backup { file: PathBuf },
    /// Replace the database with a backup (the server must be stopped).
    #[command(
        after_help = "Example: systemctl stop sikker && sikker admin restore /var/backups/sikker.bak"
    )]
    Restore {
        file: PathBuf,
        /// Only check the file; change nothing.
        #[arg(long)]
        verify_only: bool,
    },
    /// Give the database file's free pages back to the file system (the server must be stopped).
    #[command(
        after_help = "Example: systemctl stop sikker && sikker admin compact && systemctl start sikker\n`sikker admin stats` shows how much of the file is free. Freed pages are reused by later writes without this; it is worth running after a large first import."
    )]
    Compact,
    /// Listing corrections: list, approve/deny/revoke with a reason.
    #[command(subcommand)]
    Correction(super::privacy::CorrectionCmd),
    /// Retention: per category the oldest item and the next purge.
    #[command(subcommand)]
    Retention(super::privacy::RetentionCmd),
    /// Data-subject requests: export, erase, record, answer, pending.
    #[command(subcommand)]
    Gdpr(super::privacy::GdprCmd),
    /// E-mail every account holder (breach or policy change), rate-limited.
    Notify(super::privacy::NotifyArgs),
    /// Notices sent with `notify`, and who was notified when.
    Notices,
    /// Configuration helpers (same as `sikker config`).
    #[command(subcommand)]
    Config(AdminConfigCmd),
    /// Web-session token signing keys: rotate now, list.
    #[command(subcommand)]
    Jwt(JwtCmd),
}

#[derive(clap::Subcommand, Debug)]
pub enum JwtCmd {
    /// Make a new signing key current; tokens signed with the previous key stay valid until they expire, older keys are dropped.
    Rotate,
    /// The signing keys in use (key ids and creation times).
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminConfigCmd {
    /// Validate the configuration this data dir's server would use and print it (`sikker config check`).
    Check,
}

#[derive(clap::Subcommand, Debug)]
pub enum ExportCmd {
    /// Every live indicator, streamed, e.g. `sikker admin export indicators --format stix -o feed.json`.
    Indicators {
        #[arg(long, value_enum, default_value = "json")]
        format: super::admin_io::ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCmd {
    /// Add an account (its e-mail gets a verification link), e.g.
    /// `sikker admin user add alice --email alice@example.org --first-name Alice --last-name Doe --country NO --role admin`.
    /// Without --password-stdin a random password is generated and shown once.
    Add {
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
        /// ISO 3166 two-letter country code.
        #[arg(long)]
        country: String,
        #[arg(long, default_value = "user", value_parser = ["user", "admin"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every account, e.g. `sikker admin user list --json`.
    List,
    /// One account by id, username or e-mail, e.g. `sikker admin user show alice`.
    Show { user: String },
    /// Disable an account: its sessions end and its API keys stop working.
    Disable { user: String },
    /// Enable a disabled account again.
    Enable { user: String },
    /// e.g. `sikker admin user set-role alice admin`
    SetRole {
        user: String,
        #[arg(value_parser = ["user", "admin"])]
        role: String,
    },
    /// Change the tier (the account's API keys follow), e.g. `sikker admin user set-tier alice tier_1`.
    SetTier { user: String, tier: String },
    /// Mail the account a password-reset link (valid one hour).
    ResetPassword { user: String },
    /// Delete an account: sessions end, API keys are revoked, the account is removed.
    Delete {
        user: String,
        /// Required: deleting cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GeoipCmd {
    /// The databases in use, their build dates and record counts.
    Info,
    /// Re-read the files given with --geoip-country/--geoip-asn/--geoip-city (the old ones stay on error).
    Reload,
    /// Where an IP is, from the local databases only, e.g. `sikker admin geoip lookup 8.8.8.8`.
    Lookup { ip: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum ImportCmd {
    /// Replace the Tor exit list with FILE: one IP or CIDR per line, `#` starts a comment.
    TorExits { file: PathBuf },
    /// Reports from a CSV file as in the bulk-report contract
    /// (`IP,Category[,Protocol[,Comment]]`, `,` or `;`, optional header),
    /// e.g. `sikker admin import reports old-reports.csv`. Bad lines are
    /// listed with their numbers; the rest is imported.
    Reports {
        file: PathBuf,
        /// Report as this API key's account (default: the built-in `import` identity).
        #[arg(long)]
        key: Option<u64>,
    },
    /// A plain list of IPs or CIDRs (one per line, `#` comments) reported with one category,
    /// e.g. `sikker admin import list blocked.txt --category brute_force`.
    /// CIDRs up to /24 (IPv6 /120) are reported address by address; wider ones are refused.
    List {
        file: PathBuf,
        #[arg(long)]
        category: String,
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        key: Option<u64>,
    },
    /// Banned IPs from fail2ban: its database with the ban history, e.g.
    /// `sikker admin import fail2ban /var/lib/fail2ban/fail2ban.sqlite3` (each ban one report
    /// dated when it happened; bans older than the report retention are skipped), or
    /// `fail2ban-client status <jail>` output (FILE or `-` for standard input), e.g.
    /// `fail2ban-client status sshd | sikker admin import fail2ban -`.
    /// Category and protocol follow the jail's name as in the fail2ban action.
    Fail2ban {
        #[arg(default_value = "-")]
        file: PathBuf,
        /// One category for every ban instead of the jail's own.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        key: Option<u64>,
    },
    /// Cowrie honeypot JSON logs as sensor events of the built-in `import` sensor,
    /// e.g. `sikker admin import cowrie /var/log/cowrie/cowrie.json`.
    Cowrie { file: PathBuf },
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an API key, e.g. `sikker admin key create --name fail2ban --tier free`,
    /// or for an account: `sikker admin key create --name laptop --user alice`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free")]
        tier: String,
        /// The account (id, username or e-mail) the key belongs to; it gets the account's tier.
        #[arg(long)]
        user: Option<String>,
    },
    /// Every key, e.g. `sikker admin key list --json`.
    List,
    /// Revoke the key with this id (see `key list`).
    Revoke { id: u64 },
}

#[derive(clap::Subcommand, Debug)]
pub enum SensorCmd {
    /// Create a sensor token, e.g. `sikker admin sensor add honeypot-fra1`.
    Add {
        name: String,
    },
    List,
    Revoke {
        id: u64,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum WhitelistCmd {
    /// Whitelist an IP or CIDR, e.g. `sikker admin whitelist add 66.249.64.0/19 --reason Googlebot`.
    Add {
        net: String,
        #[arg(long)]
        reason: String,
    },
    List,
    Remove {
        net: String,
    },
    /// Import or replace the named never-block set NAME from FILE (one IP or CIDR per line, `#` comments),
    /// e.g. `sikker admin whitelist import googlebot googlebot.txt --source https://developers.google.com/search/apis/ipranges/googlebot.json`.
    /// Bad lines are reported by number and the rest imported.
    Import {
        name: String,
        file: PathBuf,
        /// Where the list came from; the file name when unset.
        #[arg(long)]
        source: Option<String>,
    },
    /// List the named sets with their source and import date.
    Sets,
    /// Remove the named set NAME.
    DropSet {
        name: String,
    },
}

impl AdminCmd {
    /// The one request of a simple command.
    fn request(self) -> anyhow::Result<AdminRequest> {
        Ok(match self {
            Self::User(u) => u.request()?,
            Self::Correction(c) => super::privacy::correction(c),
            Self::Retention(c) => super::privacy::retention(c),
            Self::Gdpr(c) => super::privacy::gdpr(c),
            Self::Notify(a) => super::privacy::notify(a)?,
            Self::Notices => super::privacy::notices(),
            Self::Import(_)
            | Self::Export(_)
            | Self::Backup { .. }
            | Self::Restore { .. }
            | Self::Compact
            | Self::Config(_) => {
                bail!("this command is not a single request")
            }
            Self::Ping => AdminRequest::Ping,
            Self::Jwt(JwtCmd::Rotate) => AdminRequest::JwtRotate,
            Self::Jwt(JwtCmd::List) => AdminRequest::JwtKeys,
            Self::Bootstrap => AdminRequest::Bootstrap,
            Self::Key(KeyCmd::Create { name, tier, user }) => {
                AdminRequest::KeyCreate { name, tier, user }
            }
            Self::Key(KeyCmd::List) => AdminRequest::KeyList,
            Self::Key(KeyCmd::Revoke { id }) => AdminRequest::KeyRevoke { id },
            Self::Sensor(SensorCmd::Add { name }) => AdminRequest::SensorAdd { name },
            Self::Sensor(SensorCmd::List) => AdminRequest::SensorList,
            Self::Sensor(SensorCmd::Revoke { id }) => AdminRequest::SensorRevoke { id },
            Self::Whitelist(WhitelistCmd::Add { net, reason }) => {
                AdminRequest::WhitelistAdd { net, reason }
            }
            Self::Whitelist(WhitelistCmd::List) => AdminRequest::WhitelistList,
            Self::Whitelist(WhitelistCmd::Remove { net }) => AdminRequest::WhitelistRemove { net },
            Self::Whitelist(WhitelistCmd::Import { name, file, source }) => {
                let text = small_text_file(&file, "a set file")?;
                let source = source.unwrap_or_else(|| file.display().to_string());
                AdminRequest::WhitelistImport { name, source, text }
            }
            Self::Whitelist(WhitelistCmd::Sets) => AdminRequest::WhitelistSets,
            Self::Whitelist(WhitelistCmd::DropSet { name }) => {
                AdminRequest::WhitelistDropSet { name }
            }
            Self::Sweep => AdminRequest::Sweep,
            Self::Stats => AdminRequest::Stats,
            Self::Verify => AdminRequest::Verify,
            Self::Audit { limit } => AdminRequest::AuditLog { limit },
            Self::Geoip(GeoipCmd::Info) => AdminRequest::GeoipInfo,
            Self::Geoip(GeoipCmd::Reload) => AdminRequest::GeoipReload,
            Self::Geoip(GeoipCmd::Lookup { ip }) => AdminRequest::GeoipLookup { ip },
        })
    }
}

/// The Tor exit list is small and replaced whole: one request.
fn tor_exits_request(file: &std::path::Path) -> anyhow::Result<AdminRequest> {
    Ok(AdminRequest::TorExitsImport {
        text: small_text_file(file, "a Tor exit list")?,
    })
}

/// A text file sent whole in one admin request: the admin socket carries one
/// request line of at most `MAX_LINE` bytes, so the file gets half of it.
fn small_text_file(file: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let max = crate::admin::MAX_LINE / 2;
    if len > max as u64 {
        bail!(
            "{} is {len} bytes; {what} is at most {max} bytes",
            file.display()
        );
    }
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))
}

impl UserCmd {
    fn request(self) -> anyhow::Result<AdminRequest> {
        Ok(match self {
            Self::Add {
                username,
                email,
                first_name,
                last_name,
                country,
                role,
                password_stdin,
            } => {
                let password = if password_stdin {
                    let mut l = String::new();
                    std::io::stdin()
                        .read_line(&mut l)
                        .context("cannot read the password from standard input")?;
                    l.trim_end_matches(['\r', '\n']).to_owned()
                } else {
                    String::new()
                };
                AdminRequest::UserAdd {
                    username,
                    email,
                    first_name,
                    last_name,
                    country,
                    role,
                    password,
                }
            }
            Self::List => AdminRequest::UserList,
            Self::Show { user } => AdminRequest::UserShow { user },
            Self::Disable { user } => AdminRequest::UserSetDisabled {
                user,
                disabled: true,
            },
            Self::Enable { user } => AdminRequest::UserSetDisabled {
                user,
                disabled: false,
            },
            Self::SetRole { user, role } => AdminRequest::UserSetRole { user, role },
            Self::SetTier { user, tier } => AdminRequest::UserSetTier { user, tier },
            Self::ResetPassword { user } => AdminRequest::UserResetPassword { user },
            Self::Delete { user, yes } => {
                if !yes {
                    return Err(
                        Usage("deleting an account cannot be undone; add --yes".into()).into(),
                    );
                }
                AdminRequest::UserDelete { user }
            }
        })
    }
}

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Where requests go: the running server's socket, or services opened
/// here under the data dir lock. Both run `Services::admin`.
pub enum Conn {
    Socket(Client),
    Offline {
        services: Box<Services>,
        _lock: crate::datadir::DirLock,
    },
}

impl Conn {
    pub async fn open(
        dir: &DataDir,
        data_dir: &std::path::Path,
        config: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        if let Some(client) = Client::connect(&dir.socket()).await? {
            return Ok(Self::Socket(client));
        }
        let (services, lock) = offline(dir, service_options(data_dir, config)?).await?;
        Ok(Self::Offline {
            services: Box::new(services),
            _lock: lock,
        })
    }

    pub fn online(&self) -> bool {
        matches!(self, Self::Socket(_))
    }

    /// Sends one request; the server's error is `Outcome::Error`.
    pub async fn call(&mut self, request: AdminRequest) -> anyhow::Result<Outcome> {
        match self {
            Self::Socket(client) => {
                let reply = client.call(request).await?;
                if reply.version != env!("CARGO_PKG_VERSION") {
                    eprintln!(
                        "warning: the server runs sikker {} and this CLI is {}; if a command is refused as malformed, use the server's own binary",
                        reply.version,
                        env!("CARGO_PKG_VERSION")
                    );
                }
                Ok(reply.outcome)
            }
            Self::Offline { services, .. } => Ok(match services.admin(request).await {
                Ok(result) => Outcome::Ok { result },
                Err(e) => crate::admin::server::render(&e),
            }),
        }
    }

    /// `call`, with a refusal as the error.
    pub async fn ok(&mut self, request: AdminRequest) -> anyhow::Result<serde_json::Value> {
        match self.call(request).await? {
            Outcome::Ok { result } => Ok(result),
            Outcome::Error { kind, message } => bail!("{message} ({kind})"),
        }
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let AdminArgs {
        config,
        data_dir,
        json,
        cmd,
    } = args;
    let out = super::admin_io::Output::new(json);
    let dir = DataDir::existing(&data_dir)?;
    match cmd {
        AdminCmd::Restore { file, verify_only } => {
            return super::admin_io::restore(&dir, &file, verify_only, &out).await;
        }
        AdminCmd::Compact => {
            let cache = service_options(&data_dir, config.as_deref())?.db_cache_bytes;
            return super::admin_io::compact(&dir, cache, &out).await;
        }
        AdminCmd::Config(AdminConfigCmd::Check) => {
            let c =
                server_config(&data_dir, config.as_deref()).map_err(|e| Usage(format!("{e:#}")))?;
            print!("{}", super::config_cmd::effective(&c));
            return Ok(());
        }
        _ => {}
    }
    let mut conn = Conn::open(&dir, &data_dir, config.as_deref()).await?;
    let request = match cmd {
        AdminCmd::Import(ImportCmd::TorExits { file }) => tor_exits_request(&file)?,
        AdminCmd::Import(i) => return super::admin_io::import(&mut conn, i, &out).await,
        AdminCmd::Export(ExportCmd::Indicators { format, output }) => {
            return super::admin_io::export(&mut conn, format, output.as_deref(), &out).await;
        }
        AdminCmd::Backup { file } => return super::admin_io::backup(&mut conn, &file, &out).await,
        other => other.request()?,
    };
    // A generated password is shown once, like keys and tokens.
    let mut request = request;
    let mut generated = None;
    if let AdminRequest::UserAdd { password, .. } = &mut request
        && password.is_empty()
    {
        *password = crate::crypto::random_token();
        generated = Some(password.clone());
    }
    let mut result = conn.ok(request.clone()).await?;
    if let Some(p) = &generated {
        result["password"] = serde_json::json!(p);
    }
    let text = if json {
        serde_json::to_string_pretty(&result)?
    } else {
        human(&request, &result, &out)
    };
    // A closed pipe (`| head`) is not an error of the command.
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

/// The server's configuration as the same flags, env and file would give
/// it, so offline commands apply the operator's retention settings.
fn server_config(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<crate::config::Config> {
    let mut a = vec!["--data-dir".into(), data_dir.display().to_string()];
    if let Some(c) = config {
        a.extend(["--config".into(), c.display().to_string()]);
    }
    crate::config::Config::from_serve_args(a).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The service options of `server_config`; its errors are usage errors.
fn service_options(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<Options> {
    Ok(server_config(data_dir, config)
        .map_err(|e| Usage(format!("{e:#}")))?
        .service_options()
        .map_err(Usage)?)
}

async fn offline(
    dir: &DataDir,
    opts: Options,
) -> anyhow::Result<(Services, crate::datadir::DirLock)> {
    let lock = match dir.lock() {
        Ok(l) => l,
        Err(DataDirError::AlreadyRunning { path }) => bail!(
            "a sikker server holds {path} but its admin socket {} does not answer; is it still starting or hung? (a stale socket file alone is harmless)",
            dir.socket().display()
        ),
        Err(e) => return Err(e.into()),
    };
    let secret =
        SecretKey::load_or_create(&dir.secret_key()).context("cannot read the secret key")?;
    let db = dir.db();
    let cache = opts.db_cache_bytes;
    let opened = tokio::task::spawn_blocking(move || Store::open_with_cache(&db, cache)).await??;
    let root = dir.root().to_path_buf();
    let services = tokio::task::spawn_blocking(move || {
        Services::open(
            opened.store,
            Clock::system(),
            secret,
            Mode::Offline,
            root,
            opts,
        )
    })
    .await??;
    Ok((services, lock))
}

/// `admin stats` for people: counts, the database file against its
/// tables, the tables that hold entries and the oldest retention buckets.
fn stats_text(v: &serde_json::Value) -> String {
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let mb = |x: &serde_json::Value| super::admin_io::megabytes(n(x));
    let db = &v["database"];
    let mut t = format!(
        "indicators: {} live, {} stored; TTL buckets: {}; API keys: {}\n\
         database file: {}; its tables use {} ({} of keys and values); {} free, reused by later writes \
         (`sikker admin compact`, with the server stopped, gives it back)",
        n(&v["indicators_live"]),
        n(&v["indicators_stored"]),
        n(&v["ttl_buckets"]),
        n(&v["api_keys"]),
        mb(&db["file_bytes"]),
        mb(&db["table_bytes"]),
        mb(&db["stored_bytes"]),
        mb(&db["free_bytes"]),
    );
    let store = &v["store"];
    let list = |key: &str, field: &str| -> String {
        store[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| !e[field].is_null() && e[field] != 0)
            .map(|e| {
                format!(
                    "{} {}",
                    e["table"].as_str().unwrap_or("?"),
                    e[field].to_string().trim_matches('"')
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        t,
        "\ntables with entries: {}\noldest retention buckets: {}",
        list("tables", "entries"),
        list("oldest_bucket", "day")
    );
    t
}

/// The signing keys of `jwt rotate` / `jwt list`, one line each.
fn jwt_keys_text(v: &serde_json::Value) -> String {
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .cloned()
        .unwrap_or_default();
    let mut t = String::new();
    for k in keys {
        let role = if k["current"] == true {
            "current: signs"
        } else {
            "previous: verifies until its tokens expire"
        };
        let _ = writeln!(
            t,
            "kid {}  created {}  ({role})",
            k["kid"],
            k["created"].as_str().unwrap_or("")
        );
    }
    t.trim_end().to_owned()
}

fn human(request: &AdminRequest, v: &serde_json::Value, out: &super::admin_io::Output) -> String {
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    match request {
        AdminRequest::Ping => {
            if s("mode") == "server" {
                format!(
                    "pong: server running (sikker {}, schema v{}, up {}s, data dir {})",
                    s("version"),
                    s("schema_version"),
                    s("uptime_secs"),
                    s("data_dir")
                )
            } else {
                format!(
                    "database OK, server not running (schema v{}, data dir {})",
                    s("schema_version"),
                    s("data_dir")
                )
            }
        }
        AdminRequest::JwtRotate | AdminRequest::JwtKeys => jwt_keys_text(v),
        AdminRequest::Bootstrap => format!(
            "bootstrap token (one-time, valid {} h): {}\nopen https://<server>/setup#token={} to create the first admin",
            s("valid_hours"),
            s("token"),
            s("token")
        ),
        AdminRequest::KeyCreate { .. } => format!(
            "API key {} created (id {}, tier {}). It is shown only now:\n{}",
            s("name"),
            s("id"),
            s("tier"),
            s("key")
        ),
        AdminRequest::SensorAdd { .. } => format!(
            "sensor {} created (id {}). Its token is shown only now:\n{}",
            s("name"),
            s("id"),
            s("token")
        ),
        AdminRequest::UserAdd { .. } => {
            let mut t = format!(
                "account {} created (id {}); a verification link was mailed to {}",
                s("username"),
                s("id"),
                s("email")
            );
            if v.get("password").is_some() {
                let _ = write!(
                    t,
                    "\ngenerated password (shown only now): {}",
                    s("password")
                );
            }
            t
        }
        AdminRequest::UserDelete { .. } => format!(
            "account {} (id {}) deleted; {} API keys revoked",
            s("username"),
            s("id"),
            s("keys_revoked")
        ),
        AdminRequest::UserResetPassword { .. } => {
            format!("a password-reset link was mailed to {}", s("mailed"))
        }
        AdminRequest::GeoipInfo | AdminRequest::GeoipReload => {
            let mut out = out.table(v.get("databases").unwrap_or(&serde_json::Value::Null));
            if let Some(n) = v.get("tor_exit_networks") {
                let _ = write!(out, "\nTor exit list: {n} networks");
            }
            out
        }
        AdminRequest::Stats => stats_text(v),
        AdminRequest::GeoipLookup { .. } => match v.get("geolocation") {
            Some(g) if !g.is_null() => format!("ip: {}\n{}", s("ip"), out.table(g)),
            _ => format!("{}: no location known", s("ip")),
        },
        _ => out.table(v),
    }
}
