//! Account fields and their rules: exactly the data the privacy policy
//! names for an account (P01) — username, e-mail, first and last name,
//! country, account type, company and VAT ID — and nothing more.

use serde::{Deserialize, Serialize};

use super::country;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Individual,
    Company,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(()),
        }
    }
}

/// The profile a person gives (and may rectify).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country: String,
    pub account_type: AccountType,
    pub company: Option<String>,
    pub vat_id: Option<String>,
}

/// A field that failed its rule, with the reason in words.
pub type FieldError = (&'static str, String);

fn err(field: &'static str, reason: impl Into<String>) -> FieldError {
    (field, reason.into())
}

/// 3–32 characters: letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit. Compared case-insensitively; returned lower-cased.
pub fn username(s: &str) -> Result<String, FieldError> {
    let s = s.trim();
    let ok_len = (3..=32).contains(&s.chars().count());
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let ok_start = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_start {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(err(
            "username",
            "must be 3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

/// A practical e-mail check: one `@`, a local part of allowed characters,
/// a dotted domain of labels; at most 254 characters. Lower-cased.
pub fn email(s: &str) -> Result<String, FieldError> {
    let s = s.trim();
    let bad = || err("email", "is not a valid e-mail address");
    if s.len() > 254 {
        return Err(err("email", "must be at most 254 characters"));
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    if local_ok && domain_ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

fn name(field: &'static str, s: &str, required: bool) -> Result<Option<String>, FieldError> {
    let s = s.trim();
    if s.is_empty() {
        return if required {
            Err(err(field, "is required"))
        } else {
            Ok(None)
        };
    }
    if s.chars().count() > 100 {
        return Err(err(field, "must be at most 100 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(err(field, "must not contain control characters"));
    }
    Ok(Some(s.to_owned()))
}

/// Country as an assigned ISO 3166-1 alpha-2 code (any case in, upper out).
pub fn country_code(s: &str) -> Result<String, FieldError> {
    let c = s.trim().to_ascii_uppercase();
    if country::is_code(&c) {
        Ok(c)
    } else {
        Err(err(
            "country",
            "must be an ISO 3166-1 alpha-2 country code such as NO or DE",
        ))
    }
}

/// An EU-style VAT number: two-letter country prefix and 2–13 letters or
/// digits (spaces, dots and dashes are ignored). Stored normalised.
pub fn vat_id(s: &str) -> Result<Option<String>, FieldError> {
    let v: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-'))
        .collect::<String>()
        .to_ascii_uppercase();
    if v.is_empty() {
        return Ok(None);
    }
    let (prefix, rest) = v.split_at(v.len().min(2));
    let ok = prefix.len() == 2
        && prefix.bytes().all(|b| b.is_ascii_uppercase())
        && (2..=13).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        && rest.bytes().any(|b| b.is_ascii_digit());
    if ok {
        Ok(Some(v))
    } else {
        Err(err(
            "vat_id",
            "must be a VAT number with a two-letter country prefix, such as NO123456789 or DE123456789",
        ))
    }
}

/// Raw profile fields as submitted.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProfileInput {
    #[serde(default, alias = "firstName")]
    pub first_name: String,
    #[serde(default, alias = "lastName")]
    pub last_name: String,
    #[serde(default)]
    pub country: String,
    #[serde(default, alias = "accountType")]
    pub account_type: String,
    #[serde(default)]
    pub company: String,
    #[serde(default, alias = "vatId")]
    pub vat_id: String,
}

impl ProfileInput {
    pub fn validate(&self) -> Result<Profile, FieldError> {
        let account_type = match self.account_type.trim() {
            "" | "individual" => AccountType::Individual,
            "company" => AccountType::Company,
            _ => return Err(err("account_type", "must be individual or company")),
        };
        let company = name(
            "company",
            &self.company,
            account_type == AccountType::Company,
        )?;
        Ok(Profile {
            first_name: name("first_name", &self.first_name, true)?.unwrap_or_default(),
            last_name: name("last_name", &self.last_name, true)?.unwrap_or_default(),
            country: country_code(&self.country)?,
            account_type,
            company,
            vat_id: vat_id(&self.vat_id)?,
        })
    }
}

/// The most common passwords of public breach corpora, refused outright.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "123456789",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "trustno1",
    "letmein123",
    "welcome123",
    "changeme",
    "administrator",
    "qwerty123",
    "qwertyuiop123",
    "abc123456",
    "monkey123",
    "dragon123",
    "master123",
    "zaq12wsx",
    "asdfghjkl",
    "zxcvbnm123",
    "starwars",
    "whatever",
    "computer",
    "internet",
    "1234qwer",
    "q1w2e3r4t5",
    "michael1",
    "shadow123",
    "secret123",
];

/// Password rules (NIST SP 800-63B style): 10–128 characters, not a
/// well-known breached password, not one repeated or sequential run, and
/// not containing the username or the e-mail's local part.
pub fn password(pw: &str, username: &str, email: &str) -> Result<(), FieldError> {
    let n = pw.chars().count();
    if n < 10 {
        return Err(err("password", "must be at least 10 characters"));
    }
    if n > 128 {
        return Err(err("password", "must be at most 128 characters"));
    }
    let lower = pw.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(err(
            "password",
            "is a commonly used password; choose another",
        ));
    }
    let chars: Vec<char> = lower.chars().collect();
    let distinct = {
        let mut c = chars.clone();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    let sequential = chars.windows(2).all(|w| {
        let (a, b) = (w[0] as i64, w[1] as i64);
        b - a == 1 || a - b == 1
    });
    if distinct < 4 || sequential {
        return Err(err(
            "password",
            "is too predictable (repeated or sequential characters)",
        ));
    }
    let local = email.split('@').next().unwrap_or_default();
    for part in [username, local] {
        if part.len() >= 3 && lower.contains(&part.to_lowercase()) {
            return Err(err(
                "password",
                "must not contain your username or e-mail address",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_emails() {
        assert_eq!(username(" Alice.B ").unwrap(), "alice.b");
        for bad in ["ab", "_x1", "a b", "ä123", &"x".repeat(33)] {
            assert!(username(bad).is_err(), "{bad}");
        }
        assert_eq!(email("Ops+tag@Example.COM").unwrap(), "ops+tag@example.com");
        for bad in [
            "a@b",
            "@x.no",
            "a..b@x.no",
            "a@x..no",
            "a@-x.no",
            "a b@x.no",
            "a@x.n0",
            "noat",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(email(&format!("{}@x.no", "a".repeat(65))).is_err());
    }

    #[test]
    fn profile_rules() {
        let mut p = ProfileInput {
            first_name: "Kari".into(),
            last_name: "Nordmann".into(),
            country: "no".into(),
            ..ProfileInput::default()
        };
        let ok = p.validate().unwrap();
        assert_eq!(ok.country, "NO");
        assert_eq!(ok.account_type, AccountType::Individual);
        p.account_type = "company".into();
        assert_eq!(p.validate().unwrap_err().0, "company");
        p.company = "Acme AS".into();
        p.vat_id = "no 123 456 789".into();
        assert_eq!(p.validate().unwrap().vat_id.as_deref(), Some("NO123456789"));
        p.vat_id = "123456".into();
        assert_eq!(p.validate().unwrap_err().0, "vat_id");
        p.vat_id = String::new();
        p.country = "XX".into();
        assert_eq!(p.validate().unwrap_err().0, "country");
        p.country = "NO".into();
        p.account_type = "charity".into();
        assert_eq!(p.validate().unwrap_err().0, "account_type");
        p.account_type = String::new();
        p.first_name = "x".repeat(101);
        assert_eq!(p.validate().unwrap_err().0, "first_name");
    }

    #[test]
    fn password_rules() {
        let ok = "correct horse battery";
        assert!(password(ok, "kari", "kari@x.no").is_ok());
        for (bad, why) in [
            ("short", "at least 10"),
            ("Password123", "commonly used"),
            ("aaaaaaaaaaaa", "predictable"),
            ("abcdefghijk", "predictable"),
            ("kari-is-great-2026", "username"),
        ] {
            let e = password(bad, "kari", "kari@x.no").unwrap_err();
            assert!(e.1.contains(why), "{bad}: {}", e.1);
        }
        assert!(password(&"x1y2".repeat(33), "kari", "kari@x.no").is_err());
    }
}
