//! AbuseIPDB request parameters, merged from the query string and the body
//! (urlencoded form, multipart text parts or a JSON object; the body wins),
//! and read in the value forms real clients send (contract §1.4).

use bytes::Bytes;
use serde_json::Value;

use super::super::super::api::{is_json, media_type};
use super::super::super::dispatch::Ctx;
use super::super::super::error::HttpError;
use super::super::super::query::invalid;

/// Where a value came from; a higher source wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    Query,
    Body,
}

#[derive(Clone, Debug)]
enum Val {
    Text(String),
    Json(Value),
}

/// Every parameter of one request, plus uploaded files by part name.
#[derive(Debug, Default)]
pub struct Params {
    items: Vec<(String, Val, Source)>,
    pub files: Vec<(String, Bytes)>,
}

/// `categories[]` and `onlyCountries[0]` (PHP arrays) name `categories`
/// and `onlyCountries`.
fn base_name(k: &str) -> &str {
    match k.find('[') {
        Some(i) if k.ends_with(']') => &k[..i],
        _ => k,
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Params {
    pub(crate) fn push_form(&mut self, raw: &[u8], src: Source) {
        for (k, v) in form_urlencoded::parse(raw) {
            self.items
                .push((base_name(&k).to_owned(), Val::Text(v.into_owned()), src));
        }
    }

    /// Reads the query string and, by its media type, the body.
    pub async fn from_ctx(ctx: &Ctx<'_>) -> Result<Self, HttpError> {
        let mut p = Self::default();
        p.push_form(
            ctx.query.as_deref().unwrap_or_default().as_bytes(),
            Source::Query,
        );
        if ctx.body.is_empty() {
            return Ok(p);
        }
        let media = media_type(ctx);
        if is_json(&media) {
            let v: Value = serde_json::from_slice(&ctx.body)
                .map_err(|e| invalid("body", &format!("The body is not valid JSON: {e}")))?;
            let Value::Object(map) = v else {
                return Err(invalid("body", "The JSON body must be an object."));
            };
            for (k, v) in map {
                p.items
                    .push((base_name(&k).to_owned(), Val::Json(v), Source::Body));
            }
        } else if media == "multipart/form-data" {
            p.push_multipart(ctx).await?;
        } else {
            // urlencoded, or no/unknown type as curl and fail2ban send forms.
            p.push_form(&ctx.body, Source::Body);
        }
        Ok(p)
    }

    async fn push_multipart(&mut self, ctx: &Ctx<'_>) -> Result<(), HttpError> {
        let ct = ctx
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = multer::parse_boundary(ct)
            .map_err(|_| invalid("body", "The multipart body has no boundary."))?;
        let body = ctx.body.clone();
        let stream =
            futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return Err(invalid("body", &format!("Malformed multipart body: {e}")));
                }
            };
            let name = base_name(field.name().unwrap_or_default()).to_owned();
            let is_file = field.file_name().is_some();
            let data = field
                .bytes()
                .await
                .map_err(|e| invalid("body", &format!("Malformed multipart body: {e}")))?;
            if is_file {
                self.files.push((name, data));
            } else {
                let text = String::from_utf8_lossy(&data).into_owned();
                self.items.push((name, Val::Text(text), Source::Body));
            }
        }
        Ok(())
    }

    /// The values of `name` from the best source that has any.
    fn values(&self, name: &str) -> Vec<&Val> {
        let best = self
            .items
            .iter()
            .filter(|(k, _, _)| k == name)
            .map(|(_, _, s)| *s)
            .max();
        self.items
            .iter()
            .filter(|(k, _, s)| k == name && Some(*s) == best)
            .map(|(_, v, _)| v)
            .collect()
    }

    /// The last value of `name` as text (JSON scalars in their text form).
    pub fn text(&self, name: &str) -> Option<String> {
        self.values(name).last().map(|v| match v {
            Val::Text(s) => s.clone(),
            Val::Json(j) => json_text(j),
        })
    }

    /// Whether `name` is set and not empty.
    pub fn required(&self, name: &'static str, what: &str) -> Result<String, HttpError> {
        self.text(name)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(name, &format!("The {what} field is required.")))
    }

    /// An integer in `min..=max`, `default` when absent; `msg` otherwise.
    pub fn int(
        &self,
        name: &'static str,
        min: u64,
        max: u64,
        default: u64,
        msg: &str,
    ) -> Result<u64, HttpError> {
        match self.text(name).map(|s| s.trim().to_owned()) {
            None => Ok(default),
            Some(s) if s.is_empty() => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| invalid(name, msg)),
        }
    }

    /// A flag: present means on, except the values `false` and `0`.
    pub fn flag(&self, name: &str) -> bool {
        self.values(name).last().is_some_and(|v| {
            let t = match v {
                Val::Text(s) => s.trim().to_ascii_lowercase(),
                Val::Json(Value::Bool(b)) => return *b,
                Val::Json(j) => json_text(j).trim().to_ascii_lowercase(),
            };
            t != "false" && t != "0"
        })
    }

    /// A list in any of its spellings: `a,b`, repeated keys, a JSON array
    /// or number; trimmed, empty items dropped, de-duplicated.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: &str| {
            for item in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !out.iter().any(|o| o == item) {
                    out.push(item.to_owned());
                }
            }
        };
        for v in self.values(name) {
            match v {
                Val::Text(s) => add(s),
                Val::Json(Value::Array(a)) => a.iter().for_each(|x| add(&json_text(x))),
                Val::Json(j) => add(&json_text(j)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(q: &str, body: &str) -> Params {
        let mut p = Params::default();
        p.push_form(q.as_bytes(), Source::Query);
        p.push_form(body.as_bytes(), Source::Body);
        p
    }

    #[test]
    fn value_forms() {
        let p = form(
            "verbose&a=1&categories[]=18&categories[]=22&onlyCountries[0]=US&onlyCountries[1]=CA",
            "",
        );
        assert!(p.flag("verbose"));
        assert!(!p.flag("plaintext"));
        assert_eq!(p.list("categories"), ["18", "22"]);
        assert_eq!(p.list("onlyCountries"), ["US", "CA"]);
        for (q, on) in [
            ("verbose=", true),
            ("verbose=true", true),
            ("verbose=True", true),
            ("verbose=1", true),
            ("verbose=false", false),
            ("verbose=FALSE", false),
            ("verbose=0", false),
        ] {
            assert_eq!(form(q, "").flag("verbose"), on, "{q}");
        }
        let p = form(
            "ip=1.1.1.1&categories=4",
            "ip=2.2.2.2&categories=18,%2022,,18",
        );
        assert_eq!(p.text("ip").as_deref(), Some("2.2.2.2"), "body wins");
        assert_eq!(p.list("categories"), ["18", "22"]);
        assert!(p.int("a", 1, 5, 3, "x").is_ok());
        assert!(form("a=abc", "").int("a", 1, 5, 3, "x").is_err());
        assert!(form("a=6", "").int("a", 1, 5, 3, "x").is_err());
        assert_eq!(form("", "").int("a", 1, 5, 3, "x").unwrap(), 3);
    }

    #[test]
    fn json_values() {
        let mut p = Params::default();
        let v: Value = serde_json::json!({"categories": [18, 22], "n": 7, "v": true, "one": 21});
        if let Value::Object(m) = v {
            for (k, v) in m {
                p.items.push((k, Val::Json(v), Source::Body));
            }
        }
        assert_eq!(p.list("categories"), ["18", "22"]);
        assert_eq!(p.list("one"), ["21"]);
        assert_eq!(p.int("n", 1, 10, 1, "x").unwrap(), 7);
        assert!(p.flag("v"));
    }
}
