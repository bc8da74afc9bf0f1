//! Operator requests, executed the same way whether they arrive over the
//! admin socket of a running server or from an offline `sikker admin`.

use serde::{Deserialize, Serialize};

use super::{Mode, Result, Services};
use crate::store::meta;

/// One operator request. New operations are added as variants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    Ping,
    /// Issues a new one-time bootstrap token for the first admin account.
    Bootstrap,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PingInfo {
    pub mode: String,
    pub version: String,
    pub schema_version: u32,
    pub data_dir: String,
    pub uptime_secs: u64,
}

impl Services {
    pub async fn admin(&self, req: AdminRequest) -> Result<serde_json::Value> {
        match req {
            AdminRequest::Ping => {
                let schema_version = self
                    .store
                    .read(meta::schema_version)
                    .await?
                    .unwrap_or_default();
                let uptime_ms = self.clock.now().0.saturating_sub(self.started.0);
                let info = PingInfo {
                    mode: match self.mode {
                        Mode::Server => "server",
                        Mode::Offline => "offline",
                    }
                    .to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    schema_version,
                    data_dir: self.data_dir.display().to_string(),
                    uptime_secs: u64::try_from(uptime_ms / 1000).unwrap_or_default(),
                };
                Ok(serde_json::to_value(info).unwrap_or_default())
            }
            AdminRequest::Bootstrap => {
                let token = self.issue_bootstrap_token().await?;
                Ok(
                    serde_json::json!({ "token": token, "valid_hours": super::bootstrap::VALIDITY.as_secs() / 3600 }),
                )
            }
        }
    }
}
