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
/// (creation day, report id) → raw report; a day is dropped as a whole.
pub const DAYID_REPORT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("dayid_report");

/// Sensor id → sensor record.
pub const SENSORID_SENSOR: TableDefinition<u64, &[u8]> = TableDefinition::new("sensorid_sensor");
/// Keyed hash of a sensor token → sensor id.
pub const TOKENHASH_SENSORID: TableDefinition<[u8; 32], u64> =
    TableDefinition::new("tokenhash_sensorid");
/// (day, sensor, session hash, ts, event hash) → (): events already counted.
pub const DAY_SENSOR_EVENT: TableDefinition<(i64, u64, u64, i64, u64), ()> =
    TableDefinition::new("day_sensor_event");
/// (day, sensor, session hash, name hash) → (): sessions (and session × name pairs) already counted.
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

/// Creates every table so that read transactions never meet a missing one.
pub fn create_all(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(META)?;
    txn.open_table(IP_INDICATOR)?;
    txn.open_table(DAY_IP_EXPIRY)?;
    txn.open_table(DAYID_REPORT)?;
    txn.open_table(SENSORID_SENSOR)?;
    txn.open_table(TOKENHASH_SENSORID)?;
    txn.open_table(DAY_SENSOR_EVENT)?;
    txn.open_table(DAY_SENSOR_SESSION)?;
    txn.open_table(KEYHASH_APIKEY)?;
    txn.open_table(KEYID_KEYHASH)?;
    txn.open_table(KEYDAY_USAGE)?;
    txn.open_table(NET_WHITELIST)?;
    txn.open_table(NET_TOREXIT)?;
    txn.open_table(USERNAME_STATS)?;
    txn.open_table(DAY_USERNAME_EXPIRY)?;
    txn.open_table(EMAIL_STATS)?;
    txn.open_table(DAY_EMAIL_EXPIRY)?;
    Ok(())
}

/// Every table's name, for tests that inspect the whole database.
pub const ALL_NAMES: &[&str] = &[
    "meta",
    "ip_indicator",
    "day_ip_expiry",
    "dayid_report",
    "sensorid_sensor",
    "tokenhash_sensorid",
    "day_sensor_event",
    "day_sensor_session",
    "keyhash_apikey",
    "keyid_keyhash",
    "keyday_usage",
    "net_whitelist",
    "net_torexit",
    "username_stats",
    "day_username_expiry",
    "email_stats",
    "day_email_expiry",
];
