//! Report-comment scrubbing: personal data and secrets in free text are
//! replaced by typed placeholders before a comment is stored anywhere.
//!
//! The rules and their order are documented in `docs/scrubbing.md`. Every
//! rule is a `regex` (finite automata, linear in the input), so a megabyte
//! line is scrubbed in bounded time; no rule can produce text another rule
//! matches, so scrubbing is idempotent.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::{Captures, Regex, RegexBuilder};

use super::IpKey;

/// Compiled size limit for an operator pattern, so one cannot make start-up
/// or scrubbing arbitrarily slow.
const EXTRA_SIZE_LIMIT: usize = 1 << 20;
/// Longest operator pattern accepted, in bytes.
pub const MAX_EXTRA_PATTERN_LEN: usize = 1000;
/// Rounds of rules applied at most (each is linear in the text).
const MAX_ROUNDS: usize = 4;
/// Shortest run of token characters the entropy rule looks at.
const SECRET_MIN_LEN: usize = 20;
/// Shannon entropy (bits per character) at or above which such a run is a secret.
const SECRET_MIN_BITS: f64 = 3.5;

/// The scrubbing rules, compiled once at start-up.
#[derive(Clone, Debug)]
pub struct Scrubber {
    extra: Vec<Regex>,
    jwt: Regex,
    cookie_header: Regex,
    session_param: Regex,
    auth_scheme: Regex,
    api_key: Regex,
    url_query: Regex,
    secret_param: Regex,
    email: Regex,
    ipv6: Regex,
    ipv4: Regex,
    token_run: Regex,
}

/// Built-in rules are constants; a failure to compile one is a bug caught by
/// every test, so it is reported rather than unwrapped.
fn rule(re: &str) -> Regex {
    match Regex::new(re) {
        Ok(r) => r,
        Err(e) => panic!("built-in scrub rule {re:?} does not compile: {e}"),
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Scrubber {
    fn builtin() -> Self {
        Self {
            extra: Vec::new(),
            jwt: rule(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
            cookie_header: rule(r#"(?i)\b(set-cookie|cookie)[ \t]*:[ \t]*[^\r\n"]*"#),
            session_param: rule(
                r#"(?i)\b(session|sessionid|session_id|sess|sid|phpsessid|jsessionid|asp\.net_sessionid|connect\.sid|[a-z0-9_]*_session|csrftoken|csrf_token|xsrf-token|remember_token|remember_me)=(<[^>\s]*>|[^\s;&,"'<>]+)"#,
            ),
            auth_scheme: rule(r"(?i)\b(bearer|basic|digest|token)[ \t]+([A-Za-z0-9._~+/=-]{8,})"),
            api_key: rule(
                r"\b(?:(?:sk|pk|rk)_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}|(?:sk|pk|rk)_[A-Za-z0-9]{16,}|(?:ghp|gho|ghu|ghs|ghr|glpat|xox[abprs])[_-][A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16})\b",
            ),
            url_query: rule(
                r#"((?:[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#"'<>]*)?/[^\s?#"'<>]*|[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#"'<>]+)\?[^\s#"'<>]+"#,
            ),
            secret_param: rule(
                r#"(?i)\b(password|passwd|pass|pwd|passphrase|secret|client_secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token|token|otp|reset[_-]?code|reset[_-]?token)([ \t]*[=:][ \t]*)("[^"\r\n]*"|'[^'\r\n]*'|[^\s&;,"'<>]+)"#,
            ),
            email: rule(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)+"),
            ipv6: rule(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"),
            ipv4: rule(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"),
            token_run: rule(r"[A-Za-z0-9+/=_-]{20,}"),
        }
    }

    /// The built-in rules plus operator patterns (each replaced by
    /// `[redacted]`); `Err` names the pattern that does not compile.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let mut s = Self::builtin();
        for p in extra {
            if p.is_empty() {
                return Err("an empty scrub pattern would match everywhere".into());
            }
            if p.len() > MAX_EXTRA_PATTERN_LEN {
                return Err(format!(
                    "scrub pattern longer than {MAX_EXTRA_PATTERN_LEN} bytes"
                ));
            }
            let re = RegexBuilder::new(p)
                .size_limit(EXTRA_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("scrub pattern {p:?} is not a valid regex: {e}"))?;
            if re.is_match("") {
                return Err(format!("scrub pattern {p:?} matches the empty string"));
            }
            s.extra.push(re);
        }
        Ok(s)
    }

    /// `text` with personal data and secrets replaced by placeholders. The
    /// reported address (`keep`) stays; every other IP becomes `[ip]`.
    ///
    /// A replacement can create a word boundary a rule needs (`1.2.3.4Cookie:`
    /// becomes `[ip]Cookie:`), so rounds repeat until nothing changes, at
    /// most `MAX_ROUNDS` times.
    pub fn scrub(&self, text: &str, keep: Option<IpKey>) -> String {
        // Most comments hold nothing to scrub: one round finds that.
        let mut t = text.to_owned();
        for _ in 0..MAX_ROUNDS {
            let next = self.round(&t, keep);
            if next == t {
                break;
            }
            t = next;
        }
        t
    }

    fn round(&self, text: &str, keep: Option<IpKey>) -> String {
        let mut t = text.to_owned();
        for re in &self.extra {
            apply(&mut t, re, "[redacted]");
        }
        apply(&mut t, &self.jwt, "[jwt]");
        apply(&mut t, &self.cookie_header, |c: &Captures<'_>| {
            format!("{}: [cookie]", &c[1])
        });
        apply(&mut t, &self.session_param, "$1=[cookie]");
        apply(&mut t, &self.auth_scheme, |c: &Captures<'_>| {
            let (scheme, value) = (&c[1], &c[2]);
            let credential = scheme.eq_ignore_ascii_case("bearer")
                || value
                    .bytes()
                    .any(|b| b.is_ascii_digit() || b"=+/".contains(&b));
            if credential {
                format!("{scheme} [token]")
            } else {
                c[0].to_owned()
            }
        });
        apply(&mut t, &self.api_key, "[token]");
        apply(&mut t, &self.url_query, "$1?[url-query]");
        apply(&mut t, &self.secret_param, |c: &Captures<'_>| {
            let name = &c[1];
            let lower = name.to_ascii_lowercase();
            let kind = if lower.contains("token") || lower.contains("key") {
                "[token]"
            } else {
                "[secret]"
            };
            format!("{name}{}{kind}", &c[2])
        });
        apply(&mut t, &self.email, "[email]");
        apply(&mut t, &self.ipv6, |c: &Captures<'_>| ipv6(&c[0], keep));
        apply(&mut t, &self.ipv4, |c: &Captures<'_>| {
            let m = &c[0];
            match m.parse::<Ipv4Addr>() {
                Ok(a) if keep != Some(IpKey::from_ip(a.into())) => "[ip]".to_owned(),
                _ => m.to_owned(),
            }
        });
        apply(&mut t, &self.token_run, |c: &Captures<'_>| {
            let m = &c[0];
            if looks_random(m) {
                "[secret]".to_owned()
            } else {
                m.to_owned()
            }
        });
        t
    }
}

/// Applies one rule, allocating only when it matched.
fn apply<R: regex::Replacer>(t: &mut String, re: &Regex, rep: R) {
    let replaced = re.replace_all(t, rep);
    if let Cow::Owned(s) = replaced {
        *t = s;
    }
}

/// An IPv6 candidate (hex, colons and dots with at least two colons): the
/// longest address inside it becomes `[ip]`; text that is no address (a
/// time of day, a MAC address) stays.
fn ipv6(m: &str, keep: Option<IpKey>) -> String {
    let is_other = |s: &str| match s.parse::<Ipv6Addr>() {
        Ok(a) => keep != Some(IpKey::from_ip(a.into())),
        Err(_) => false,
    };
    let bare = m.trim_end_matches(['.', ':']);
    let bare = bare.trim_start_matches('.');
    if bare.parse::<Ipv6Addr>().is_ok() {
        let start = m.len() - m.trim_start_matches('.').len();
        let end = start + bare.len();
        if is_other(bare) {
            return format!("{}[ip]{}", &m[..start], &m[end..]);
        }
        return m.to_owned();
    }
    // `addr:port` without brackets and similar: cut at the last colon.
    if let Some((head, tail)) = bare.rsplit_once(':')
        && head.parse::<Ipv6Addr>().is_ok()
        && tail.bytes().all(|b| b.is_ascii_digit())
        && is_other(head)
    {
        let start = m.len() - m.trim_start_matches('.').len();
        return format!("{}[ip]{}", &m[..start], &m[start + head.len()..]);
    }
    m.to_owned()
}

/// Whether a run of token characters looks like a generated secret: long,
/// mixing letters and digits, and close to uniformly random.
pub fn looks_random(s: &str) -> bool {
    if s.len() < SECRET_MIN_LEN {
        return false;
    }
    let b = s.as_bytes();
    let has_digit = b.iter().any(u8::is_ascii_digit);
    let has_alpha = b.iter().any(u8::is_ascii_alphabetic);
    if !has_digit || !has_alpha {
        return false;
    }
    shannon_bits(b) >= SECRET_MIN_BITS
}

fn shannon_bits(b: &[u8]) -> f64 {
    let mut counts = [0_u32; 256];
    for &c in b {
        counts[usize::from(c)] += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> String {
        Scrubber::default().scrub(text, Some("203.0.113.9".parse().unwrap()))
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            s("mail from <bob.smith@example.org>"),
            "mail from <[email]>"
        );
        assert_eq!(
            s("GET /reset?token=abc&user=x HTTP/1.1"),
            "GET /reset?[url-query] HTTP/1.1"
        );
        assert_eq!(
            s("Authorization: Bearer abc.def-ghi123"),
            "Authorization: Bearer [token]"
        );
        assert_eq!(s("key sk_free_8fJ2kL9qPzX3"), "key [token]");
        assert_eq!(
            s("t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_x-1"),
            "t=[jwt]"
        );
        assert_eq!(s("Cookie: sid=1; theme=dark"), "Cookie: [cookie]");
        assert_eq!(s("PHPSESSID=9f8e7d6c;"), "PHPSESSID=[cookie];");
        assert_eq!(
            s("from 203.0.113.9 via 198.51.100.7"),
            "from 203.0.113.9 via [ip]"
        );
        assert_eq!(s("from 2001:db8::1 port 22"), "from [ip] port 22");
        assert_eq!(s("[2001:db8::1]:22"), "[[ip]]:22");
        assert_eq!(
            s("at 10:11:12 mac 00:11:22:33:44:55"),
            "at 10:11:12 mac 00:11:22:33:44:55"
        );
        assert_eq!(s("password=hunter2"), "password=[secret]");
        assert_eq!(s("Q2hhbmdlTWUhSXRzQVNlY3JldDEyMw9z"), "[secret]");
        assert_eq!(s("plain words stay put"), "plain words stay put");
        assert_eq!(
            s("Basic authentication failed"),
            "Basic authentication failed"
        );
        assert_eq!(s("version 1.2.3 build 2024"), "version 1.2.3 build 2024");
    }

    #[test]
    fn keeps_the_reported_address_in_any_spelling() {
        let sc = Scrubber::default();
        let v6: IpKey = "2001:db8::5".parse().unwrap();
        assert_eq!(
            sc.scrub("2001:0db8:0:0::5 and 2001:db8::6", Some(v6)),
            "2001:0db8:0:0::5 and [ip]"
        );
        assert_eq!(sc.scrub("1.2.3.4", None), "[ip]");
    }

    #[test]
    fn a_comment_that_is_only_a_secret() {
        assert_eq!(s("sk_live_4eC39HqLyjWDarjtT1zdp7dc"), "[token]");
        assert_eq!(s("eyJhbGciOiJub25lIn0.eyJ4IjoxfQ."), "[jwt]");
        assert_eq!(s("dGhpcyBpcyBhIHNlY3JldCB2YWx1ZTEy"), "[secret]");
    }

    #[test]
    fn operator_patterns() {
        let sc = Scrubber::new(&["(?i)customer-\\d+".into()]).unwrap();
        assert_eq!(
            sc.scrub("id Customer-4411 here", None),
            "id [redacted] here"
        );
        assert!(
            Scrubber::new(&["(".into()])
                .unwrap_err()
                .contains("not a valid regex")
        );
        assert!(
            Scrubber::new(&["a*".into()])
                .unwrap_err()
                .contains("empty string")
        );
        assert!(Scrubber::new(&[String::new()]).is_err());
        assert!(Scrubber::new(&["x".repeat(2000)]).is_err());
    }

    #[test]
    fn megabyte_lines_in_bounded_time() {
        let sc = Scrubber::default();
        for unit in [
            "a@b.c ",
            "1.2.3.4 ",
            "aB3",
            ":",
            "/x?",
            "eyJab.",
            "password=",
            "x",
        ] {
            let line = unit.repeat((1 << 20) / unit.len());
            let t0 = std::time::Instant::now();
            let out = sc.scrub(&line, None);
            // Linear rules take well under a second per megabyte; a
            // quadratic one would take hours.
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(15),
                "{unit:?}: {:?}",
                t0.elapsed()
            );
            assert!(out.len() <= 3 * line.len());
        }
    }

    fn email_shaped() -> Regex {
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9-]+").unwrap()
    }

    fn jwt_shaped() -> Regex {
        Regex::new(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.").unwrap()
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("bob".to_owned()),
            Just("@".to_owned()),
            Just(".".to_owned()),
            Just("example.com".to_owned()),
            Just("eyJ".to_owned()),
            Just("eyJhbGciOiJIUzI1NiJ9".to_owned()),
            Just("1.2.3.4".to_owned()),
            Just("::".to_owned()),
            Just(":".to_owned()),
            Just("/p?".to_owned()),
            Just("=".to_owned()),
            Just("Cookie: ".to_owned()),
            Just("password".to_owned()),
            Just("sk_".to_owned()),
            Just("[email]".to_owned()),
            Just("[ip]".to_owned()),
            Just(" ".to_owned()),
            Just("\"".to_owned()),
            "[a-zA-Z0-9_+-]{1,12}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn nothing_shaped_like_an_email_or_jwt_survives(parts in proptest::collection::vec(fragment(), 0..24)) {
            let input = parts.concat();
            let out = Scrubber::default().scrub(&input, None);
            prop_assert!(!email_shaped().is_match(&out), "{input:?} -> {out:?}");
            prop_assert!(!jwt_shaped().is_match(&out), "{input:?} -> {out:?}");
        }

        #[test]
        fn idempotent(parts in proptest::collection::vec(fragment(), 0..24), keep in proptest::option::of(any::<u32>())) {
            let keep = keep.map(|a| IpKey::from_ip(Ipv4Addr::from(a).into()));
            let sc = Scrubber::default();
            let once = sc.scrub(&parts.concat(), keep);
            prop_assert_eq!(sc.scrub(&once, keep), once.clone());
        }

        #[test]
        fn never_panics(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let sc = Scrubber::default();
            let _ = sc.scrub(&text, None);
            let _ = sc.scrub(&String::from_utf8_lossy(&bytes), None);
        }
    }
}
