//! Pure domain types shared by every layer: IP keys, time and the clock.

pub mod ip;
pub mod time;

pub use ip::{IpKey, LogIpMode};
pub use time::{Clock, UnixMillis};
