//! `POST /api/v2/bulk-report`: upstream's CSV (`IP,Categories,ReportDate,Comment`,
//! quotes escaped as `\"` or `""`, line breaks allowed inside quotes), each
//! row judged on its own; good rows are stored together.

use http::StatusCode;
use serde_json::json;

use super::super::super::api::off_reactor;
use super::super::super::dispatch::Ctx;
use super::super::super::error::HttpError;
use super::super::super::query::invalid;
use super::super::super::response::{self, Resp};
use super::params::Params;
use super::{build_report, parse_time, time_in_range, truncate_comment};
use crate::domain::IpKey;
use crate::service::Services;
use crate::service::reports::{DedupMode, Submitted, ValidReport};

/// Most records in one file, the heading included.
pub const MAX_LINES: usize = 10_000;
/// Largest file accepted.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
const HEADING: [&str; 4] = ["IP", "Categories", "ReportDate", "Comment"];

/// A parsed record and the physical line it started on.
type Record = (usize, Vec<String>);

/// Reports to store, their row numbers and addresses, and refused rows.
type Judged = (
    Vec<ValidReport>,
    Vec<(usize, String)>,
    Vec<serde_json::Value>,
);

/// Splits the file into records. `Err` for an unterminated quote.
pub fn records(text: &str) -> Result<Vec<Record>, usize> {
    let mut out = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' | '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    cur.push('\n');
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
                if !(fields.len() == 1 && fields[0].trim().is_empty()) {
                    out.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start = line;
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(start);
    }
    if !cur.is_empty() || !fields.is_empty() {
        fields.push(cur);
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            out.push((start, fields));
        }
    }
    Ok(out)
}

fn csv_error(detail: &str) -> HttpError {
    invalid("csv", detail)
}

/// The file's rows judged one by one: the reports to store with their row
/// numbers and addresses as written, and the refused rows. Parsing 10,000
/// rows takes milliseconds: called off the runtime's workers.
fn judge(s: &Services, file: &[u8]) -> Result<Judged, HttpError> {
    if file.len() > MAX_FILE_BYTES {
        return Err(csv_error("The csv file must be smaller than 2 MB."));
    }
    // Comments are cut by bytes upstream, so a broken character is replaced, not refused.
    let text = String::from_utf8_lossy(file);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let recs = records(text).map_err(|line| {
        csv_error(&format!(
            "The csv file is malformed: a quote opened on line {line} is never closed."
        ))
    })?;
    let Some((_, head)) = recs.first() else {
        return Err(csv_error("The csv file is empty."));
    };
    let head: Vec<&str> = head.iter().map(|h| h.trim()).collect();
    if head != HEADING {
        return Err(csv_error(
            "The first line of the csv file must be exactly `IP,Categories,ReportDate,Comment`.",
        ));
    }
    if recs.len() > MAX_LINES {
        return Err(csv_error(&format!(
            "The csv file may have at most {MAX_LINES} lines, the heading included."
        )));
    }
    let mut invalid_rows = Vec::new();
    let mut good = Vec::new();
    let mut good_rows = Vec::new();
    for (row, (_, rec)) in recs.iter().enumerate().skip(1) {
        let row_number = row + 1;
        let get = |i: usize| rec.get(i).map(|f| f.trim()).unwrap_or_default();
        let ip_text = get(0);
        let mut fail = |error: &str| {
            invalid_rows.push(json!({"error": error, "input": ip_text, "rowNumber": row_number}));
        };
        let Ok(ip) = ip_text.parse::<IpKey>() else {
            fail("Invalid IP");
            continue;
        };
        let ids: Option<Vec<u8>> = get(1)
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse::<u8>().ok())
            .collect();
        let Some(ids) = ids.filter(|v| !v.is_empty()) else {
            fail("Invalid Category");
            continue;
        };
        let at = match get(2) {
            "" => None,
            d => {
                let Some(at) = parse_time(d).filter(|at| time_in_range(s, *at)) else {
                    fail("Invalid ReportDate");
                    continue;
                };
                Some(at)
            }
        };
        let comment = rec.get(3).and_then(|c| truncate_comment(c));
        match build_report(ip, ids, comment, at) {
            Ok(v) => {
                good.push(v);
                good_rows.push((row_number, ip_text.to_owned()));
            }
            Err("ip") => fail("Invalid IP"),
            Err(_) => fail("Invalid Category"),
        }
    }
    Ok((good, good_rows, invalid_rows))
}

pub async fn post(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let s = &ctx.state.services;
    let Some((_, file)) = p.files.iter().rev().find(|(n, _)| n == "csv") else {
        return Err(csv_error(
            "The csv field is required: upload the file as the multipart part `csv`.",
        ));
    };
    let (file, services) = (file.clone(), s.clone());
    let (good, good_rows, mut invalid_rows) =
        off_reactor(move || judge(&services, &file)).await??;
    let mut saved = 0_usize;
    if !good.is_empty() {
        let out = s.submit_reports(&who, good, DedupMode::Refuse).await?;
        for (o, (row_number, input)) in out.iter().zip(good_rows) {
            if matches!(o, Submitted::Duplicate { .. }) {
                invalid_rows.push(
                    json!({"error": "Duplicate IP", "input": input, "rowNumber": row_number}),
                );
            } else {
                saved += 1;
            }
        }
    }
    invalid_rows.sort_by_key(|v| v["rowNumber"].as_u64());
    Ok(response::json(
        StatusCode::OK,
        &json!({"data": {"savedReports": saved, "invalidReports": invalid_rows}}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_quotes_escapes_and_line_breaks() {
        let text = "IP,Categories,ReportDate,Comment\r\n1.2.3.4,\"18,22\",2026-01-02T03:04:05+00:00,\"say \\\"hi\\\", \"\"ok\"\"\nnext line\"\n\n5.6.7.8,14,,\n";
        let r = records(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].1, ["IP", "Categories", "ReportDate", "Comment"]);
        assert_eq!(r[1].1[1], "18,22");
        assert_eq!(r[1].1[3], "say \"hi\", \"ok\"\nnext line");
        assert_eq!(r[2].0, 5, "starts on physical line 5");
        assert_eq!(r[2].1, ["5.6.7.8", "14", "", ""]);
        assert_eq!(records("a,\"open\n1,2\n"), Err(1));
        assert_eq!(records("x").unwrap(), [(1, vec!["x".to_owned()])]);
    }
}
