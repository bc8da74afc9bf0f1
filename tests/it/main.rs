//! The one integration test binary: every test starts the real server on
//! 127.0.0.1:0 (in-process, or the compiled binary as a process) and talks
//! HTTPS to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod abuseipdb;
mod accounts;
mod acme;
mod admin_cli;
mod alerts;
mod blocklist;
mod blsize;
mod bouncer;
mod common;
mod config_cli;
mod crash;
mod diskfull;
mod evidence;
mod fail2ban;
mod foundation;
mod geoip;
mod jwt;
mod limits;
mod packaging;
mod prefix;
mod privacy;
mod process;
mod quotas;
mod schema;
mod sensor;
mod taxii;
mod threat;
mod ui;
