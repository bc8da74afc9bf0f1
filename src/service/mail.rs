//! Outgoing e-mail about the account (verification, password reset,
//! notices): the only mail paths that exist (P59).

use super::{Result, Services};

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Services {
    /// Queues `mail` for delivery.
    #[allow(clippy::unused_async)]
    pub async fn send_mail(&self, mail: Mail) -> Result<()> {
        if let Ok(mut q) = self.mail_queue.lock() {
            q.push(mail);
        }
        Ok(())
    }

    /// Messages queued and not yet handed to a relay.
    pub fn queued_mail(&self) -> Vec<Mail> {
        self.mail_queue
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default()
    }
}
