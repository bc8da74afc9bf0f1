//! Client side of the admin socket, used by `sikker admin`.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Envelope, MAX_LINE, Reply};
use crate::service::admin::AdminRequest;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "admin socket {path}: permission denied (run as the user that runs `sikker serve`, or root)"
    )]
    Permission { path: String },
    #[error("admin socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the admin connection without answering")]
    Closed,
    #[error("the server's answer could not be read: {0}")]
    Protocol(String),
}

pub struct Client {
    stream: BufReader<UnixStream>,
}

impl Client {
    /// Connects; `Ok(None)` when no server listens (missing or stale socket).
    pub async fn connect(path: &Path) -> Result<Option<Self>, ClientError> {
        match UnixStream::connect(path).await {
            Ok(s) => Ok(Some(Self {
                stream: BufReader::new(s),
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(ClientError::Permission {
                    path: path.display().to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn call(&mut self, request: AdminRequest) -> Result<Reply, ClientError> {
        let env = Envelope {
            version: env!("CARGO_PKG_VERSION").into(),
            request,
        };
        let mut line =
            serde_json::to_vec(&env).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await?;
        let mut answer = String::new();
        let n = (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_line(&mut answer)
            .await?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_str(answer.trim_end()).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
