//! ACME certificates: the account and certificate files in the data dir,
//! the TLS-ALPN-01 challenge certificates the TLS listener answers with,
//! when a certificate is due for renewal, and one issuance run against the
//! CA (`instant-acme`).
//!
//! TLS-ALPN-01 (RFC 8737) is used because it is answered on the HTTPS port
//! sikker already listens on: no port 80 listener, no DNS API.

pub mod challenge;
pub mod files;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::domain::UnixMillis;

pub use challenge::Challenges;
pub use files::{AcmeFiles, CertInfo};

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What the operator configured.
#[derive(Clone, Debug)]
pub struct AcmeOptions {
    /// The names the certificate is for (the first is the subject).
    pub domains: Vec<String>,
    /// The CA's ACME directory URL.
    pub directory: String,
    /// Account contacts (`mailto:` URIs).
    pub contacts: Vec<String>,
    /// A PEM root trusted for the directory's own HTTPS, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Renew this long before expiry (at most a third of the lifetime).
    pub renew_before: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME CA {directory}: {source}")]
    Ca {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What the renewal loop should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Order a certificate now.
    Issue,
    /// Nothing until this time.
    WaitUntil(UnixMillis),
}

/// When a certificate is renewed: `renew_before` ahead of expiry, or a
/// third of its lifetime ahead when that is shorter (short-lived certs).
pub fn renew_at(info: &CertInfo, renew_before: Duration) -> UnixMillis {
    let lifetime = (info.not_after.0 - info.not_before.0).max(0);
    let window = i64::try_from(renew_before.as_millis())
        .unwrap_or(i64::MAX)
        .min(lifetime / 3);
    UnixMillis(info.not_after.0 - window)
}

/// Decides from the stored certificate (if any) and the time.
pub fn next_step(
    stored: Option<&CertInfo>,
    domains: &[String],
    now: UnixMillis,
    renew_before: Duration,
) -> Step {
    match stored {
        Some(info) if info.covers(domains) => {
            let at = renew_at(info, renew_before);
            if now >= at {
                Step::Issue
            } else {
                Step::WaitUntil(at)
            }
        }
        _ => Step::Issue,
    }
}

/// Delay before retry number `failures` (1-based): 5 minutes, doubling,
/// at most 6 hours, so a misconfigured name does not exhaust the CA's
/// failed-validation limits.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(300);
    let cap = Duration::from_secs(6 * 3600);
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(cap)
}

/// One issuance run: loads or creates the account, orders a certificate
/// for every domain, answers the TLS-ALPN-01 challenges through
/// `challenges`, and stores the chain and its key. The caller reloads the
/// TLS configuration afterwards.
pub async fn issue(
    opts: &AcmeOptions,
    files: &AcmeFiles,
    challenges: &Arc<Challenges>,
) -> Result<CertInfo, AcmeError> {
    let ca = |source| AcmeError::Ca {
        directory: opts.directory.clone(),
        source,
    };
    let account = account(opts, files).await?;
    let ids: Vec<Identifier> = opts
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(ca)?;
    let mut answered = Vec::new();
    let result = async {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(ca)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Other(format!(
                        "authorization for {} is {other:?}",
                        authz.identifier()
                    )));
                }
            }
            let name = authz.identifier().to_string();
            let mut ch = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
                AcmeError::Other(format!(
                    "the CA offers no tls-alpn-01 challenge for {name}"
                ))
            })?;
            let digest = ch.key_authorization().digest();
            challenges
                .insert(&name, digest.as_ref())
                .map_err(AcmeError::Other)?;
            answered.push(name);
            ch.set_ready().await.map_err(ca)?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retry).await.map_err(ca)?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Other(format!(
                "order for {} ended {status:?} (the CA could not validate the TLS-ALPN-01 challenge on port 443)",
                opts.domains.join(", ")
            )));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Other(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(opts.domains.clone())
            .map_err(|e| AcmeError::Other(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Other(e.to_string()))?;
        order.finalize_csr(csr.der()).await.map_err(ca)?;
        let chain = order.poll_certificate(&retry).await.map_err(ca)?;
        Ok((chain, key.serialize_pem()))
    }
    .await;
    for name in &answered {
        challenges.remove(name);
    }
    let (chain, key) = result?;
    files
        .store_cert(&chain, &key)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    CertInfo::parse(chain.as_bytes()).map_err(AcmeError::Other)
}

/// The stored account for this directory, or a new one (stored 0600).
async fn account(opts: &AcmeOptions, files: &AcmeFiles) -> Result<Account, AcmeError> {
    let ca = |source| AcmeError::Ca {
        directory: opts.directory.clone(),
        source,
    };
    let builder = || match &opts.ca_file {
        Some(p) => Account::builder_with_root(p),
        None => Account::builder(),
    };
    let path = files.account(&opts.directory);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let creds: AccountCredentials = serde_json::from_str(&text).map_err(|e| {
            AcmeError::Other(format!("cannot read ACME account {}: {e}", path.display()))
        })?;
        return builder()
            .map_err(ca)?
            .from_credentials(creds)
            .await
            .map_err(ca);
    }
    let contacts: Vec<&str> = opts.contacts.iter().map(String::as_str).collect();
    let (account, creds) = builder()
        .map_err(ca)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            opts.directory.clone(),
            None,
        )
        .await
        .map_err(ca)?;
    let json = serde_json::to_vec(&creds).map_err(|e| AcmeError::Other(e.to_string()))?;
    files.store_account(&opts.directory, &json).map_err(|e| {
        AcmeError::Other(format!("cannot store ACME account {}: {e}", path.display()))
    })?;
    tracing::info!(directory = %opts.directory, account = account.id(), "ACME account created");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn info(from: i64, days: i64, names: &[&str]) -> CertInfo {
        CertInfo {
            not_before: UnixMillis(from),
            not_after: UnixMillis(from + days * DAY),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn renews_in_the_window_or_the_last_third() {
        let d = vec!["a.example".to_owned()];
        let thirty = Duration::from_secs(30 * 86_400);
        let c = info(0, 90, &["a.example"]);
        assert_eq!(
            next_step(Some(&c), &d, UnixMillis(59 * DAY), thirty),
            Step::WaitUntil(UnixMillis(60 * DAY))
        );
        assert_eq!(
            next_step(Some(&c), &d, UnixMillis(60 * DAY), thirty),
            Step::Issue
        );
        // A six-day certificate renews after four days, not at once.
        let short = info(0, 6, &["a.example"]);
        assert_eq!(
            next_step(Some(&short), &d, UnixMillis(DAY), thirty),
            Step::WaitUntil(UnixMillis(4 * DAY))
        );
        // No certificate, or one missing a configured name: issue now.
        assert_eq!(next_step(None, &d, UnixMillis(0), thirty), Step::Issue);
        let two = vec!["a.example".to_owned(), "b.example".to_owned()];
        assert_eq!(
            next_step(Some(&c), &two, UnixMillis(DAY), thirty),
            Step::Issue
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(300));
        assert_eq!(backoff(2), Duration::from_secs(600));
        assert_eq!(backoff(7), Duration::from_secs(19_200));
        assert_eq!(backoff(8), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(6 * 3600));
    }
}
