//! Outbound notifications: e-mail through an SMTP relay and signed webhook
//! POSTs. The delivery job uses these; the services never talk to the
//! network themselves.

pub mod smtp;
pub mod webhook;
