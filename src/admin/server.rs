//! Server side of the admin socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::{Envelope, MAX_LINE, Outcome, Reply};
use crate::service::{Error, Services};

/// Binds the socket (replacing a stale one: the caller holds the data dir
/// lock, so no live server can own it) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn serve(
    listener: UnixListener,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = rustix::process::geteuid().as_raw();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => { tracing::warn!(error = %e, "admin socket accept failed"); continue; }
            },
        };
        let peer = stream.peer_cred().ok().map(|c| c.uid());
        if !peer.is_some_and(|uid| uid == me || uid == 0) {
            tracing::warn!("admin socket: refused a peer with another user id");
            // Said once, so the operator sees why rather than a closed socket.
            sessions.spawn(refuse(stream, peer, me));
            continue;
        }
        let services = services.clone();
        let mut stop = shutdown.clone();
        sessions.spawn(async move {
            // Sessions end with the server so nothing keeps the database open.
            tokio::select! {
                r = session(stream, &services) => if let Err(e) = r {
                    tracing::debug!(error = %e, "admin session ended");
                },
                _ = stop.changed() => {}
            }
        });
        while sessions.try_join_next().is_some() {}
    }
    while sessions.join_next().await.is_some() {}
}

/// Answers a peer of another user with one error line, then hangs up.
async fn refuse(mut stream: UnixStream, peer: Option<u32>, me: u32) {
    let who = peer.map_or_else(
        || "an unknown user id".to_owned(),
        |u| format!("user id {u}"),
    );
    let reply = Reply {
        version: env!("CARGO_PKG_VERSION").into(),
        outcome: Outcome::Error {
            kind: "forbidden".into(),
            message: format!(
                "admin socket: {who} may not use it (only the server's user, id {me}, or root)"
            ),
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let answer = async {
        stream.write_all(&out).await?;
        // Wait for the request line, so hanging up cannot break the
        // client's write before it reads the answer.
        let mut line = String::new();
        BufReader::new(&mut stream)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), answer).await;
}

async fn session(stream: UnixStream, services: &Services) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let outcome = if n > MAX_LINE {
            Outcome::Error {
                kind: "invalid".into(),
                message: "request line too long".into(),
            }
        } else {
            match serde_json::from_str::<Envelope>(line.trim_end()) {
                Err(e) => Outcome::Error {
                    kind: "invalid".into(),
                    message: format!("malformed request: {e}"),
                },
                Ok(env) => match services.admin(env.request).await {
                    Ok(result) => Outcome::Ok { result },
                    Err(e) => render(&e),
                },
            }
        };
        let reply = Reply {
            version: env!("CARGO_PKG_VERSION").into(),
            outcome,
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
        if n > MAX_LINE {
            return Ok(());
        }
    }
}

/// The admin socket's one mapping of service errors.
pub fn render(e: &Error) -> Outcome {
    let kind = match e {
        Error::NotFound { .. } => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::Unauthenticated { .. } => "unauthenticated",
        Error::Forbidden { .. } => "forbidden",
        Error::Invalid { .. } => "invalid",
        Error::RateLimited { .. } => "rate_limited",
        Error::Unavailable { .. } => "unavailable",
        Error::Internal { .. } => "internal",
    };
    Outcome::Error {
        kind: kind.into(),
        message: e.to_string(),
    }
}
