//! The latest value of every flushed series (selected by the patterns or not), for
//! `GET /api/metrics`.
//!
//! Keyed by the rendered object's `{"name":…,"dimensions":{…}` bytes, so a flush costs a
//! hash lookup per metric and no parse; names and dimensions are parsed only when a query
//! answers. Owns: that map, bounded by `history.max_latest` (a new series past it is not
//! added, and counted), its entries freed an hour after their last update. Must never: grow
//! past its bound or parse on the flush path.

use hashbrown::HashMap;

/// A series not updated for this long is freed.
pub const IDLE_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub timestamp_ms: u64,
    pub value: f64,
    /// When the gateway last saw it (its own clock), for the idle expiry.
    pub seen_ms: u64,
}

#[derive(Debug, Default)]
pub struct LatestMap {
    map: HashMap<Box<[u8]>, Entry>,
    pub max: usize,
}

impl LatestMap {
    pub fn new(max: usize) -> LatestMap {
        LatestMap {
            map: HashMap::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Records a sample; false when it was a new series refused for want of room. The
    /// newest timestamp wins (a pass-through metric may arrive late).
    pub fn record(&mut self, key: &[u8], timestamp_ms: u64, value: f64, now_ms: u64) -> bool {
        let entry = Entry {
            timestamp_ms,
            value,
            seen_ms: now_ms,
        };
        if let Some(e) = self.map.get_mut(key) {
            if timestamp_ms >= e.timestamp_ms {
                *e = entry;
            } else {
                e.seen_ms = now_ms;
            }
            return true;
        }
        if self.map.len() >= self.max {
            return false;
        }
        self.map.insert(key.into(), entry);
        true
    }

    /// Frees the series not seen for [`IDLE_MS`]; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, e| now_ms.saturating_sub(e.seen_ms) <= IDLE_MS);
        before - self.map.len()
    }

    /// An estimate of the heap the map holds (its table and keys).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(Box<[u8]>, Entry)>() + 1;
        self.map.capacity() * 8 / 7 * entry + self.map.keys().map(|k| k.len()).sum::<usize>()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(k, e)| (&**k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_bound_refuses_idle_frees() {
        let mut m = LatestMap::new(2);
        assert!(m.record(b"a", 10, 1.0, 1000));
        assert!(
            m.record(b"a", 5, 2.0, 2000),
            "an older sample is not refused"
        );
        assert_eq!(m.iter().next().unwrap().1.value, 1.0, "but does not win");
        assert!(m.record(b"b", 10, 3.0, 1000));
        assert!(!m.record(b"c", 10, 3.0, 1000), "full");
        assert!(
            m.record(b"b", 11, 4.0, 1000),
            "an existing one still updates"
        );
        assert_eq!(m.sweep(1000 + IDLE_MS), 0);
        assert_eq!(m.sweep(1001 + IDLE_MS), 1, "b idle for over an hour");
        assert!(m.record(b"c", 10, 3.0, 1001 + IDLE_MS), "room again");
        assert_eq!(m.len(), 2);
    }
}
