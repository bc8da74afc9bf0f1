//! `POST /v1/sensor/events`: a batch of events as NDJSON or a JSON array.

use http::StatusCode;
use serde_json::json;

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::invalid;
use super::super::response::{self, Resp};
use crate::service::sensors::{EventError, MAX_BATCH_EVENTS, WireEvent};

pub async fn post(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let sensor = ctx.sensor()?.clone();
    // Parsing and validating up to 10,000 events takes milliseconds: on
    // the batch thread, off the runtime's workers, which serve the other
    // connections.
    let (body, services) = (ctx.body.clone(), ctx.state.services.clone());
    let checked = ctx
        .state
        .services
        .on_batch_thread(move || -> Result<_, HttpError> {
            let (events, errors) = parse(super::utf8_text(&body)?)?;
            if !errors.is_empty() {
                return Ok(Err(errors));
            }
            Ok(services.validate_batch(&events))
        })
        .await??;
    let valid = match checked {
        Ok(v) => v,
        Err(errors) => return Ok(refused(&errors)),
    };
    let out = ctx.state.services.ingest_events(&sensor, valid).await?;
    Ok(response::json(StatusCode::OK, &out))
}

fn refused(errors: &[EventError]) -> Resp {
    let first = errors
        .first()
        .map(|e| format!("event {}: {} {}", e.line, e.field, e.error))
        .unwrap_or_default();
    response::json(
        StatusCode::BAD_REQUEST,
        &json!({"success": false, "error": format!("batch refused, nothing stored ({} invalid events; first: {first})", errors.len()), "errors": errors}),
    )
}

/// A JSON array or one JSON object per line.
pub(crate) fn parse(text: &str) -> Result<(Vec<WireEvent>, Vec<EventError>), HttpError> {
    let trimmed = text.trim_start();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    if trimmed.starts_with('[') {
        let items: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| invalid("body", &format!("is not a valid JSON array: {e}")))?;
        check_count(items.len())?;
        events.reserve_exact(items.len());
        for (i, v) in items.into_iter().enumerate() {
            match serde_json::from_value::<WireEvent>(v) {
                Ok(e) => events.push(e),
                Err(e) => errors.push(EventError {
                    line: i + 1,
                    field: "event".into(),
                    error: e.to_string(),
                }),
            }
        }
    } else {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        check_count(lines.len())?;
        // Sized once: a growing vector of 10,000 events was copied and
        // faulted in afresh at each doubling.
        events.reserve_exact(lines.len());
        for (i, line) in lines {
            match serde_json::from_str::<WireEvent>(line) {
                Ok(e) => events.push(e),
                Err(e) => errors.push(EventError {
                    line: i + 1,
                    field: "event".into(),
                    error: e.to_string(),
                }),
            }
        }
    }
    if events.is_empty() && errors.is_empty() {
        return Err(invalid("body", "contains no events"));
    }
    Ok((events, errors))
}

fn check_count(n: usize) -> Result<(), HttpError> {
    if n > MAX_BATCH_EVENTS {
        return Err(invalid(
            "body",
            &format!("at most {MAX_BATCH_EVENTS} events per batch, got {n}"),
        ));
    }
    Ok(())
}
