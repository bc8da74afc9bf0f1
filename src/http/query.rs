//! Query strings: decoded once (`+` is a space, as clients send forms), then
//! read by name with errors that name the parameter.

use super::error::HttpError;
use crate::service::Error;

#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of `name` (names match case-sensitively, as upstream).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, HttpError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
            Some(_) => Err(invalid(name, "must be true or false")),
        }
    }

    pub fn uint(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, HttpError> {
        match self.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| invalid(name, &format!("must be an integer from {min} to {max}"))),
        }
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn invalid(name: &str, reason: &str) -> HttpError {
    HttpError::Service(Error::invalid(name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let q = Query::parse(Some(
            "a=1&b=true&c=x,%20y,,z&d=2026-01-01T00:00:00+01:00&a=2",
        ));
        assert_eq!(q.get("a"), Some("2"));
        assert!(q.bool("b", false).unwrap());
        assert!(q.bool("zz", true).unwrap());
        assert_eq!(q.list("c"), ["x", "y", "z"]);
        assert_eq!(q.get("d"), Some("2026-01-01T00:00:00 01:00"));
        assert!(q.uint("a", 1, 1).is_err());
        assert_eq!(q.uint("a", 1, 5).unwrap(), Some(2));
        assert!(Query::parse(Some("b=maybe")).bool("b", false).is_err());
    }
}
