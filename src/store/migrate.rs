//! Schema versions and the migration entry point. Each step migrates from
//! version `n` to `n + 1` inside the opening write transaction, so a
//! migration either completes or leaves the file untouched.

use redb::{TableHandle, WriteTransaction};

use super::meta;
use super::{Error, Result};

/// The schema this binary writes.
pub const CURRENT: u32 = 8;

type Step = fn(&WriteTransaction) -> Result<()>;

/// `STEPS[i]` migrates from version `i + 1` to `i + 2`.
const STEPS: &[Step] = &[
    // 1 → 2: raw reports gain an index by IP.
    super::reports::build_ip_index,
    // 2 → 3: the TAXII feed order.
    feed_order,
    // 3 → 4: usage counters gain their TTL index.
    usage_day_index,
    // 4 → 5: JWT signing keys get ids and rotate.
    jwt_key_ring,
    // 5 → 6: session de-duplication keys move in with their events.
    super::sensors::move_session_keys,
    // 6 → 7: feed positions move into the indicator records.
    super::feed::fold_positions,
    // 7 → 8: de-duplication keys become one fingerprint row per session and day.
    super::sensors::fold_dedup_keys,
];

/// Indicators stored before version 3 enter the TAXII feed dated by their
/// last evidence.
fn feed_order(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    super::feed::backfill(txn)?;
    Ok(())
}

/// Usage counters stored before version 4 enter the usage TTL index.
fn usage_day_index(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    super::usage::build_day_index(txn)
}

/// Version 4 signed access tokens with one key derived from the secret key;
/// it enters the key ring as kid 0, so tokens issued before the upgrade stay
/// valid until they expire while new ones are signed with a rotated key.
fn jwt_key_ring(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    super::jwtkeys::register_legacy(txn)
}

/// Refuses a redb file written by another program: it has tables but no `meta`.
pub fn refuse_foreign(txn: &WriteTransaction) -> Result<()> {
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    if !names.is_empty() && !names.iter().any(|n| n == super::tables::META.name()) {
        return Err(Error::Corrupt(
            "this redb file was not written by sikker (no meta table)".into(),
        ));
    }
    Ok(())
}

/// Brings the schema to `CURRENT`; returns the version migrated from, if any.
pub fn run(txn: &WriteTransaction, created: bool) -> Result<Option<u32>> {
    let (found, empty) = {
        let t = txn.open_table(super::tables::META)?;
        (
            meta::read_version(&t)?,
            redb::ReadableTableMetadata::is_empty(&t)?,
        )
    };
    // A file whose first commit never happened (crash right after creation)
    // is as good as new.
    let found = match found {
        None if created || empty => {
            meta::set_schema_version(txn, CURRENT)?;
            return Ok(None);
        }
        None => {
            return Err(Error::Corrupt(
                "database has no schema version; it was not written by sikker".into(),
            ));
        }
        Some(v) => v,
    };
    if found > CURRENT {
        return Err(Error::NewerSchema {
            found,
            supported: CURRENT,
        });
    }
    if found == CURRENT {
        return Ok(None);
    }
    if found == 0 {
        return Err(Error::Corrupt(
            "schema version 0 is not a sikker schema".into(),
        ));
    }
    for v in found..CURRENT {
        let idx = usize::try_from(v - 1).map_err(|_| Error::Corrupt("schema version".into()))?;
        let step = STEPS
            .get(idx)
            .ok_or_else(|| Error::Corrupt(format!("no migration from schema version {v}")))?;
        step(txn)?;
        meta::set_schema_version(txn, v + 1)?;
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_old_version_has_a_step() {
        assert_eq!(STEPS.len(), usize::try_from(CURRENT - 1).unwrap());
    }
}
