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
pub mod encoding;
pub mod error;
pub mod per_ip;
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
    /// Simultaneous connections from one client address (an IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Peers not subject to the per-address connection limit: trusted
    /// proxies carry many clients over their connections.
    pub per_ip_exempt: Vec<IpNet>,
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
    /// Requests a second per client address (0: no limit) and the burst allowed.
    pub rate_per_ip: u32,
    pub rate_burst: u32,
    pub log_ip: LogIpMode,
    pub public_url: Option<String>,
}

impl HttpOptions {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            limits: Limits {
                max_connections: c.max_connections as usize,
                max_connections_per_ip: c.max_connections_per_ip as usize,
                per_ip_exempt: c.trusted_proxy.clone(),
                max_header_bytes: c.max_header_bytes as usize,
                max_body_bytes: c.max_body_bytes as usize,
                request_timeout: c.request_timeout,
                header_timeout: c.header_timeout,
                idle_timeout: c.idle_timeout,
                tls_handshake_timeout: c.header_timeout,
            },
            trusted_proxies: c.trusted_proxy.clone(),
            rate_per_ip: c.rate_limit_per_ip,
            rate_burst: c.rate_limit_burst,
            log_ip: c.log_client_ip,
            public_url: c.public_url.clone(),
        }
    }
}
