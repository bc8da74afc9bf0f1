//! HTTP(S) front end: accept loop (TCP → rustls → hyper), limits, routing,
//! error rendering, security headers and the access log. Nothing below this
//! module knows hyper.

pub mod api;
pub mod auth;
pub mod body;
pub mod client_ip;
pub mod compat;
pub mod cookies;
pub mod dispatch;
pub mod error;
pub mod query;
pub mod quota_headers;
pub mod redirect;
pub mod response;
pub mod router;
pub mod server;
pub mod taxii;
pub mod tls;
pub mod ui;

use std::time::Duration;

use ipnet::IpNet;

use crate::domain::LogIpMode;

/// Limits that protect the server from slow, large or numerous clients.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

/// What the HTTP layer needs from the configuration, and nothing more.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub limits: Limits,
    pub trusted_proxies: Vec<IpNet>,
    pub log_ip: LogIpMode,
    pub public_url: Option<String>,
}

impl HttpOptions {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            limits: Limits {
                max_connections: c.max_connections as usize,
                max_header_bytes: c.max_header_bytes as usize,
                max_body_bytes: c.max_body_bytes as usize,
                request_timeout: c.request_timeout,
                header_timeout: c.header_timeout,
                idle_timeout: c.idle_timeout,
                tls_handshake_timeout: c.header_timeout,
            },
            trusted_proxies: c.trusted_proxy.clone(),
            log_ip: c.log_client_ip,
            public_url: c.public_url.clone(),
        }
    }
}
