//! The SSH honeypot: a real SSH handshake (russh) with a persistent host
//! key. Records the client version, usernames and keyed credential hashes;
//! the second password attempt on a connection "succeeds" into the fake
//! shell so that bots show their commands. Passwords are hashed, never kept.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::event::{Recorder, write_private};
use super::{Ctx, Settings, StartError, io_err, shell};

const MAX_LINE: usize = 4096;

pub(crate) fn config(settings: &Settings) -> Result<Arc<russh::server::Config>, StartError> {
    let path = settings.spool_dir.join("ssh_host_ed25519.seed");
    let what = || format!("cannot use SSH host key {}", path.display());
    let seed = match std::fs::read(&path) {
        Ok(b) => <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| StartError::Other(format!("{}: not 32 bytes", what())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| StartError::Other(format!("{}: {e}", what())))?;
            write_private(&path, &s).map_err(io_err(what()))?;
            s
        }
        Err(e) => return Err(io_err(what())(e)),
    };
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let limits = &settings.limits;
    Ok(Arc::new(russh::server::Config {
        server_id: SshId::Standard(settings.ssh_banner.clone().into()),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        inactivity_timeout: Some(limits.idle_timeout),
        max_auth_attempts: 6,
        channel_buffer_size: 16,
        ..Default::default()
    }))
}

/// Passes a stream through while keeping the client's identification line.
struct Sniff {
    inner: TcpStream,
    id: Arc<Mutex<Vec<u8>>>,
    done: bool,
}

impl AsyncRead for Sniff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.done {
            let new = buf.filled()[before..].to_vec();
            let mut id = self.id.lock().unwrap_or_else(PoisonError::into_inner);
            let mut done = false;
            for b in new {
                if b == b'\n' {
                    done = true;
                    break;
                }
                if id.len() < 255 && b != b'\r' {
                    id.push(b);
                }
            }
            drop(id);
            self.done = done;
        }
        r
    }
}

impl AsyncWrite for Sniff {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the handler and the connection task share.
struct Shared {
    rec: Recorder,
    connected: bool,
}

struct Handler {
    shared: Arc<tokio::sync::Mutex<Shared>>,
    id: Arc<Mutex<Vec<u8>>>,
    passwords: u32,
    user: String,
    line: Vec<u8>,
}

async fn ensure_connect(shared: &mut Shared, id: &Mutex<Vec<u8>>) {
    if shared.connected {
        return;
    }
    shared.connected = true;
    let id = id.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if !id.is_empty() {
        shared.rec.client_id = Some(String::from_utf8_lossy(&id).into_owned());
    }
    shared.rec.connect().await;
}

impl Handler {
    async fn attempt(&mut self, user: &str, secret: &[u8]) {
        let mut s = self.shared.lock().await;
        ensure_connect(&mut s, &self.id).await;
        s.rec.auth(user, secret).await;
    }

    /// Records one command and answers it on `channel`.
    async fn command(&mut self, channel: ChannelId, cmd: &str, session: &mut Session) -> bool {
        let exhausted = {
            let mut s = self.shared.lock().await;
            s.rec.command(cmd).await;
            s.rec.exhausted()
        };
        let (out, quit) = shell::respond(cmd, &self.user);
        let _ = session.data(channel, out.into_bytes());
        quit || exhausted
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.attempt(user, password.as_bytes()).await;
        self.passwords += 1;
        if self.passwords >= 2 {
            self.user = user.chars().take(64).collect();
            return Ok(Auth::Accept);
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = offer
            .public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        self.attempt(user, fp.as_bytes()).await;
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, b"Welcome to Ubuntu 20.04.6 LTS\r\n$ ".to_vec())?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let cmd = String::from_utf8_lossy(&data[..data.len().min(MAX_LINE)]).into_owned();
        self.command(channel, &cmd, session).await;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        for &b in data {
            if b == b'\r' || b == b'\n' {
                let cmd = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                if cmd.trim().is_empty() {
                    session.data(channel, b"\r\n$ ".to_vec())?;
                    continue;
                }
                let _ = session.data(channel, b"\r\n".to_vec());
                if self.command(channel, &cmd, session).await {
                    session.close(channel)?;
                    return Ok(());
                }
                session.data(channel, b"$ ".to_vec())?;
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        Ok(())
    }
}

pub(crate) async fn serve(stream: TcpStream, rec: Recorder, ctx: &Ctx) {
    let Some(config) = ctx.ssh.clone() else {
        return;
    };
    let id = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(tokio::sync::Mutex::new(Shared {
        rec,
        connected: false,
    }));
    let handler = Handler {
        shared: shared.clone(),
        id: id.clone(),
        passwords: 0,
        user: String::new(),
        line: Vec::new(),
    };
    let sniff = Sniff {
        inner: stream,
        id: id.clone(),
        done: false,
    };
    match russh::server::run_stream(config, sniff, handler).await {
        Ok(running) => {
            if let Err(e) = running.await {
                tracing::debug!(error = %e, "ssh session ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "ssh handshake failed"),
    }
    // Scanners that never try to log in still leave their version string.
    let mut s = shared.lock().await;
    ensure_connect(&mut s, &id).await;
}
