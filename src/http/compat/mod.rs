//! Compatibility surfaces that speak another service's API over sikker's data.

pub mod abuseipdb;
