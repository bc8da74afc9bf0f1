//! Every redb table, named `key_value`, in one place. Only the owning
//! module opens a table.

use redb::{TableDefinition, WriteTransaction};

use super::Result;

/// Store-wide facts: schema version, bootstrap token hash, sequences.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// IP (u128) → versioned indicator record.
pub const IP_INDICATOR: TableDefinition<u128, &[u8]> = TableDefinition::new("ip_indicator");
/// (expiry day, IP) → (): the TTL bucket of each indicator.
pub const DAY_IP_EXPIRY: TableDefinition<(i64, u128), ()> = TableDefinition::new("day_ip_expiry");
/// (modified ms, feed sequence) → IP: indicators in TAXII feed order.
pub const MODSEQ_IP: TableDefinition<(i64, u64), u128> = TableDefinition::new("modseq_ip");
/// IP → (created ms, modified ms, feed sequence): an indicator's feed
/// position until schema 6; since schema 7 it is in the indicator's record
/// and this table stays empty (kept for migrating older files and backups).
pub const IP_FEEDPOS: TableDefinition<u128, (i64, i64, u64)> = TableDefinition::new("ip_feedpos");
/// STIX indicator UUID (v5 of the IP) → IP, for lookups by STIX id.
pub const STIXID_IP: TableDefinition<u128, u128> = TableDefinition::new("stixid_ip");
/// IP → versioned repeat-offender history (expiry count, last expiry day).
pub const IP_REPEAT: TableDefinition<u128, &[u8]> = TableDefinition::new("ip_repeat");
/// (purge day, IP) → (): the TTL bucket of each repeat-offender history.
pub const DAY_IP_REPEATPURGE: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("day_ip_repeatpurge");
/// (creation day, report id) → raw report; a day is dropped as a whole.
pub const DAYID_REPORT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("dayid_report");
/// (IP, creation day, report id) → (): the reports about one IP.
pub const IPDAYID_REPORT: TableDefinition<(u128, i64, u64), ()> =
    TableDefinition::new("ipdayid_report");

/// Sensor id → sensor record.
pub const SENSORID_SENSOR: TableDefinition<u64, &[u8]> = TableDefinition::new("sensorid_sensor");
/// Keyed hash of a sensor token → sensor id.
pub const TOKENHASH_SENSORID: TableDefinition<[u8; 32], u64> =
    TableDefinition::new("tokenhash_sensorid");
/// (day, sensor, session hash, chunk) → what a sensor's session had
/// counted that day: the sorted 64-bit fingerprints of its events, of
/// itself and of its names (`store::sensors::Dedup`), at most
/// `store::sensors::CHUNK` per row.
pub const DAY_SENSOR_SEEN: TableDefinition<(i64, u64, u64, u32), &[u8]> =
    TableDefinition::new("day_sensor_seen");
/// Schema 6 and 7: (day, sensor, session hash, ts, event hash) → (), one
/// row per event counted, and with `ts = i64::MIN` and a name hash (0 for
/// the session itself) per session and session × name pair counted.
/// Emptied by the migration to 8 (into `day_sensor_seen`); kept so that
/// backups of older schemas restore.
pub const DAY_SENSOR_EVENT: TableDefinition<(i64, u64, u64, i64, u64), ()> =
    TableDefinition::new("day_sensor_event");
/// Schema ≤ 5: (day, sensor, session hash, name hash) → (). Emptied by the
/// migration to 6 (its keys moved to `day_sensor_event`, and with the
/// migration to 8 to `day_sensor_seen`); kept so that backups of older
/// schemas restore.
pub const DAY_SENSOR_SESSION: TableDefinition<(i64, u64, u64, u64), ()> =
    TableDefinition::new("day_sensor_session");

/// Keyed hash of an API key → key record.
pub const KEYHASH_APIKEY: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("keyhash_apikey");
/// API key id → keyed hash (for revocation by id).
pub const KEYID_KEYHASH: TableDefinition<u64, [u8; 32]> = TableDefinition::new("keyid_keyhash");
/// (key id, day, bucket) → count: the only trace lookups leave.
pub const KEYDAY_USAGE: TableDefinition<(u64, i64, u8), u64> = TableDefinition::new("keyday_usage");

/// (network start, prefix length in the u128 space) → whitelist entry.
pub const NET_WHITELIST: TableDefinition<(u128, u8), &[u8]> = TableDefinition::new("net_whitelist");

/// Set name → named never-block range set (`store::allowlists`).
pub const SETNAME_ALLOWLIST: TableDefinition<&str, &[u8]> =
    TableDefinition::new("setname_allowlist");

/// (network start, prefix length in the u128 space) → (): the imported Tor exit list.
pub const NET_TOREXIT: TableDefinition<(u128, u8), ()> = TableDefinition::new("net_torexit");

/// Username seen in attacks → statistics.
pub const USERNAME_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("username_stats");
/// (expiry day, username) → ().
pub const DAY_USERNAME_EXPIRY: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("day_username_expiry");
/// E-mail address seen in attacks → statistics.
pub const EMAIL_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("email_stats");
/// (expiry day, e-mail) → ().
pub const DAY_EMAIL_EXPIRY: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("day_email_expiry");

/// Account id → versioned account record.
pub const ACCOUNTID_ACCOUNT: TableDefinition<u64, &[u8]> =
    TableDefinition::new("accountid_account");
/// Lower-cased username → account id.
pub const USERNAME_ACCOUNTID: TableDefinition<&str, u64> =
    TableDefinition::new("username_accountid");
/// Lower-cased e-mail address → account id.
pub const EMAIL_ACCOUNTID: TableDefinition<&str, u64> = TableDefinition::new("email_accountid");
/// Keyed hash of an invitation code → invitation.
pub const INVITEHASH_INVITE: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("invitehash_invite");
/// (account, session family) → session record.
pub const ACCOUNTFAMILY_SESSION: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("accountfamily_session");
/// Keyed hash of a refresh token (current or rotated) → (account, family).
pub const REFRESHHASH_FAMILY: TableDefinition<[u8; 32], (u64, u64)> =
    TableDefinition::new("refreshhash_family");
/// (account, family, refresh-token hash) → (): a family's hashes, for deletion.
pub const FAMILY_REFRESHHASH: TableDefinition<(u64, u64, [u8; 32]), ()> =
    TableDefinition::new("family_refreshhash");
/// (expiry day, account, family) → (): the TTL bucket of each session.
pub const DAY_SESSION_EXPIRY: TableDefinition<(i64, u64, u64), ()> =
    TableDefinition::new("day_session_expiry");
/// Alert id → alert record.
pub const ALERTID_ALERT: TableDefinition<u64, &[u8]> = TableDefinition::new("alertid_alert");
/// (account, alert id) → (): an account's alerts.
pub const ACCOUNTID_ALERTID: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("accountid_alertid");
/// (range alert id, IP) → (): the distinct IPs a range alert matched.
pub const ALERTID_IP: TableDefinition<(u64, u128), ()> = TableDefinition::new("alertid_ip");
/// Delivery id → delivery record (the outbox, kept as the delivery log).
pub const DELIVERYID_DELIVERY: TableDefinition<u64, &[u8]> =
    TableDefinition::new("deliveryid_delivery");
/// (next attempt, delivery id) → (): deliveries still to be made.
pub const DUE_DELIVERYID: TableDefinition<(i64, u64), ()> = TableDefinition::new("due_deliveryid");
/// (account, delivery id) → (): an account's delivery log.
pub const ACCOUNTID_DELIVERYID: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("accountid_deliveryid");

/// Listing correction id → versioned correction record (history for admins).
pub const CORRECTIONID_CORRECTION: TableDefinition<u64, &[u8]> =
    TableDefinition::new("correctionid_correction");
/// IP → id of its granted correction: the IPs kept out of public answers.
pub const IP_CORRECTIONID: TableDefinition<u128, u64> = TableDefinition::new("ip_correctionid");
/// Account id → privacy state (restricted, objected, erased at).
pub const ACCOUNTID_PRIVACY: TableDefinition<u64, &[u8]> =
    TableDefinition::new("accountid_privacy");
/// (purge day, account) → (): erased accounts whose remaining data is purged that day.
pub const DAY_ACCOUNTPURGE: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("day_accountpurge");
/// Data-subject request id → request record with received/answered times.
pub const REQUESTID_GDPRREQUEST: TableDefinition<u64, &[u8]> =
    TableDefinition::new("requestid_gdprrequest");
/// (day, id) → consent decision (granted/denied with its time).
pub const DAYID_CONSENT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("dayid_consent");
/// (day, id) → first-party analytics event (only with consent).
pub const DAYID_ANALYTICS: TableDefinition<(i64, u64), &[u8]> =
    TableDefinition::new("dayid_analytics");
/// (day, id) → anonymous page view (visitor hash, path, referrer domain, country).
pub const DAYID_PAGEVIEW: TableDefinition<(i64, u64), &[u8]> =
    TableDefinition::new("dayid_pageview");
/// (day, key id, bucket) → (): the TTL index of `keyday_usage`.
pub const DAY_KEYUSAGE: TableDefinition<(i64, u64, u8), ()> = TableDefinition::new("day_keyusage");
/// Notice id → a breach/policy notice and who was notified when.
pub const NOTICEID_NOTICE: TableDefinition<u64, &[u8]> = TableDefinition::new("noticeid_notice");

/// Key id → JWT signing-key seed (the current key and the previous one).
pub const KID_JWTKEY: TableDefinition<u32, &[u8]> = TableDefinition::new("kid_jwtkey");

/// Sequence number → admin audit entry (P60).
pub const SEQ_AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("seq_audit");

/// Creates every table so that read transactions never meet a missing one.
pub fn create_all(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(META)?;
    txn.open_table(IP_INDICATOR)?;
    txn.open_table(DAY_IP_EXPIRY)?;
    txn.open_table(MODSEQ_IP)?;
    txn.open_table(IP_FEEDPOS)?;
    txn.open_table(STIXID_IP)?;
    txn.open_table(IP_REPEAT)?;
    txn.open_table(DAY_IP_REPEATPURGE)?;
    txn.open_table(DAYID_REPORT)?;
    txn.open_table(IPDAYID_REPORT)?;
    txn.open_table(SENSORID_SENSOR)?;
    txn.open_table(TOKENHASH_SENSORID)?;
    txn.open_table(DAY_SENSOR_EVENT)?;
    txn.open_table(DAY_SENSOR_SESSION)?;
    txn.open_table(DAY_SENSOR_SEEN)?;
    txn.open_table(KEYHASH_APIKEY)?;
    txn.open_table(KEYID_KEYHASH)?;
    txn.open_table(KEYDAY_USAGE)?;
    txn.open_table(NET_WHITELIST)?;
    txn.open_table(SETNAME_ALLOWLIST)?;
    txn.open_table(NET_TOREXIT)?;
    txn.open_table(USERNAME_STATS)?;
    txn.open_table(DAY_USERNAME_EXPIRY)?;
    txn.open_table(EMAIL_STATS)?;
    txn.open_table(DAY_EMAIL_EXPIRY)?;
    txn.open_table(ACCOUNTID_ACCOUNT)?;
    txn.open_table(USERNAME_ACCOUNTID)?;
    txn.open_table(EMAIL_ACCOUNTID)?;
    txn.open_table(INVITEHASH_INVITE)?;
    txn.open_table(ACCOUNTFAMILY_SESSION)?;
    txn.open_table(REFRESHHASH_FAMILY)?;
    txn.open_table(FAMILY_REFRESHHASH)?;
    txn.open_table(DAY_SESSION_EXPIRY)?;
    txn.open_table(ALERTID_ALERT)?;
    txn.open_table(ACCOUNTID_ALERTID)?;
    txn.open_table(ALERTID_IP)?;
    txn.open_table(DELIVERYID_DELIVERY)?;
    txn.open_table(DUE_DELIVERYID)?;
    txn.open_table(ACCOUNTID_DELIVERYID)?;
    txn.open_table(CORRECTIONID_CORRECTION)?;
    txn.open_table(IP_CORRECTIONID)?;
    txn.open_table(ACCOUNTID_PRIVACY)?;
    txn.open_table(DAY_ACCOUNTPURGE)?;
    txn.open_table(REQUESTID_GDPRREQUEST)?;
    txn.open_table(DAYID_CONSENT)?;
    txn.open_table(DAYID_ANALYTICS)?;
    txn.open_table(DAYID_PAGEVIEW)?;
    txn.open_table(DAY_KEYUSAGE)?;
    txn.open_table(NOTICEID_NOTICE)?;
    txn.open_table(SEQ_AUDIT)?;
    txn.open_table(KID_JWTKEY)?;
    Ok(())
}

/// Something done to every table with its key and value types, for code
/// that handles all tables alike (backup, restore, inventory).
pub trait TableVisitor {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<()>;
}

/// Calls `v` with every table definition, in `ALL_NAMES` order.
pub fn visit_all(v: &mut impl TableVisitor) -> Result<()> {
    v.visit(SEQ_AUDIT)?;
    v.visit(META)?;
    v.visit(IP_INDICATOR)?;
    v.visit(DAY_IP_EXPIRY)?;
    v.visit(MODSEQ_IP)?;
    v.visit(IP_FEEDPOS)?;
    v.visit(STIXID_IP)?;
    v.visit(IP_REPEAT)?;
    v.visit(DAY_IP_REPEATPURGE)?;
    v.visit(DAYID_REPORT)?;
    v.visit(IPDAYID_REPORT)?;
    v.visit(SENSORID_SENSOR)?;
    v.visit(TOKENHASH_SENSORID)?;
    v.visit(DAY_SENSOR_EVENT)?;
    v.visit(DAY_SENSOR_SESSION)?;
    v.visit(DAY_SENSOR_SEEN)?;
    v.visit(KEYHASH_APIKEY)?;
    v.visit(KEYID_KEYHASH)?;
    v.visit(KEYDAY_USAGE)?;
    v.visit(NET_WHITELIST)?;
    v.visit(SETNAME_ALLOWLIST)?;
    v.visit(NET_TOREXIT)?;
    v.visit(USERNAME_STATS)?;
    v.visit(DAY_USERNAME_EXPIRY)?;
    v.visit(EMAIL_STATS)?;
    v.visit(DAY_EMAIL_EXPIRY)?;
    v.visit(ACCOUNTID_ACCOUNT)?;
    v.visit(USERNAME_ACCOUNTID)?;
    v.visit(EMAIL_ACCOUNTID)?;
    v.visit(INVITEHASH_INVITE)?;
    v.visit(ACCOUNTFAMILY_SESSION)?;
    v.visit(REFRESHHASH_FAMILY)?;
    v.visit(FAMILY_REFRESHHASH)?;
    v.visit(DAY_SESSION_EXPIRY)?;
    v.visit(ALERTID_ALERT)?;
    v.visit(ACCOUNTID_ALERTID)?;
    v.visit(ALERTID_IP)?;
    v.visit(DELIVERYID_DELIVERY)?;
    v.visit(DUE_DELIVERYID)?;
    v.visit(ACCOUNTID_DELIVERYID)?;
    v.visit(CORRECTIONID_CORRECTION)?;
    v.visit(IP_CORRECTIONID)?;
    v.visit(ACCOUNTID_PRIVACY)?;
    v.visit(DAY_ACCOUNTPURGE)?;
    v.visit(REQUESTID_GDPRREQUEST)?;
    v.visit(DAYID_CONSENT)?;
    v.visit(DAYID_ANALYTICS)?;
    v.visit(DAYID_PAGEVIEW)?;
    v.visit(DAY_KEYUSAGE)?;
    v.visit(NOTICEID_NOTICE)?;
    v.visit(KID_JWTKEY)?;
    Ok(())
}

/// Every table's name, for tests that inspect the whole database.
pub const ALL_NAMES: &[&str] = &[
    "seq_audit",
    "meta",
    "ip_indicator",
    "day_ip_expiry",
    "modseq_ip",
    "ip_feedpos",
    "stixid_ip",
    "ip_repeat",
    "day_ip_repeatpurge",
    "dayid_report",
    "ipdayid_report",
    "sensorid_sensor",
    "tokenhash_sensorid",
    "day_sensor_event",
    "day_sensor_session",
    "day_sensor_seen",
    "keyhash_apikey",
    "keyid_keyhash",
    "keyday_usage",
    "net_whitelist",
    "setname_allowlist",
    "net_torexit",
    "username_stats",
    "day_username_expiry",
    "email_stats",
    "day_email_expiry",
    "accountid_account",
    "username_accountid",
    "email_accountid",
    "invitehash_invite",
    "accountfamily_session",
    "refreshhash_family",
    "family_refreshhash",
    "day_session_expiry",
    "alertid_alert",
    "accountid_alertid",
    "alertid_ip",
    "deliveryid_delivery",
    "due_deliveryid",
    "accountid_deliveryid",
    "correctionid_correction",
    "ip_correctionid",
    "accountid_privacy",
    "day_accountpurge",
    "requestid_gdprrequest",
    "dayid_consent",
    "dayid_analytics",
    "dayid_pageview",
    "day_keyusage",
    "noticeid_notice",
    "kid_jwtkey",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Backup, restore and the inventory see a table only through
    /// `visit_all`: one left out is silently missing from every backup.
    #[test]
    fn every_table_is_created_and_visited_in_all_names_order() {
        struct Names(Vec<String>);
        impl TableVisitor for Names {
            fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
                &mut self,
                def: TableDefinition<K, V>,
            ) -> Result<()> {
                self.0.push(redb::TableHandle::name(&def).to_owned());
                Ok(())
            }
        }
        let mut visited = Names(Vec::new());
        visit_all(&mut visited).unwrap();
        assert_eq!(visited.0, ALL_NAMES);
        let (_dir, store) = crate::store::temp_store();
        let mut created = store
            .write_blocking(|txn| {
                Ok(txn
                    .list_tables()?
                    .map(|t| redb::TableHandle::name(&t).to_owned())
                    .collect::<Vec<_>>())
            })
            .unwrap();
        created.sort();
        let mut all = ALL_NAMES.to_vec();
        all.sort_unstable();
        assert_eq!(created, all);
    }
}
