//! Passthrough: metrics that skip aggregation (one `GE_Heartbeat` per beat, metrics POSTed by
//! local clients), rendered once and held until the next flush sends them with the rest.
//!
//! Owns: that bounded pending set. Must never: grow past `buffer.max_pending` (a full buffer
//! refuses, and the caller answers 503 or counts the drop), or hold an unvalidated metric.

use crate::batch::Rendered;
use crate::metric::Metric;
use std::sync::Mutex;

/// The pending set is full; nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

pub struct Passthrough {
    pending: Mutex<Rendered>,
    max_bytes: usize,
}

impl Passthrough {
    pub fn new(max_bytes: usize) -> Self {
        Passthrough {
            pending: Mutex::new(Rendered::default()),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rendered> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One heartbeat measurement, exactly as the GE proxy wrote it (no default dimensions,
    /// so existing dashboards keep matching).
    pub fn push_beat(
        &self,
        id: &str,
        enabler_id: &str,
        enabler_version: &str,
        timestamp_ms: u64,
    ) -> Result<(), Full> {
        let mut p = self.lock();
        if p.bytes() + 256 + id.len() + enabler_id.len() + enabler_version.len() > self.max_bytes {
            return Err(Full);
        }
        let dims = [
            ("enabler_id", enabler_id),
            ("enabler_version", enabler_version),
            ("id", id),
        ];
        p.push(
            crate::heartbeat::METRIC_NAME,
            "",
            dims.into_iter(),
            timestamp_ms,
            1.0,
        );
        Ok(())
    }

    /// Validated metrics from a client, serialized as given (value_meta included).
    pub fn push_metrics(&self, metrics: &[Metric]) -> Result<(), Full> {
        let objects: Vec<Vec<u8>> = metrics
            .iter()
            .map(|m| serde_json::to_vec(m).unwrap_or_default())
            .collect();
        let size: usize = objects.iter().map(Vec::len).sum();
        let mut p = self.lock();
        if p.bytes() + size > self.max_bytes {
            return Err(Full);
        }
        for o in &objects {
            p.push_raw(o);
        }
        Ok(())
    }

    /// Everything pending, leaving the set empty.
    pub fn take(&self) -> Rendered {
        std::mem::take(&mut *self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_render_as_the_ge_proxy_did_and_the_set_is_bounded() {
        let p = Passthrough::new(1024);
        p.push_beat("c-1", "orion", "3.4", 1_795_000_000_000)
            .unwrap();
        let out: Vec<Metric> = serde_json::from_slice(&p.take().to_array()).unwrap();
        assert_eq!(out[0].name, "GE_Heartbeat");
        assert_eq!(out[0].value, 1.0);
        assert_eq!(out[0].timestamp, 1_795_000_000_000);
        let dims: Vec<_> = out[0]
            .dimensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            dims,
            [
                ("enabler_id", "orion"),
                ("enabler_version", "3.4"),
                ("id", "c-1")
            ]
        );
        assert!(p.take().is_empty());
        let mut refused = 0;
        for i in 0..100 {
            if p.push_beat(&format!("c-{i}"), "orion", "3.4", 1).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0 && p.take().bytes() <= 1024);
    }
}
