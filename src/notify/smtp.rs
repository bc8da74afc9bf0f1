//! Alert e-mail through the operator's SMTP relay (lettre over tokio and
//! rustls): STARTTLS, implicit TLS, or plain to a loopback relay.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Time allowed for one message, connection included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Starttls,
    Tls,
    Plain,
}

/// The relay settings, taken from `Config`.
#[derive(Clone)]
pub struct SmtpOptions {
    pub host: String,
    /// The port; the mode's usual port when `None`.
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

impl std::fmt::Debug for SmtpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// A configured SMTP sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(o: &SmtpOptions) -> Result<Self, String> {
        let from: Mailbox = o
            .from
            .parse()
            .map_err(|e| format!("SMTP sender '{}': {e}", o.from))?;
        let builder = match o.tls {
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&o.host)
                .map_err(|e| format!("SMTP relay {}: {e}", o.host))?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&o.host)
                .map_err(|e| format!("SMTP relay {}: {e}", o.host))?,
            TlsMode::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&o.host),
        };
        let mut builder = builder.timeout(Some(SEND_TIMEOUT));
        if let Some(port) = o.port {
            builder = builder.port(port);
        }
        if let Some(user) = &o.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                o.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text message; the error says why it was not accepted.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient '{to}': {e}"))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| format!("cannot build the message: {e}"))?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(msg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("SMTP: {e}")),
            Err(_) => Err("SMTP: timed out".into()),
        }
    }
}
