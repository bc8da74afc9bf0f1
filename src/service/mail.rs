//! Outgoing e-mail about the account itself (address verification,
//! password reset, notices): the only mail paths besides alerts the holder
//! set up (P59). Messages go through the same persistent outbox as alert
//! notifications, so a relay outage delays them but does not lose them.

use super::{Result, Services};
use crate::store::{self, alerts::Channel, alerts::Delivery, alerts::DeliveryStatus};

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The account it concerns (0 for none).
    pub account: u64,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Services {
    /// Queues `mail` in the outbox and wakes the delivery job.
    pub async fn send_mail(&self, mail: Mail) -> Result<()> {
        self.send_mail_at(mail, self.clock.now()).await
    }

    /// Queues `mail` for its first attempt at `at` (notices are spread out).
    pub async fn send_mail_at(&self, mail: Mail, at: crate::domain::UnixMillis) -> Result<()> {
        let now = self.clock.now();
        self.store
            .write(move |txn| {
                let d = Delivery {
                    id: store::alerts::next_delivery_id(txn)?,
                    alert_id: 0,
                    account: mail.account,
                    kind: None,
                    channel: Channel::Email {
                        to: mail.to,
                        subject: mail.subject,
                        body: mail.body,
                    },
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    created_ms: now.0,
                    next_attempt_ms: Some(at.0.max(now.0)),
                    finished_ms: None,
                };
                store::alerts::put_delivery(txn, &d, None)
            })
            .await?;
        self.alerts.outbox.notify_one();
        Ok(())
    }
}
