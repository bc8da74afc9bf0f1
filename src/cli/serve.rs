//! `sikker serve`: bind, start, print the listening line, handle signals.

use std::io::Write;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::app;
use crate::config::Config;
use crate::domain::Clock;
use crate::systemd;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Handlers first: a signal sent as soon as the listening line appears
    // must find them in place.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--listen / SIKKER_LISTEN)",
            config.listen
        )
    })?;
    let handle = app::start(&config, listener, Clock::system()).await?;
    if let Err(e) = handle
        .services
        .audit_config(&super::config_cmd::effective(&config))
        .await
    {
        tracing::error!(error = %e, "recording the configuration in the audit log failed");
    }
    for w in &handle.warnings {
        tracing::warn!("{w}");
    }
    let base = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{}://{}", handle.scheme, handle.local_addr));
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "listening on {}://{}",
            handle.scheme, handle.local_addr
        )?;
        if let Some(addr) = handle.redirect_addr {
            writeln!(out, "redirecting http://{addr} to HTTPS")?;
        }
        if let Some(token) = &handle.bootstrap_token {
            writeln!(
                out,
                "first start: create the first admin account within 24 h at {base}/setup#token={token} (one-time link)"
            )?;
        }
        out.flush()?;
    }
    systemd::notify("READY=1");
    tracing::info!(
        scheme = handle.scheme,
        port = handle.local_addr.port(),
        "ready"
    );

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                systemd::notify("RELOADING=1");
                match handle.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
                }
                match handle.services.geoip_reload().await {
                    Ok(dbs) => tracing::info!(databases = dbs.len(), "GeoIP databases reloaded"),
                    Err(e) => tracing::error!(error = %e, "GeoIP reload failed; keeping the databases in use"),
                }
                systemd::notify("READY=1");
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    systemd::notify("STOPPING=1");
    handle.shutdown().await;
    Ok(())
}
