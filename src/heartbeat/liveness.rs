//! The liveness table: which heartbeat senders are alive, late or dead (DESIGN §5).
//!
//! Owns: one entry per (enabler_id, enabler_version, id) with when it was last heard from, and
//! the rule that turns an age into a [`State`]. Must never: grow past `max_senders` (IDs come
//! from the network, so a sender inventing a new one per beat must not exhaust memory), evict
//! a known sender to make room for a new one, or trust the sender's clock: ages use the time
//! the gateway received the beat.
//!
//! Heartbeats arrive at a few per sender per minute, so one mutex over a `HashMap` is plenty;
//! it is never taken on the statsd line path.

use super::Beat;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// How often senders beat; the unit of the [`state_of`] rule.
    pub expected_interval: Duration,
    /// An entry not heard from for longer than this is forgotten by [`Liveness::expire`].
    pub expire_after: Duration,
    /// At most this many entries; beats from further new senders are refused.
    pub max_senders: usize,
}

/// How recently a sender was heard from, in units of the expected interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Alive,
    Late,
    Dead,
}

impl State {
    pub const fn label(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Late => "late",
            State::Dead => "dead",
        }
    }
}

/// The state for an age (time since the last beat was received):
/// alive while `age ≤ expected`, late while `age ≤ 2 × expected`, dead after.
///
/// So a sender that stops is late as soon as its next beat is overdue, and reported dead one
/// expected interval after that beat was due: a single lost UDP datagram makes it late, never
/// dead.
pub fn state_of(age: Duration, expected: Duration) -> State {
    if age <= expected {
        State::Alive
    } else if age <= expected.saturating_mul(2) {
        State::Late
    } else {
        State::Dead
    }
}

/// One sender, as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Instance {
    pub enabler_id: String,
    pub enabler_version: String,
    pub id: String,
    pub state: State,
    /// When the last beat was received (epoch ms, the gateway's clock).
    pub last_seen_ms: u64,
    pub age_seconds: f64,
    /// Beats received since the entry was created.
    pub beats: u64,
    /// The address (`ip:port`) the last beat came from, when known.
    pub source: Option<String>,
}

/// Which instances [`Liveness::instances`] returns; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub enabler_id: Option<String>,
    pub enabler_version: Option<String>,
    pub state: Option<State>,
}

impl Filter {
    /// From the admin API's query parameters: `enabler_id` (alias `enabler`),
    /// `enabler_version` (alias `version`) and `state` (`alive`, `late` or `dead`, any case).
    /// An empty value means "no filter"; a repeated key, the last one. Unknown keys are refused
    /// rather than ignored, so a typo (`?stat=dead`) does not silently list everything.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (key, value) in pairs {
            let value = Some(value).filter(|v| !v.is_empty());
            match key.as_str() {
                "enabler_id" | "enabler" => filter.enabler_id = value.cloned(),
                "enabler_version" | "version" => filter.enabler_version = value.cloned(),
                "state" => {
                    filter.state = match value {
                        None => None,
                        Some(v) => Some(parse_state(v).ok_or_else(|| {
                            format!("state: expected alive, late or dead, got {v:?}")
                        })?),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?} (expected enabler (or enabler_id), version (or enabler_version) or state)"
                    ));
                }
            }
        }
        Ok(filter)
    }

    fn matches(&self, enabler_id: &str, enabler_version: &str, state: State) -> bool {
        self.enabler_id.as_deref().is_none_or(|e| e == enabler_id)
            && self
                .enabler_version
                .as_deref()
                .is_none_or(|v| v == enabler_version)
            && self.state.is_none_or(|s| s == state)
    }
}

fn parse_state(v: &str) -> Option<State> {
    [State::Alive, State::Late, State::Dead]
        .into_iter()
        .find(|s| v.eq_ignore_ascii_case(s.label()))
}

/// A new sender did not fit: the table already holds `max_senders` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("liveness table is full")]
pub struct TableFull;

/// (enabler_id, enabler_version, id): the order instances are listed in.
type Key = (String, String, String);

#[derive(Debug)]
struct Entry {
    last_seen_ms: u64,
    beats: u64,
    source: Option<SocketAddr>,
}

/// The bounded table of senders.
#[derive(Debug)]
pub struct Liveness {
    settings: LivenessSettings,
    table: Mutex<HashMap<Key, Entry>>,
}

impl Liveness {
    pub fn new(settings: LivenessSettings) -> Self {
        Self {
            settings,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &LivenessSettings {
        &self.settings
    }

    /// Every update leaves the map consistent, so a panic elsewhere while holding the lock
    /// cannot leave it half-written; carrying on beats refusing every later beat.
    fn table(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Note a beat received at `now_ms` (the gateway's clock, not the beat's timestamp).
    ///
    /// Known senders always update. A new sender when the table is full is refused with
    /// [`TableFull`] (the caller counts it); nothing is evicted to make room, since that would
    /// let a flood of invented IDs push real senders out. Dead entries leave through
    /// [`Liveness::expire`], which the caller runs periodically.
    pub fn record(
        &self,
        beat: &Beat,
        source: Option<SocketAddr>,
        now_ms: u64,
    ) -> Result<(), TableFull> {
        let key = (
            beat.enabler_id.clone(),
            beat.enabler_version.clone(),
            beat.id.clone(),
        );
        let mut table = self.table();
        let full = table.len() >= self.settings.max_senders;
        match table.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let e = e.get_mut();
                e.last_seen_ms = now_ms;
                e.beats = e.beats.saturating_add(1);
                // A beat relayed without an address says nothing about where the sender is.
                if source.is_some() {
                    e.source = source;
                }
            }
            std::collections::hash_map::Entry::Vacant(_) if full => return Err(TableFull),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Entry {
                    last_seen_ms: now_ms,
                    beats: 1,
                    source,
                });
            }
        }
        Ok(())
    }

    /// The entries matching `filter`, sorted by (enabler_id, enabler_version, id).
    pub fn instances(&self, now_ms: u64, filter: &Filter) -> Vec<Instance> {
        let table = self.table();
        let mut out: Vec<Instance> = table
            .iter()
            .filter_map(|((enabler_id, enabler_version, id), e)| {
                let age = age(now_ms, e.last_seen_ms);
                let state = state_of(age, self.settings.expected_interval);
                filter
                    .matches(enabler_id, enabler_version, state)
                    .then(|| Instance {
                        enabler_id: enabler_id.clone(),
                        enabler_version: enabler_version.clone(),
                        id: id.clone(),
                        state,
                        last_seen_ms: e.last_seen_ms,
                        age_seconds: age.as_secs_f64(),
                        beats: e.beats,
                        source: e.source.map(|s| s.to_string()),
                    })
            })
            .collect();
        drop(table);
        out.sort_unstable_by(|a, b| {
            (&a.enabler_id, &a.enabler_version, &a.id).cmp(&(
                &b.enabler_id,
                &b.enabler_version,
                &b.id,
            ))
        });
        out
    }

    /// Per (enabler_id, enabler_version), sorted: how many instances are alive. A group whose
    /// instances are all late or dead reports 0 until they expire, so the gauge drops to 0
    /// rather than vanishing while the outage is fresh.
    pub fn alive_counts(&self, now_ms: u64) -> Vec<(String, String, u64)> {
        let table = self.table();
        let mut groups: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((enabler_id, enabler_version, _), e) in table.iter() {
            let alive = state_of(age(now_ms, e.last_seen_ms), self.settings.expected_interval)
                == State::Alive;
            *groups
                .entry((enabler_id.as_str(), enabler_version.as_str()))
                .or_default() += u64::from(alive);
        }
        groups
            .into_iter()
            .map(|((e, v), n)| (e.to_owned(), v.to_owned(), n))
            .collect()
    }

    /// Forget entries not heard from for longer than `expire_after`; returns how many.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut table = self.table();
        let before = table.len();
        table.retain(|_, e| age(now_ms, e.last_seen_ms) <= self.settings.expire_after);
        before - table.len()
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }
}

/// A clock that stepped backwards gives age 0, not a panic or a huge age.
fn age(now_ms: u64, last_seen_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(last_seen_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;
    const T0: u64 = 1_795_293_064_000;

    fn settings(max: usize) -> LivenessSettings {
        LivenessSettings {
            expected_interval: Duration::from_secs(30),
            expire_after: Duration::from_secs(600),
            max_senders: max,
        }
    }

    fn beat(e: &str, v: &str, id: &str) -> Beat {
        Beat {
            id: id.into(),
            enabler_id: e.into(),
            enabler_version: v.into(),
            timestamp_ms: None,
        }
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("address"))
    }

    fn states(l: &Liveness, now: u64) -> Vec<(String, State)> {
        l.instances(now, &Filter::default())
            .into_iter()
            .map(|i| (i.id, i.state))
            .collect()
    }

    #[test]
    fn state_boundaries() {
        let i = Duration::from_secs(30);
        let ms = Duration::from_millis;
        assert_eq!(state_of(Duration::ZERO, i), State::Alive);
        assert_eq!(state_of(i, i), State::Alive);
        assert_eq!(state_of(i + ms(1), i), State::Late);
        assert_eq!(state_of(2 * i, i), State::Late);
        assert_eq!(state_of(2 * i + ms(1), i), State::Dead);
        assert_eq!(state_of(Duration::MAX, i), State::Dead);
        // Degenerate settings stay total.
        assert_eq!(state_of(Duration::ZERO, Duration::ZERO), State::Alive);
        assert_eq!(state_of(ms(1), Duration::ZERO), State::Dead);
        assert_eq!(state_of(Duration::MAX, Duration::MAX), State::Alive);
    }

    #[test]
    fn states_follow_the_receive_time() {
        let l = Liveness::new(settings(10));
        let mut b = beat("orion", "3.4.0", "c1");
        // The sender's clock is a day off; only the receive time counts.
        b.timestamp_ms = Some(T0 - 86_400 * S);
        l.record(&b, addr("10.0.0.5:41000"), T0).expect("room");
        assert_eq!(states(&l, T0), [("c1".into(), State::Alive)]);
        assert_eq!(states(&l, T0 + 30 * S), [("c1".into(), State::Alive)]);
        assert_eq!(states(&l, T0 + 30 * S + 1), [("c1".into(), State::Late)]);
        assert_eq!(states(&l, T0 + 60 * S), [("c1".into(), State::Late)]);
        assert_eq!(states(&l, T0 + 60 * S + 1), [("c1".into(), State::Dead)]);
        // A new beat revives it.
        l.record(&b, None, T0 + 100 * S).expect("known");
        let i = &l.instances(T0 + 101 * S, &Filter::default())[0];
        assert_eq!(i.state, State::Alive);
        assert_eq!(i.beats, 2);
        assert_eq!(i.last_seen_ms, T0 + 100 * S);
        assert_eq!(i.age_seconds, 1.0);
        assert_eq!(
            i.source.as_deref(),
            Some("10.0.0.5:41000"),
            "kept when not given"
        );
        // A clock stepping backwards reads as age 0.
        assert_eq!(l.instances(T0, &Filter::default())[0].age_seconds, 0.0);
    }

    #[test]
    fn source_follows_the_latest_beat() {
        let l = Liveness::new(settings(10));
        let b = beat("e", "1", "c");
        l.record(&b, None, T0).expect("room");
        assert_eq!(l.instances(T0, &Filter::default())[0].source, None);
        l.record(&b, addr("[::1]:9"), T0).expect("known");
        assert_eq!(
            l.instances(T0, &Filter::default())[0].source.as_deref(),
            Some("[::1]:9")
        );
    }

    #[test]
    fn the_table_is_bounded_but_known_senders_update() {
        let l = Liveness::new(settings(2));
        l.record(&beat("e", "1", "a"), None, T0).expect("room");
        l.record(&beat("e", "1", "b"), None, T0).expect("room");
        assert_eq!(l.record(&beat("e", "1", "c"), None, T0), Err(TableFull));
        // The same id under another version is another sender.
        assert_eq!(l.record(&beat("e", "2", "a"), None, T0), Err(TableFull));
        assert_eq!(l.len(), 2);
        l.record(&beat("e", "1", "a"), None, T0 + S)
            .expect("known sender");
        assert_eq!(l.len(), 2);
        // Expiry makes room again.
        assert_eq!(l.expire(T0 + 600 * S + 1), 1);
        l.record(&beat("e", "1", "c"), None, T0 + 600 * S + 1)
            .expect("room after expiry");
        assert_eq!(TableFull.to_string(), "liveness table is full");
    }

    #[test]
    fn a_zero_bound_refuses_everyone() {
        let l = Liveness::new(settings(0));
        assert_eq!(l.record(&beat("e", "1", "a"), None, T0), Err(TableFull));
        assert!(l.is_empty());
    }

    #[test]
    fn expiry_removes_only_old_entries() {
        let l = Liveness::new(settings(10));
        l.record(&beat("e", "1", "old"), None, T0).expect("room");
        l.record(&beat("e", "1", "new"), None, T0 + 100 * S)
            .expect("room");
        assert_eq!(l.expire(T0 + 600 * S), 0, "exactly expire_after is kept");
        assert_eq!(l.len(), 2);
        assert_eq!(l.expire(T0 + 600 * S + 1), 1);
        assert_eq!(states(&l, T0 + 600 * S + 1), [("new".into(), State::Dead)]);
        assert_eq!(l.expire(T0 + 700 * S + 1), 1);
        assert!(l.is_empty());
        assert_eq!(l.expire(T0 + 800 * S), 0);
    }

    #[test]
    fn instances_are_sorted_and_filtered() {
        let l = Liveness::new(settings(10));
        l.record(&beat("orion", "3.4.0", "b"), None, T0)
            .expect("room");
        l.record(&beat("orion", "3.4.0", "a"), None, T0 + 40 * S)
            .expect("room");
        l.record(&beat("keyrock", "8.0", "z"), None, T0 + 40 * S)
            .expect("room");
        l.record(&beat("orion", "3.10.0", "c"), None, T0 + 40 * S)
            .expect("room");
        let now = T0 + 45 * S;
        let ids =
            |f: Filter| -> Vec<String> { l.instances(now, &f).into_iter().map(|i| i.id).collect() };
        assert_eq!(ids(Filter::default()), ["z", "c", "a", "b"]);
        let orion = Filter {
            enabler_id: Some("orion".into()),
            ..Filter::default()
        };
        assert_eq!(ids(orion.clone()), ["c", "a", "b"]);
        assert_eq!(
            ids(Filter {
                enabler_version: Some("3.4.0".into()),
                ..orion.clone()
            }),
            ["a", "b"]
        );
        assert_eq!(
            ids(Filter {
                state: Some(State::Late),
                ..orion
            }),
            ["b"]
        );
        assert_eq!(
            ids(Filter {
                state: Some(State::Dead),
                ..Filter::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(Filter {
                enabler_id: Some("ORION".into()),
                ..Filter::default()
            }),
            Vec::<String>::new(),
            "values match exactly"
        );
    }

    #[test]
    fn alive_counts_keep_groups_with_none_alive() {
        let l = Liveness::new(settings(10));
        l.record(&beat("orion", "3.4.0", "a"), None, T0)
            .expect("room");
        l.record(&beat("orion", "3.4.0", "b"), None, T0 + 50 * S)
            .expect("room");
        l.record(&beat("orion", "3.4.0", "c"), None, T0 + 50 * S)
            .expect("room");
        l.record(&beat("orion", "3.3.0", "d"), None, T0)
            .expect("room");
        l.record(&beat("keyrock", "8.0", "e"), None, T0 + 50 * S)
            .expect("room");
        let counts = |now| l.alive_counts(now);
        let row = |e: &str, v: &str, n| (e.to_owned(), v.to_owned(), n);
        assert_eq!(
            counts(T0 + 55 * S),
            [
                row("keyrock", "8.0", 1),
                row("orion", "3.3.0", 0),
                row("orion", "3.4.0", 2)
            ]
        );
        l.expire(T0 + 601 * S);
        assert_eq!(
            counts(T0 + 601 * S),
            [row("keyrock", "8.0", 0), row("orion", "3.4.0", 0)]
        );
        assert!(Liveness::new(settings(1)).alive_counts(T0).is_empty());
    }

    fn q(pairs: &[(&str, &str)]) -> Result<Filter, String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Filter::from_query(&owned)
    }

    #[test]
    fn filters_parse_from_query_pairs() {
        let f = q(&[]).expect("empty");
        assert_eq!(
            (f.enabler_id, f.enabler_version, f.state),
            (None, None, None)
        );
        let f = q(&[
            ("enabler_id", "orion"),
            ("enabler_version", "3.4.0"),
            ("state", "dead"),
        ])
        .expect("full");
        assert_eq!(
            (
                f.enabler_id.as_deref(),
                f.enabler_version.as_deref(),
                f.state
            ),
            (Some("orion"), Some("3.4.0"), Some(State::Dead))
        );
        let f = q(&[("enabler", "orion"), ("version", "1"), ("state", "Alive")]).expect("aliases");
        assert_eq!(
            (
                f.enabler_id.as_deref(),
                f.enabler_version.as_deref(),
                f.state
            ),
            (Some("orion"), Some("1"), Some(State::Alive))
        );
        let f = q(&[
            ("state", "late"),
            ("state", ""),
            ("enabler", "a"),
            ("enabler_id", "b"),
        ])
        .expect("repeats");
        assert_eq!((f.enabler_id.as_deref(), f.state), (Some("b"), None));
        let f = q(&[("enabler", "")]).expect("empty value");
        assert_eq!(f.enabler_id, None);
    }

    #[test]
    fn bad_filters_name_the_key() {
        let e = q(&[("state", "stale")]).expect_err("bad state");
        assert!(e.starts_with("state:"), "{e}");
        assert!(e.contains("stale"), "{e}");
        let e = q(&[("stat", "dead")]).expect_err("typo");
        assert!(e.contains("\"stat\""), "{e}");
    }

    #[test]
    fn instances_serialise_for_the_admin_api() {
        let l = Liveness::new(settings(10));
        l.record(&beat("orion", "3.4.0", "c1"), addr("10.0.0.5:41000"), T0)
            .expect("room");
        let json =
            serde_json::to_value(l.instances(T0 + 1500, &Filter::default())).expect("serialisable");
        assert_eq!(
            json,
            serde_json::json!([{
                "enabler_id": "orion",
                "enabler_version": "3.4.0",
                "id": "c1",
                "state": "alive",
                "last_seen_ms": T0,
                "age_seconds": 1.5,
                "beats": 1,
                "source": "10.0.0.5:41000",
            }])
        );
        assert_eq!(serde_json::to_value(State::Late).ok(), Some("late".into()));
    }
}
