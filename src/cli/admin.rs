//! `sikker admin …`: talks to a running server over its admin socket, or,
//! when none runs, opens the data dir itself under its lock. Both paths run
//! the same service code.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::admin::Outcome;
use crate::admin::client::Client;
use crate::crypto::SecretKey;
use crate::datadir::{DataDir, DataDirError};
use crate::domain::Clock;
use crate::service::admin::AdminRequest;
use crate::service::{Mode, Services};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// TOML configuration file (only `data_dir` is read from it here).
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
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let request = match args.cmd {
        AdminCmd::Ping => AdminRequest::Ping,
        AdminCmd::Bootstrap => AdminRequest::Bootstrap,
    };
    let dir = DataDir::existing(&args.data_dir)?;
    let outcome = match Client::connect(&dir.socket()).await? {
        Some(mut client) => {
            let reply = client.call(request.clone()).await?;
            if reply.version != env!("CARGO_PKG_VERSION") {
                eprintln!(
                    "warning: the server runs sikker {} and this CLI is {}",
                    reply.version,
                    env!("CARGO_PKG_VERSION")
                );
            }
            reply.outcome
        }
        None => offline(&dir, request.clone()).await?,
    };
    match outcome {
        Outcome::Ok { result } => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("{}", human(&request, &result));
            }
            Ok(())
        }
        Outcome::Error { kind, message } => bail!("{message} ({kind})"),
    }
}

async fn offline(dir: &DataDir, request: AdminRequest) -> anyhow::Result<Outcome> {
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
    let services = Services::new(
        opened.store,
        Clock::system(),
        secret,
        Mode::Offline,
        dir.root().to_path_buf(),
    );
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
    }
}
