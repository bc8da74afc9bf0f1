//! Record encoding: bincode 2 over serde, always wrapped in a versioned
//! enum (`V1(..)`, `V2(..)`) so old records stay readable after a change.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, config()).unwrap_or_default()
}

/// `encode` into a reused buffer (appended).
pub fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) {
    // Writing plain data into a Vec cannot fail.
    let _ = bincode::serde::encode_into_std_write(value, buf, config());
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    match bincode::serde::decode_from_slice(bytes, config()) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok(_) => Err(Error::Corrupt(format!("{what}: trailing bytes"))),
        Err(e) => Err(Error::Corrupt(format!("{what}: {e}"))),
    }
}

/// The first fields of a record, `T` being a shorter twin of its
/// versioned enum (the bytes after them are left unread).
pub fn decode_prefix<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    enum Rec {
        V1 { a: u32 },
        V2 { a: u32, b: String },
    }

    #[test]
    fn versioned_round_trip_and_garbage() {
        let v1 = encode(&Rec::V1 { a: 7 });
        let v2 = encode(&Rec::V2 {
            a: 7,
            b: "x".into(),
        });
        assert_eq!(decode::<Rec>("rec", &v1).unwrap(), Rec::V1 { a: 7 });
        assert_eq!(
            decode::<Rec>("rec", &v2).unwrap(),
            Rec::V2 {
                a: 7,
                b: "x".into()
            }
        );
        assert!(decode::<Rec>("rec", &[9, 9, 9]).is_err());
        let mut long = v1.clone();
        long.push(0);
        assert!(decode::<Rec>("rec", &long).is_err());
    }
}
