//! Webhook POSTs: JSON bodies signed with HMAC-SHA256 over `"<t>.<body>"`
//! (`X-Sikker-Signature: t=<unix seconds>,v1=<hex>`), sent over HTTPS with
//! the system's trust roots. Targets that resolve to private or loopback
//! addresses are refused unless http is allowed (tests, closed networks).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::domain::IpKey;

/// Time allowed for one POST, connection included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(15);
pub const SIGNATURE_HEADER: &str = "x-sikker-signature";

/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret string>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

/// Posts webhooks.
#[derive(Clone)]
pub struct WebhookClient {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client trusting the system's roots and the certificates in
    /// `extra_ca` (`--webhook-ca-file`); `allow_private` also allows
    /// http:// and loopback or private targets.
    pub fn new(allow_private: bool, extra_ca: Option<&std::path::Path>) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (mut added, _) = roots.add_parsable_certificates(found.certs);
        if let Some(path) = extra_ca {
            let named = |e: &dyn std::fmt::Display| {
                format!(
                    "--webhook-ca-file / SIKKER_WEBHOOK_CA_FILE: {}: {e}",
                    path.display()
                )
            };
            let pem = std::fs::read(path).map_err(|e| named(&e))?;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| named(&e))?;
            if certs.is_empty() {
                return Err(named(&"holds no PEM certificate"));
            }
            for c in certs {
                roots.add(c).map_err(|e| named(&e))?;
                added += 1;
            }
        }
        if added == 0 {
            tracing::warn!("no system trust roots found: https webhooks will fail");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            allow_private,
        })
    }

    /// POSTs `body` to `url`, signed at `t` (Unix seconds). Any 2xx answer
    /// is success; anything else is an error saying what happened.
    pub async fn post(
        &self,
        url: &str,
        body: &str,
        secret: &str,
        t: i64,
        delivery_id: u64,
    ) -> Result<(), String> {
        tokio::time::timeout(
            POST_TIMEOUT,
            self.post_inner(url, body, secret, t, delivery_id),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
    }

    async fn post_inner(
        &self,
        url: &str,
        body: &str,
        secret: &str,
        t: i64,
        delivery_id: u64,
    ) -> Result<(), String> {
        let uri: http::Uri = url.parse().map_err(|_| "invalid URL".to_owned())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.allow_private => false,
            _ => return Err("URL must be https".into()),
        };
        let auth = uri.authority().ok_or("URL has no host")?.clone();
        let host = auth.host().trim_matches(['[', ']']).to_owned();
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| self.allow_private || IpKey::from_ip(a.ip()).is_public())
            .copied()
            .ok_or_else(|| {
                format!("{host} resolves to no address webhooks may reach (private or loopback)")
            })?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, auth.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("sikker/", env!("CARGO_PKG_VERSION")),
            )
            .header(SIGNATURE_HEADER, signature(secret, t, body))
            .header("x-sikker-delivery", delivery_id.to_string())
            .header("x-sikker-event", "alert.matched")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let status = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| format!("invalid TLS server name {host}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(tls, req).await?
        } else {
            exchange(tcp, req).await?
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered HTTP {}", status.as_u16()))
        }
    }
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    driver.abort();
    Ok(resp?.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently with python3:
        // hmac.new(b"whsec_k", b"1.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("whsec_k", 1, "{}"),
            "t=1,v1=3e55f0b5839e8ec0fb44b2f4f4153484f384cbc5344451738bfc77fe78d0d531"
        );
    }
}
