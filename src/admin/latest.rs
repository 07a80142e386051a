//! `GET /api/metrics` on the admin port: the latest value, timestamp (ms, as Monasca) and
//! dimensions of each series the history keeps, for scripts and Rainbow-style consumers.
//! Query: `prefix` (a name prefix), `dim=key:value` (repeatable; every pair must match),
//! `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
//!
//! Owns: that query's parsing (every bad value a 400 naming the parameter) and the answer's
//! shape. Must never: answer more than `limit` series, or hold the store's lock while
//! serializing (the store's `latest` returns copies).

use super::AdminState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// Most `dim` filters in one query: a series has at most a few dozen dimensions.
pub const MAX_DIMS: usize = 32;

#[derive(Debug, PartialEq)]
pub struct LatestQuery {
    pub prefix: String,
    pub dims: Vec<(String, String)>,
    pub limit: usize,
}

/// A refused query: the message and the parameter.
#[derive(Debug, PartialEq)]
pub struct BadQuery {
    pub message: String,
    pub field: &'static str,
}

fn bad(field: &'static str, message: String) -> BadQuery {
    BadQuery { message, field }
}

pub fn parse(pairs: &[(String, String)]) -> Result<LatestQuery, BadQuery> {
    let mut q = LatestQuery {
        prefix: String::new(),
        dims: Vec::new(),
        limit: DEFAULT_LIMIT,
    };
    let (mut prefix_seen, mut limit_seen) = (false, false);
    for (key, value) in pairs {
        match key.as_str() {
            "prefix" => {
                if std::mem::replace(&mut prefix_seen, true) {
                    return Err(bad("prefix", "prefix is given twice".into()));
                }
                q.prefix = value.clone();
            }
            "limit" => {
                if std::mem::replace(&mut limit_seen, true) {
                    return Err(bad("limit", "limit is given twice".into()));
                }
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!(
                                "limit must be an integer from 1 to {MAX_LIMIT} (got {value:?})"
                            ),
                        )
                    })?;
            }
            "dim" => {
                if q.dims.len() == MAX_DIMS {
                    return Err(bad("dim", format!("at most {MAX_DIMS} dim filters")));
                }
                match value.split_once(':') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                        q.dims.push((k.to_owned(), v.to_owned()))
                    }
                    _ => {
                        return Err(bad(
                            "dim",
                            format!("dim must be key:value, both non-empty (got {value:?})"),
                        ));
                    }
                }
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(bad(
                    "query",
                    format!("unknown parameter {shown:?}: the parameters are prefix, dim, limit"),
                ));
            }
        }
    }
    Ok(q)
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "field": field})),
    )
        .into_response()
}

/// `{"count": n, "truncated": bool, "metrics": [{"name", "dimensions", "timestamp", "value"}]}`.
pub async fn metrics_api(
    State(s): State<AdminState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Some(history) = s.telemetry.history.get() else {
        return error(
            StatusCode::NOT_FOUND,
            "the history is off (history.enabled: false): /api/metrics has nothing to answer"
                .into(),
            None,
        );
    };
    let Ok(Query(pairs)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query string is not form-urlencoded".into(),
            Some("query"),
        );
    };
    let q = match parse(&pairs) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.message, Some(e.field)),
    };
    // One more than asked tells whether there were more.
    let mut latest = history.latest(&q.prefix, &q.dims, q.limit + 1);
    let truncated = latest.len() > q.limit;
    latest.truncate(q.limit);
    let metrics: Vec<_> = latest
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "dimensions": l.dimensions,
                "timestamp": l.timestamp_ms,
                "value": l.value,
            })
        })
        .collect();
    let body = json!({"count": metrics.len(), "truncated": truncated, "metrics": metrics});
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<LatestQuery, BadQuery> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&owned)
    }

    #[test]
    fn the_query_takes_a_prefix_repeated_dims_and_a_limit() {
        assert_eq!(
            q(&[]).unwrap(),
            LatestQuery {
                prefix: String::new(),
                dims: vec![],
                limit: DEFAULT_LIMIT
            }
        );
        let got = q(&[
            ("prefix", "cpu."),
            ("dim", "hostname:web-1"),
            ("dim", "url:http://x:80"),
            ("limit", "100"),
        ])
        .unwrap();
        assert_eq!(got.prefix, "cpu.");
        assert_eq!(
            got.dims,
            vec![
                ("hostname".to_owned(), "web-1".to_owned()),
                ("url".to_owned(), "http://x:80".to_owned())
            ]
        );
        assert_eq!(got.limit, 100);
        assert_eq!(q(&[("limit", "10000")]).unwrap().limit, MAX_LIMIT);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for limit in ["0", "10001", "-1", "x", "", "1.5"] {
            assert_eq!(
                q(&[("limit", limit)]).unwrap_err().field,
                "limit",
                "{limit}"
            );
        }
        for dim in ["hostname", ":x", "x:", ""] {
            assert_eq!(q(&[("dim", dim)]).unwrap_err().field, "dim", "{dim}");
        }
        assert_eq!(
            q(&[("limit", "1"), ("limit", "2")]).unwrap_err().field,
            "limit"
        );
        assert_eq!(
            q(&[("prefix", "a"), ("prefix", "b")]).unwrap_err().field,
            "prefix"
        );
        assert_eq!(q(&[("name", "cpu")]).unwrap_err().field, "query");
        let many: Vec<(&str, &str)> = (0..=MAX_DIMS).map(|_| ("dim", "a:b")).collect();
        assert_eq!(q(&many).unwrap_err().field, "dim");
    }
}
