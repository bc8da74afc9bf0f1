//! Pure domain types shared by every layer: IP keys, time and the clock,
//! threat vocabulary, behaviour rules, the indicator aggregate and its score.

pub mod abuseipdb;
pub mod account;
pub mod behavior;
pub mod country;
pub mod indicator;
pub mod ip;
pub mod prefix;
pub mod repeat;
pub mod score;
pub mod scrub;
pub mod stix_id;
pub mod threat;
pub mod time;

pub use indicator::{EventKind, Indicator, SensorEvent};
pub use ip::{IpKey, LogIpMode};
pub use threat::{Category, Protocol, Severity};
pub use time::{Clock, UnixMillis};
