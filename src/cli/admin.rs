//! `sikker admin …`: talks to a running server over its admin socket, or,
//! when none runs, opens the data dir itself under its lock. Both paths run
//! the same service code.

use std::fmt::Write as _;
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
pub enum AdminCmd {
    /// Check that the running server, or (when stopped) the database, answers.
    Ping,
    /// Issue a new one-time bootstrap token for creating the first admin account.
    Bootstrap,
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
    /// Counts of indicators, buckets and keys.
    Stats,
    /// Check that the in-memory index equals the database (exit 1 naming the differences).
    Verify,
    /// GeoIP databases: which are in use, reload the operator's files, look up an IP.
    #[command(subcommand)]
    Geoip(GeoipCmd),
    /// Import data files.
    #[command(subcommand)]
    Import(ImportCmd),
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
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an API key, e.g. `sikker admin key create --name fail2ban --tier free`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free")]
        tier: String,
    },
    List,
    /// Revoke the key with this id (see `key list`).
    Revoke {
        id: u64,
    },
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
    fn request(self) -> anyhow::Result<AdminRequest> {
        Ok(match self {
            Self::Ping => AdminRequest::Ping,
            Self::Bootstrap => AdminRequest::Bootstrap,
            Self::Key(KeyCmd::Create { name, tier }) => AdminRequest::KeyCreate { name, tier },
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
                let len = std::fs::metadata(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
                    .len();
                if len > (crate::admin::MAX_LINE / 2) as u64 {
                    bail!(
                        "{} is {len} bytes; a set file is at most {} bytes",
                        file.display(),
                        crate::admin::MAX_LINE / 2
                    );
                }
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
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
            Self::Geoip(GeoipCmd::Info) => AdminRequest::GeoipInfo,
            Self::Geoip(GeoipCmd::Reload) => AdminRequest::GeoipReload,
            Self::Geoip(GeoipCmd::Lookup { ip }) => AdminRequest::GeoipLookup { ip },
            Self::Correction(c) => super::privacy::correction(c),
            Self::Retention(c) => super::privacy::retention(c),
            Self::Gdpr(c) => super::privacy::gdpr(c),
            Self::Notify(a) => super::privacy::notify(a)?,
            Self::Notices => super::privacy::notices(),
            Self::Import(ImportCmd::TorExits { file }) => {
                let len = std::fs::metadata(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
                    .len();
                // The admin socket carries one request line of at most MAX_LINE bytes.
                if len > (crate::admin::MAX_LINE / 2) as u64 {
                    bail!(
                        "{} is {len} bytes; a Tor exit list is at most {} bytes",
                        file.display(),
                        crate::admin::MAX_LINE / 2
                    );
                }
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
                AdminRequest::TorExitsImport { text }
            }
        })
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let AdminArgs {
        config,
        data_dir,
        json,
        cmd,
    } = args;
    let request = cmd.request()?;
    let dir = DataDir::existing(&data_dir)?;
    let outcome = if let Some(mut client) = Client::connect(&dir.socket()).await? {
        let reply = client.call(request.clone()).await?;
        if reply.version != env!("CARGO_PKG_VERSION") {
            eprintln!(
                "warning: the server runs sikker {} and this CLI is {}",
                reply.version,
                env!("CARGO_PKG_VERSION")
            );
        }
        reply.outcome
    } else {
        let opts = server_config(&data_dir, config.as_deref())?
            .service_options()
            .map_err(anyhow::Error::msg)?;
        offline(&dir, request.clone(), opts).await?
    };
    match outcome {
        Outcome::Ok { result } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("{}", human(&request, &result));
            }
            Ok(())
        }
        Outcome::Error { kind, message } => bail!("{message} ({kind})"),
    }
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

async fn offline(dir: &DataDir, request: AdminRequest, opts: Options) -> anyhow::Result<Outcome> {
    let _lock = match dir.lock() {
        Ok(l) => l,
        Err(DataDirError::AlreadyRunning { path }) => bail!(
            "a sikker server holds {path} but its admin socket {} does not answer; is it still starting or hung?",
            dir.socket().display()
        ),
        Err(e) => return Err(e.into()),
    };
    let secret =
        SecretKey::load_or_create(&dir.secret_key()).context("cannot read the secret key")?;
    let db = dir.db();
    let opened = tokio::task::spawn_blocking(move || Store::open(&db)).await??;
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
    Ok(match services.admin(request).await {
        Ok(result) => Outcome::Ok { result },
        Err(e) => crate::admin::server::render(&e),
    })
}

fn human(request: &AdminRequest, v: &serde_json::Value) -> String {
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
        AdminRequest::GeoipInfo | AdminRequest::GeoipReload => {
            let mut out = table(v.get("databases").unwrap_or(&serde_json::Value::Null));
            if let Some(n) = v.get("tor_exit_networks") {
                let _ = write!(out, "\nTor exit list: {n} networks");
            }
            out
        }
        AdminRequest::GeoipLookup { .. } => match v.get("geolocation") {
            Some(g) if !g.is_null() => format!("ip: {}\n{}", s("ip"), table(g)),
            _ => format!("{}: no location known", s("ip")),
        },
        _ => table(v),
    }
}

/// A plain aligned table for listings; key/value lines for objects.
fn table(v: &serde_json::Value) -> String {
    let cell = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    match v {
        serde_json::Value::Array(rows) if rows.is_empty() => "(none)".to_owned(),
        serde_json::Value::Array(rows) => {
            let cols: Vec<String> = rows[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let mut grid = vec![cols.clone()];
            for r in rows {
                grid.push(
                    cols.iter()
                        .map(|c| cell(r.get(c).unwrap_or(&serde_json::Value::Null)))
                        .collect(),
                );
            }
            let widths: Vec<usize> = (0..cols.len())
                .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                .collect();
            grid.iter()
                .map(|r| {
                    r.iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                        .trim_end()
                        .to_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| format!("{k}: {}", cell(x)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => cell(other),
    }
}
