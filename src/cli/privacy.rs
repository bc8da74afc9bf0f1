//! `sikker admin correction|retention|gdpr|notify|notices`: the privacy
//! operations, turned into `AdminRequest::Privacy` so that the running
//! server and an offline CLI execute the same service code.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::service::admin::AdminRequest;
use crate::service::privacy::{Decision, PrivacyRequest};

#[derive(clap::Subcommand, Debug)]
pub enum CorrectionCmd {
    /// Every listing correction with its status, history and new-evidence flag.
    List,
    /// Grant a pending correction, e.g. `sikker admin correction approve 3 --reason "ISP confirmed reassignment"`.
    Approve {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Refuse a pending correction, with the reason.
    Deny {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a granted correction (e.g. after new evidence), re-listing the IP.
    Revoke {
        id: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum RetentionCmd {
    /// Per data category: period, items held, the oldest and its purge date.
    Status,
}

#[derive(clap::Subcommand, Debug)]
pub enum GdprCmd {
    /// Print everything held about an account as JSON (access/portability).
    Export { account: u64 },
    /// Erase an account: auth data, sessions, alerts at once; keys revoked; contributions anonymised.
    Erase { account: u64 },
    /// Record a request received by e-mail or letter so its 30-day deadline is tracked.
    Record {
        account: u64,
        /// access, rectification, erasure, restriction, lift_restriction, objection, withdraw_objection, consent_withdrawal
        #[arg(long)]
        kind: String,
    },
    /// Mark a recorded request answered.
    Answer { id: u64 },
    /// Requests not yet answered, soonest deadline first.
    Pending,
}

/// E-mail all account holders (breach or policy change), e.g.
/// `sikker admin notify --subject "Policy update" --body-file notice.txt`.
#[derive(clap::Args, Debug)]
pub struct NotifyArgs {
    #[arg(long)]
    pub subject: String,
    #[arg(long, value_name = "FILE")]
    pub body_file: PathBuf,
}

pub fn correction(c: CorrectionCmd) -> AdminRequest {
    let decide = |id, decision, reason| {
        AdminRequest::Privacy(PrivacyRequest::CorrectionDecide {
            id,
            decision,
            reason,
        })
    };
    match c {
        CorrectionCmd::List => AdminRequest::Privacy(PrivacyRequest::CorrectionList),
        CorrectionCmd::Approve { id, reason } => decide(id, Decision::Approve, reason),
        CorrectionCmd::Deny { id, reason } => decide(id, Decision::Deny, reason),
        CorrectionCmd::Revoke { id, reason } => decide(id, Decision::Revoke, reason),
    }
}

pub fn retention(c: RetentionCmd) -> AdminRequest {
    match c {
        RetentionCmd::Status => AdminRequest::Privacy(PrivacyRequest::RetentionStatus),
    }
}

pub fn gdpr(c: GdprCmd) -> AdminRequest {
    AdminRequest::Privacy(match c {
        GdprCmd::Export { account } => PrivacyRequest::GdprExport { account },
        GdprCmd::Erase { account } => PrivacyRequest::GdprErase { account },
        GdprCmd::Record { account, kind } => PrivacyRequest::GdprRecord { account, kind },
        GdprCmd::Answer { id } => PrivacyRequest::GdprAnswer { id },
        GdprCmd::Pending => PrivacyRequest::GdprPending,
    })
}

pub fn notify(a: NotifyArgs) -> anyhow::Result<AdminRequest> {
    let len = std::fs::metadata(&a.body_file)
        .with_context(|| format!("cannot read {}", a.body_file.display()))?
        .len();
    if len > 64 * 1024 {
        bail!(
            "{} is {len} bytes; a notice is at most 64 KiB",
            a.body_file.display()
        );
    }
    let body = std::fs::read_to_string(&a.body_file)
        .with_context(|| format!("cannot read {} as UTF-8 text", a.body_file.display()))?;
    Ok(AdminRequest::Privacy(PrivacyRequest::Notify {
        subject: a.subject,
        body,
    }))
}

pub fn notices() -> AdminRequest {
    AdminRequest::Privacy(PrivacyRequest::NoticeList)
}
