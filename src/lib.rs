//! sikker: a self-hosted threat-intelligence appliance. The library holds
//! everything; `main.rs` only parses the command line and calls `cli::run`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod acme;
pub mod admin;
pub mod app;
pub mod bouncer;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod datadir;
pub mod domain;
pub mod geoip;
pub mod http;
pub mod index;
pub mod jobs;
pub mod jwt;
pub mod logging;
pub mod notify;
pub mod par;
pub mod sensor;
pub mod service;
pub mod store;
pub mod systemd;

#[cfg(test)]
mod hostile;
