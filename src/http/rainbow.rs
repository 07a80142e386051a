//! `POST <checks.rainbow_path>`: Rainbow's `RainbowUtils.store` (`requests.post(url,
//! json=record)`, one SDK record) or an array of records, turned into metrics by
//! `checks::rainbow::record_to_metric` and sent with the next flush.
//!
//! Answers what the SDK reads (`{"success": …}`): 200 `{"success": true}` when every record
//! was accepted; 422 `{"success": false, "error", "accepted", "rejected": [{index, name,
//! reason}]}` when some were refused (the valid ones of the same request are still
//! accepted, as a JSONL file keeps its good lines); 400 for a body that is not JSON; 503 when
//! `buffer.max_pending` is full (nothing accepted). Must never: accept a metric Monasca would
//! refuse, or echo an unbounded list back.

use crate::checks::rainbow::{RainbowStats, record_to_metric};
use crate::clock::now_ms;
use crate::passthrough::Passthrough;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

/// Refused records listed in a 422 answer; the rest are only counted.
const MAX_LISTED: usize = 100;

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub fn store(
    body: &Bytes,
    defaults: &[(String, String)],
    passthrough: &Passthrough,
    stats: &RainbowStats,
) -> Response {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            stats.http_invalid.fetch_add(1, Relaxed);
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": format!("request body is not valid JSON: {e}")}),
            );
        }
    };
    let records = match parsed {
        Value::Array(items) => items,
        one => vec![one],
    };
    let now = now_ms();
    let mut accepted = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    let mut refused = 0u64;
    for (index, record) in records.iter().enumerate() {
        match record_to_metric(record, defaults, now) {
            Ok(m) => accepted.push(m),
            Err(reason) => {
                refused += 1;
                if rejected.len() < MAX_LISTED {
                    let name = record.get("name").and_then(Value::as_str);
                    rejected.push(json!({"index": index, "name": name, "reason": reason}));
                }
            }
        }
    }
    if !accepted.is_empty() && passthrough.push_metrics(&accepted).is_err() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"success": false, "error": "buffer.max_pending is full; retry later"}),
        );
    }
    stats.http_records.fetch_add(accepted.len() as u64, Relaxed);
    stats.http_invalid.fetch_add(refused, Relaxed);
    if refused == 0 {
        return answer(StatusCode::OK, json!({"success": true}));
    }
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "success": false,
            "error": format!("{refused} of {} records refused", records.len()),
            "accepted": accepted.len(),
            "rejected": rejected,
        }),
    )
}
