//! The admin channel: newline-delimited JSON over a 0600 Unix socket in the
//! data dir, checked by peer credentials. Requests are `AdminRequest`s and
//! run through the same service code as offline admin commands.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::service::admin::AdminRequest;

/// Largest request or reply line accepted. Import batches are the largest
/// requests: bigger write transactions copy each B-tree page fewer times,
/// which is most of an import's cost.
pub const MAX_LINE: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The CLI's version, so a mismatch can be reported.
    pub version: String,
    pub request: AdminRequest,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub version: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Ok { result: serde_json::Value },
    Error { kind: String, message: String },
}
