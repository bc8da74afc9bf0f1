//! The admin audit log (P60): every operator request (admin socket or
//! offline CLI), every admin API call, and every configuration change seen
//! at start-up is recorded with who, what and when — names of operations,
//! never their secrets. Kept for the privacy-log period, then swept.

use std::collections::BTreeMap;

use serde_json::Value;

use super::admin::AdminRequest;
use super::{Mode, Result, Services};
use crate::store::{self, audit::AuditEntry};

const CONFIG_SNAPSHOT: &str = "audit.config";

/// The operation name of a request (`key_create`, `privacy/correction_approve` …).
fn op_name(req: &AdminRequest) -> String {
    let v = serde_json::to_value(req).unwrap_or(Value::Null);
    let outer = v.get("op").and_then(Value::as_str).unwrap_or("unknown");
    // Nested request families carry their own tag.
    let inner = v
        .as_object()
        .and_then(|o| o.values().find_map(|x| x.get("op").and_then(Value::as_str)));
    match inner {
        Some(i) => format!("{outer}/{i}"),
        None => outer.to_owned(),
    }
}

impl Services {
    /// Appends one entry; a failure is logged, never fatal to the action.
    pub async fn audit(&self, actor: String, action: String, detail: String) {
        let e = AuditEntry {
            at_ms: self.clock.now().0,
            actor,
            action,
            detail,
        };
        if let Err(err) = self
            .store
            .write(move |txn| store::audit::append(txn, &e))
            .await
        {
            tracing::error!(error = %err, "writing the admin audit log failed");
        }
    }

    /// Records an operator request before it runs.
    pub(crate) async fn audit_admin_request(&self, req: &AdminRequest) {
        if matches!(req, AdminRequest::Ping | AdminRequest::AuditLog { .. }) {
            return;
        }
        let actor = match self.mode {
            Mode::Server => "admin socket",
            Mode::Offline => "admin CLI (offline)",
        };
        self.audit(actor.into(), op_name(req), String::new()).await;
    }

    /// Compares the effective configuration (`key = value` lines, no
    /// secrets: passwords come from files) with the one seen at the last
    /// start, and records which keys changed.
    pub async fn audit_config(&self, effective: &str) -> Result<()> {
        let now: BTreeMap<String, String> = effective
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let text = serde_json::to_string(&now).unwrap_or_default();
        let before = self
            .store
            .read(|txn| store::meta::get_text(txn, CONFIG_SNAPSHOT))
            .await?;
        let changed: Vec<String> = match before
            .as_deref()
            .and_then(|b| serde_json::from_str::<BTreeMap<String, String>>(b).ok())
        {
            None => vec![],
            Some(old) => now
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} = {v}"))
                .chain(
                    old.keys()
                        .filter(|k| !now.contains_key(*k))
                        .map(|k| format!("{k} unset")),
                )
                .collect(),
        };
        if before.is_some() && changed.is_empty() {
            return Ok(());
        }
        let (action, detail) = if before.is_none() {
            ("configuration first seen", String::new())
        } else {
            ("configuration changed", changed.join("; "))
        };
        self.audit("server start".into(), action.into(), detail)
            .await;
        self.store
            .write(move |txn| store::meta::set_text(txn, CONFIG_SNAPSHOT, &text))
            .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, 10_000);
        Ok(self
            .store
            .read(move |txn| store::audit::newest(txn, limit))
            .await?)
    }

    /// Drops entries older than the privacy-log period.
    pub(crate) async fn sweep_audit(
        &self,
        now: crate::domain::UnixMillis,
        batch: usize,
    ) -> Result<usize> {
        let cutoff = now.0.saturating_sub(self.privacy.opts.privacy_log_ms);
        Ok(self
            .store
            .drain(batch, move |txn, b| {
                store::audit::delete_before(txn, cutoff, b)
            })
            .await?)
    }
}
