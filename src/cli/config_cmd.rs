//! `sikker config check`: the effective configuration as TOML.

use std::fmt::Write as _;

use crate::config::Config;

// One line per option: the list grows with the configuration.
#[allow(clippy::too_many_lines)]
pub fn effective(c: &Config) -> String {
    let s = |v: &dyn std::fmt::Display| toml::Value::String(v.to_string()).to_string();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|p| s(p)).collect::<Vec<_>>().join(", ")
        )
    };
    let opt = |v: Option<String>| v.map_or_else(|| "# (unset)".to_owned(), |v| s(&v));
    let d = |v: std::time::Duration| s(&humantime::format_duration(v));
    let mut out = String::from("# configuration is valid; effective values:\n");
    let lines: Vec<(&str, String)> = vec![
        (
            "config",
            opt(c.config.as_ref().map(|p| p.display().to_string())),
        ),
        ("data_dir", s(&c.data_dir.display())),
        ("listen", s(&c.listen)),
        (
            "tls_cert",
            opt(c.tls_cert.as_ref().map(|p| p.display().to_string())),
        ),
        (
            "tls_key",
            opt(c.tls_key.as_ref().map(|p| p.display().to_string())),
        ),
        ("acme_domain", list(&c.acme_domain)),
        ("acme_directory", s(&c.acme_directory)),
        ("acme_contact", list(&c.acme_contact)),
        (
            "acme_ca_file",
            opt(c.acme_ca_file.as_ref().map(|p| p.display().to_string())),
        ),
        ("acme_renew_before", d(c.acme_renew_before)),
        ("insecure_http", c.insecure_http.to_string()),
        (
            "trusted_proxy",
            format!(
                "[{}]",
                c.trusted_proxy
                    .iter()
                    .map(|n| s(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "http_redirect_listen",
            opt(c.http_redirect_listen.map(|a| a.to_string())),
        ),
        ("public_url", opt(c.public_url.clone())),
        ("log", s(&c.log)),
        (
            "log_format",
            s(&format!("{:?}", c.log_format).to_lowercase()),
        ),
        (
            "log_client_ip",
            s(&format!("{:?}", c.log_client_ip).to_lowercase()),
        ),
        ("max_connections", c.max_connections.to_string()),
        (
            "max_connections_per_ip",
            c.max_connections_per_ip.to_string(),
        ),
        ("rate_limit_per_ip", c.rate_limit_per_ip.to_string()),
        ("rate_limit_burst", c.rate_limit_burst.to_string()),
        ("max_header_bytes", c.max_header_bytes.to_string()),
        ("max_body_bytes", c.max_body_bytes.to_string()),
        ("request_timeout", d(c.request_timeout)),
        ("header_timeout", d(c.header_timeout)),
        ("idle_timeout", d(c.idle_timeout)),
        (
            "geoip_country",
            opt(c.geoip_country.as_ref().map(|p| p.display().to_string())),
        ),
        (
            "geoip_asn",
            opt(c.geoip_asn.as_ref().map(|p| p.display().to_string())),
        ),
        (
            "geoip_city",
            opt(c.geoip_city.as_ref().map(|p| p.display().to_string())),
        ),
        ("retention_reports", d(c.retention_reports)),
        ("retention_indicators", d(c.retention_indicators)),
        ("retention_repeat_history", d(c.retention_repeat_history)),
        ("ipv6_prefix", c.ipv6_prefix.to_string()),
        ("retention_usage", d(c.retention_usage)),
        ("retention_network", d(c.retention_network)),
        (
            "retention_account_after_deletion",
            d(c.retention_account_after_deletion),
        ),
        ("retention_analytics", d(c.retention_analytics)),
        ("retention_audience", d(c.retention_audience)),
        ("retention_privacy_log", d(c.retention_privacy_log)),
        ("notify_rate", c.notify_rate.to_string()),
        ("db_cache_mib", c.db_cache_mib.to_string()),
        ("blocklist_memory_mib", c.blocklist_memory_mib.to_string()),
        (
            "sensor_batch_memory_mib",
            c.sensor_batch_memory_mib.to_string(),
        ),
        ("sweep_interval", d(c.sweep_interval)),
        (
            "registration",
            s(&format!("{:?}", c.registration).to_lowercase()),
        ),
        ("lockout_failures", c.lockout_failures.to_string()),
        ("lockout_window", d(c.lockout_window)),
        ("hash_concurrency", c.hash_concurrency.to_string()),
        ("jwt_rotate_days", c.jwt_rotate_days.to_string()),
        (
            "tiers_file",
            opt(c.tiers_file.as_ref().map(|p| p.display().to_string())),
        ),
        ("demo", c.demo.to_string()),
        ("alert_cooldown", d(c.alert_cooldown)),
        ("smtp_host", opt(c.smtp_host.clone())),
        ("smtp_port", opt(c.smtp_port.map(|p| p.to_string()))),
        ("smtp_tls", s(&format!("{:?}", c.smtp_tls).to_lowercase())),
        ("smtp_username", opt(c.smtp_username.clone())),
        (
            "smtp_password_file",
            opt(c
                .smtp_password_file
                .as_ref()
                .map(|p| p.display().to_string())),
        ),
        ("smtp_from", opt(c.smtp_from.clone())),
        ("webhook_allow_http", c.webhook_allow_http.to_string()),
        (
            "webhook_ca_file",
            opt(c.webhook_ca_file.as_ref().map(|p| p.display().to_string())),
        ),
        ("scrub_pattern", list(&c.scrub_pattern)),
        ("shutdown_grace", d(c.shutdown_grace)),
    ];
    for (k, v) in lines {
        let _ = writeln!(out, "{k} = {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_option() {
        let c = Config::from_serve_args(Vec::<String>::new()).unwrap();
        let out = effective(&c);
        for a in crate::config::option_args() {
            assert!(
                out.contains(&format!("\n{} = ", a.get_id())),
                "missing {}",
                a.get_id()
            );
        }
    }
}
