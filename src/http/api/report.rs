//! `POST /v1/key/report` and `POST /v1/key/bulk-report` (JSON or a CSV file
//! in multipart form data).

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::invalid;
use super::super::response::{self, Resp};
use crate::service::reports::{MAX_BULK_ROWS, ReportRow};

/// Largest CSV file accepted in a bulk report.
pub const MAX_CSV_BYTES: usize = 2 * 1024 * 1024;

fn text_field(v: &Value, name: &str) -> Result<Option<String>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// One JSON report object, leniently typed: category may be a name or a number.
fn row_from_json(v: &Value) -> Result<ReportRow, (String, String)> {
    let ip_shown = v
        .get("ip")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let fail = |e: String| (ip_shown.clone(), e);
    if !v.is_object() {
        return Err(fail("report must be a JSON object".into()));
    }
    let ip = text_field(v, "ip")
        .map_err(fail)?
        .ok_or_else(|| fail("Missing ip".into()))?;
    let category = match v.get("category") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => return Err(fail("Missing category".into())),
        Some(_) => return Err(fail("category must be a name or a number".into())),
    };
    Ok(ReportRow {
        ip,
        category,
        protocol: text_field(v, "protocol").map_err(fail)?,
        comment: text_field(v, "comment").map_err(fail)?,
        at_ms: None,
    })
}

pub async fn single(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    super::require_json(&ctx)?;
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| invalid("body", &format!("is not valid JSON: {e}")))?;
    let row = row_from_json(&v).map_err(|(_, e)| invalid("report", &e))?;
    let counted = ctx.state.services.report(&who, &row).await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({"success": true, "counted": counted}),
    ))
}

pub async fn bulk(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    let media = super::media_type(&ctx);
    // Rows are parsed off the runtime's workers (10,000 of them take a few
    // milliseconds).
    let (rows, pre_errors) = if super::is_json(&media) {
        let body = ctx.body.clone();
        super::off_reactor(move || json_rows(&body)).await??
    } else if media == "multipart/form-data" {
        let file = csv_file(&ctx).await?;
        super::off_reactor(move || csv_rows(&file)).await??
    } else {
        return Err(HttpError::UnsupportedMediaType {
            expected: "application/json or multipart/form-data",
        });
    };
    // Rows that could not even be read count as rejected, with their numbers.
    let total = rows.len() + pre_errors.len();
    let (numbers, rows): (Vec<usize>, Vec<ReportRow>) = rows.into_iter().unzip();
    let mut out = ctx.state.services.bulk_report(&who, rows, 1).await?;
    for e in &mut out.errors {
        e.row = numbers[e.row - 1];
    }
    out.total = total;
    out.rejected += pre_errors.len();
    out.errors.extend(pre_errors);
    out.errors.sort_by_key(|e| e.row);
    Ok(response::json(StatusCode::OK, &out))
}

pub(crate) type Rows = (
    Vec<(usize, ReportRow)>,
    Vec<crate::service::reports::RowError>,
);

pub(crate) fn json_rows(body: &Bytes) -> Result<Rows, HttpError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", &format!("is not valid JSON: {e}")))?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("reports") {
            Some(Value::Array(a)) => a,
            _ => return Err(invalid("reports", "must be an array of report objects")),
        },
        _ => return Err(invalid("body", "must be {\"reports\": [...]} or an array")),
    };
    if items.len() > MAX_BULK_ROWS {
        return Err(invalid(
            "reports",
            &format!(
                "at most {MAX_BULK_ROWS} reports per request, got {}",
                items.len()
            ),
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, it) in items.iter().enumerate() {
        match row_from_json(it) {
            Ok(r) => rows.push((i + 1, r)),
            Err((ip, error)) => errors.push(crate::service::reports::RowError {
                row: i + 1,
                ip,
                error,
            }),
        }
    }
    Ok((rows, errors))
}

/// The `file` part (or the only file part) of a multipart body.
async fn csv_file(ctx: &Ctx<'_>) -> Result<Bytes, HttpError> {
    let ct = ctx
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(ct)
        .map_err(|_| invalid("body", "multipart body without a boundary"))?;
    let body = ctx.body.clone();
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().per_field(MAX_CSV_BYTES as u64));
    let mut mp = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut fallback = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e)),
        };
        let is_file = field.name() == Some("file");
        let has_filename = field.file_name().is_some();
        let data = field.bytes().await.map_err(|e| multipart_error(&e))?;
        if is_file {
            return Ok(data);
        }
        if has_filename && fallback.is_none() {
            fallback = Some(data);
        }
    }
    fallback.ok_or_else(|| {
        invalid(
            "file",
            "the multipart body has no CSV file part named 'file'",
        )
    })
}

fn multipart_error(e: &multer::Error) -> HttpError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            HttpError::PayloadTooLarge {
                limit: MAX_CSV_BYTES,
            }
        }
        other => invalid("body", &format!("malformed multipart body: {other}")),
    }
}

/// CSV rows as the shared bulk-report parser reads them; rows are
/// numbered by their line in the file.
pub(crate) fn csv_rows(file: &[u8]) -> Result<Rows, HttpError> {
    use crate::service::report_csv::{CsvLine, CsvReader};
    if file.len() > MAX_CSV_BYTES {
        return Err(HttpError::PayloadTooLarge {
            limit: MAX_CSV_BYTES,
        });
    }
    let text = std::str::from_utf8(file).map_err(|_| invalid("file", "is not valid UTF-8"))?;
    let mut reader = CsvReader::new();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = reader.line(i + 1, line).map_err(|e| invalid("file", &e))?;
        if !matches!(parsed, CsvLine::Skip) && rows.len() + errors.len() >= MAX_BULK_ROWS {
            return Err(invalid(
                "file",
                &format!("at most {MAX_BULK_ROWS} rows per request"),
            ));
        }
        match parsed {
            CsvLine::Skip => {}
            CsvLine::Row(r) => rows.push((i + 1, r)),
            CsvLine::Bad(e) => errors.push(e),
        }
    }
    Ok((rows, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_delimiters_and_quotes() {
        let (rows, errs) = csv_rows(b"IP,Category,Protocol,Comment\n1.2.3.4,brute_force,ssh,\"a, quoted\"\n\n5.6.7.8;3\n9.9.9.9\n").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.comment.as_deref(), Some("a, quoted"));
        // One delimiter per file: "5.6.7.8;3" is a single field here.
        assert_eq!(
            errs.iter().map(|e| e.row).collect::<Vec<_>>(),
            [4, 5],
            "blank lines keep the numbering"
        );
        let (rows, _) = csv_rows(b"1.2.3.4;ddos;http;x\n").unwrap();
        assert_eq!(rows[0].1.category, "ddos");
        assert!(csv_rows(b"1.2.3.4,1,ssh,\"never closed\n5.6.7.8,1\n").is_err());
        assert!(csv_rows(&[0xff, 0xfe, b'\n']).is_err());
    }
}
