//! Turning one connection's observations into wire events: sanitising,
//! keyed credential hashing (passwords never leave this module), local
//! validation with the server's own rules, and the per-connection cap.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::{Ctx, StartError, Stats, io_err};
use crate::domain::{IpKey, Protocol};
use crate::service::sensors::{WireEvent, validate_event};

/// The sensor-local secret that keys credential hashes, so a hash cannot be
/// reversed by trying common passwords without the key.
#[derive(Clone)]
pub struct CredentialKey([u8; 32]);

impl CredentialKey {
    pub fn load_or_create(path: &Path) -> Result<Self, StartError> {
        let what = || format!("cannot use credential key {}", path.display());
        match std::fs::read(path) {
            Ok(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(Self)
                .map_err(|_| StartError::Other(format!("{}: not 32 bytes", what()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k)
                    .map_err(|e| StartError::Other(format!("{}: {e}", what())))?;
                write_private(path, &k).map_err(io_err(what()))?;
                Ok(Self(k))
            }
            Err(e) => Err(io_err(what())(e)),
        }
    }

    pub fn from_bytes(k: [u8; 32]) -> Self {
        Self(k)
    }

    /// Keyed hash of a (username, secret) pair, hex.
    pub fn hash(&self, user: &str, secret: &[u8]) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(secret);
        h.finalize().to_hex().to_string()
    }
}

/// Writes a new file readable by the owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Printable text of at most `max` characters.
pub(crate) fn clean(s: &str, max: usize) -> Option<String> {
    let out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_owned())
}

/// One connection's event source.
pub(crate) struct Recorder {
    ctx: Arc<Ctx>,
    src: IpAddr,
    public: bool,
    protocol: Protocol,
    dst_port: u16,
    session: String,
    events: u32,
    /// The client's own identification: SSH version, HTTP user agent, SMTP HELO.
    pub client_id: Option<String>,
}

impl Recorder {
    pub fn new(ctx: Arc<Ctx>, peer: SocketAddr, dst_port: u16, protocol: Protocol) -> Self {
        let src = ctx.peers.map(peer).to_canonical();
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        let session = format!("{}-{}", ctx.clock.now().0, hex::encode(r));
        Self {
            public: IpKey::from_ip(src).is_public(),
            ctx,
            src,
            protocol,
            dst_port,
            session,
            events: 0,
            client_id: None,
        }
    }

    /// Whether the per-connection event cap is reached (handlers then hang up).
    pub fn exhausted(&self) -> bool {
        self.events >= self.ctx.limits.max_session_events
    }

    pub fn limits(&self) -> &super::Limits {
        &self.ctx.limits
    }

    fn base(&self, kind: &str) -> WireEvent {
        WireEvent {
            ts: serde_json::Value::from(self.ctx.clock.now().0),
            src_ip: self.src.to_string(),
            protocol: self.protocol.as_str().to_owned(),
            dst_port: Some(self.dst_port),
            session_id: self.session.clone(),
            kind: kind.to_owned(),
            user_agent: self.client_id.as_deref().and_then(|c| clean(c, 512)),
            ..WireEvent::default()
        }
    }

    async fn emit(&mut self, ev: WireEvent) {
        if self.exhausted() {
            return;
        }
        self.events += 1;
        let stats = &self.ctx.stats;
        if !self.public {
            Stats::inc(&stats.events_non_public);
            return;
        }
        let now = self.ctx.clock.now();
        if let Err((field, why)) = validate_event(&ev, now, i64::MAX / 4) {
            tracing::debug!(field, why, "sensor event dropped");
            Stats::inc(&stats.events_invalid);
            return;
        }
        // Waiting here is the back-pressure: a full spool queue slows the
        // attacker's connection down instead of growing memory.
        if self.ctx.sink.send(ev).await.is_ok() {
            Stats::inc(&stats.events_recorded);
        }
    }

    pub async fn connect(&mut self) {
        let ev = self.base("connect");
        self.emit(ev).await;
    }

    /// An authentication attempt. The secret is hashed here and dropped.
    pub async fn auth(&mut self, user: &str, secret: &[u8]) {
        let mut ev = self.base("auth");
        ev.username = clean(user, 128);
        ev.credential_hash = Some(self.ctx.key.hash(user, secret));
        self.emit(ev).await;
    }

    pub async fn command(&mut self, cmd: &str) {
        let Some(c) = clean(cmd, 4096) else { return };
        let mut ev = self.base("command");
        ev.command = Some(c);
        self.emit(ev).await;
    }

    pub async fn http(&mut self, method: &str, path: &str) {
        let Some(p) = clean(path, 4096) else { return };
        let mut ev = self.base("http_request");
        ev.http_path = Some(p);
        ev.http_method = (method.len() <= 16
            && !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| method.to_ascii_uppercase());
        self.emit(ev).await;
    }

    /// An e-mail address given as sender or recipient.
    pub async fn mail(&mut self, email: &str) {
        let e = email.trim().to_ascii_lowercase();
        if e.len() > 254 || !crate::service::sensors::valid_email(&e) {
            return;
        }
        let mut ev = self.base("mail");
        ev.email = Some(e);
        self.emit(ev).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_hashes_are_keyed_and_unambiguous() {
        let a = CredentialKey::from_bytes([1; 32]);
        let b = CredentialKey::from_bytes([2; 32]);
        assert_eq!(a.hash("root", b"x"), a.hash("root", b"x"));
        assert_ne!(a.hash("root", b"x"), b.hash("root", b"x"));
        assert_ne!(a.hash("ro", b"otx"), a.hash("root", b"x"));
        assert!(!a.hash("root", b"hunter2").contains("hunter2"));
    }

    #[test]
    fn clean_removes_controls_and_caps() {
        assert_eq!(clean("a\u{0}b\r\n", 10).as_deref(), Some("a b"));
        assert_eq!(clean("   ", 10), None);
        assert_eq!(clean(&"x".repeat(20), 5).as_deref(), Some("xxxxx"));
    }
}
