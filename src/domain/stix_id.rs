//! Deterministic STIX identifiers: UUIDv5 under sikker's own namespace, so
//! the same IP always has the same indicator id, across versions, restarts
//! and installations.

use uuid::Uuid;

use super::ip::IpKey;

/// sikker's UUIDv5 namespace for STIX identifiers (fixed forever: changing
/// it would give every published object a new identity).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0b9e_3a57_4c2e_9f5b_8e1d_4a7c_2b30);

/// The id (without the `indicator--` prefix) of the indicator for `ip`.
pub fn indicator_uuid(ip: IpKey) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("indicator:{ip}").as_bytes())
}

/// The id (without the `identity--` prefix) of the producer identity.
pub fn identity_uuid() -> Uuid {
    Uuid::new_v5(&NAMESPACE, b"identity:sikker")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_version_5_and_distinct() {
        let a: IpKey = "203.0.113.42".parse().unwrap();
        let b: IpKey = "2001:db8::1".parse().unwrap();
        assert_eq!(indicator_uuid(a), indicator_uuid(a));
        assert_ne!(indicator_uuid(a), indicator_uuid(b));
        assert_eq!(indicator_uuid(a).get_version_num(), 5);
        assert_eq!(identity_uuid().get_version_num(), 5);
        // Pinned (computed independently with Python's uuid.uuid5): a change
        // here would re-identify every published object.
        assert_eq!(
            indicator_uuid(a).to_string(),
            "7ddd1721-b326-546d-816f-baf7e0752889"
        );
        assert_eq!(
            identity_uuid().to_string(),
            "188adb81-97b3-52e7-820b-b15a1487de85"
        );
    }
}
