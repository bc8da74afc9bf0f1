//! The command line: `serve`, `sensor`, `bouncer`, `admin`, `config`, `healthcheck`.

pub mod admin;
pub mod admin_io;
pub mod bouncer;
pub mod config_cmd;
pub mod fail2ban_db;
pub mod healthcheck;
pub mod privacy;
pub mod sensor;
pub mod serve;

use std::process::ExitCode;

use crate::config::{Config, LogFormat};

/// sikker — self-hosted threat intelligence: IP reputation over HTTPS,
/// TAXII 2.1 and block lists, private by construction.
#[derive(clap::Parser, Debug)]
#[command(name = "sikker", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the server (HTTPS API, TAXII, block lists and web UI).
    Serve(Box<Config>),
    /// Run low-interaction honeypot listeners that ship evidence to a sikker server.
    Sensor(Box<sensor::SensorArgs>),
    /// Keep an nftables or ipset set in sync with a sikker server's block list.
    Bouncer(Box<bouncer::BouncerArgs>),
    /// Operator commands; they work whether or not the server is running.
    Admin(admin::AdminArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Exit 0 when the local server answers /healthz (for container and service health checks).
    Healthcheck(Box<Config>),
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a commented example configuration file listing every option.
    Example,
    /// Validate flags, SIKKER_* variables and the config file, then print the effective values.
    Check(Box<Config>),
}

impl Command {
    /// The server configuration this command carries, if any.
    pub fn config(&self) -> Option<&Config> {
        match self {
            Self::Serve(c) | Self::Healthcheck(c) | Self::Config(ConfigCmd::Check(c)) => Some(c),
            Self::Admin(_)
            | Self::Sensor(_)
            | Self::Bouncer(_)
            | Self::Config(ConfigCmd::Example) => None,
        }
    }

    /// Log filter and format: the server's own for `serve`, quiet otherwise.
    pub fn log_settings(&self) -> (String, LogFormat) {
        match self {
            Self::Serve(c) => (c.log.clone(), c.log_format),
            Self::Sensor(s) => (s.log.clone(), LogFormat::Text),
            Self::Bouncer(b) => (b.log.clone(), LogFormat::Text),
            _ => ("warn".to_owned(), LogFormat::Text),
        }
    }
}

/// Runs a parsed command. Exit codes: 0 success, 1 failure, 2 usage or configuration error.
pub async fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve(c) => serve::run(*c).await,
        Command::Sensor(s) => sensor::run(*s).await,
        Command::Bouncer(b) => bouncer::run(*b).await,
        Command::Admin(a) => admin::run(a).await,
        Command::Config(ConfigCmd::Example) => {
            print!("{}", crate::config::example());
            Ok(())
        }
        Command::Config(ConfigCmd::Check(c)) => {
            print!("{}", config_cmd::effective(&c));
            Ok(())
        }
        Command::Healthcheck(c) => healthcheck::run(&c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<admin::Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
