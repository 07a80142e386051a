//! Heartbeat wire forms: the GE Heartbeat JSON body and the compact `_hb|` line (DESIGN §5).
//!
//! Owns: turning bytes into a [`Beat`] whose values are already valid Monasca dimension values,
//! or a [`BeatError`] naming the GE field at fault. Must never: panic, keep state, look at the
//! clock (whether a timestamp is sane is [`super::beat_timestamp`]'s call), or decide what an
//! empty ID means (the caller answers 422 or derives one from the sender's address).

use crate::validate;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// GE key names, as they appear in error messages and on the wire.
pub const ID: &str = "ID";
pub const ENABLER_ID: &str = "Enabler_ID";
pub const ENABLER_VERSION: &str = "Enabler_Version";
pub const TIMESTAMP: &str = "Timestamp";

/// The reason for an absent field; [`BeatError::label`] tells "missing" from "invalid" by it.
const REQUIRED: &str = "is required";
const NOT_A_STRING: &str = "must be a string";
const NOT_EPOCH_MS: &str = "must be epoch milliseconds as a string";
/// Longest accepted timestamp: 19 digits always fit a `u64`, 20 may not.
const MAX_TIMESTAMP_DIGITS: usize = 19;

/// One heartbeat, whichever form it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The container or VM; may be empty (the caller decides: 422 or derive one).
    pub id: String,
    pub enabler_id: String,
    pub enabler_version: String,
    /// the sender's "Timestamp" (epoch ms) if given and a valid integer; sanity against the
    /// clock is NOT checked here
    pub timestamp_ms: Option<u64>,
}

/// Why a heartbeat was refused; the HTTP status and the drop-counter label derive from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeatError {
    /// Not JSON → HTTP 400.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but an array, string, number or null rather than the beat's object → HTTP 400.
    #[error(
        "body is JSON but not an object: send {{\"ID\": ..., \"Enabler_ID\": ..., \"Enabler_Version\": ...}}"
    )]
    NotObject,
    /// A field is missing or its value is unusable → HTTP 422. `field` is the GE key name:
    /// "ID", "Enabler_ID", "Enabler_Version" or "Timestamp".
    #[error("field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl BeatError {
    /// The HTTP status the old proxy's contract implies: 400 for bad JSON, 422 for bad fields.
    pub fn status(&self) -> u16 {
        match self {
            BeatError::NotJson(_) | BeatError::NotObject => 400,
            BeatError::Field { .. } => 422,
        }
    }

    /// The GE key at fault, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            BeatError::NotJson(_) | BeatError::NotObject => None,
            BeatError::Field { field, .. } => Some(field),
        }
    }

    /// The drop-counter label: `not_json`, `not_object`, `missing_field` or `invalid_field`.
    pub fn label(&self) -> &'static str {
        match self {
            BeatError::NotJson(_) => "not_json",
            BeatError::NotObject => "not_object",
            BeatError::Field { reason, .. } if reason == REQUIRED => "missing_field",
            BeatError::Field { .. } => "invalid_field",
        }
    }

    fn field_err(field: &'static str, reason: &str) -> Self {
        BeatError::Field {
            field,
            reason: reason.to_owned(),
        }
    }
}

/// Parse a GE Heartbeat JSON body:
/// `{"ID": "...", "Enabler_ID": "...", "Enabler_Version": "...", "Timestamp": "<epoch ms>"}`.
///
/// Keys match ASCII case-insensitively and, when two differ only by case, the later one wins
/// (so the result does not depend on a map's iteration order). Unknown keys are ignored. All
/// four values must be JSON strings; `Timestamp` is optional. With several bad fields, the
/// first of ID, Enabler_ID, Enabler_Version, Timestamp is reported.
pub fn parse_json(body: &[u8]) -> Result<Beat, BeatError> {
    let fields = serde_json::from_slice::<Fields>(body).map_err(|e| match e.classify() {
        // The only data error the visitors below can raise is "this JSON is not an object".
        serde_json::error::Category::Data => BeatError::NotObject,
        _ => BeatError::NotJson(e.to_string()),
    })?;
    // Each field is checked completely before the next, so the first bad one is reported.
    let id = value(ID, fields.id.required(ID)?)?;
    let enabler_id = value(ENABLER_ID, fields.enabler_id.required(ENABLER_ID)?)?;
    let enabler_version = value(
        ENABLER_VERSION,
        fields.enabler_version.required(ENABLER_VERSION)?,
    )?;
    let timestamp_ms = match fields.timestamp {
        Slot::Absent => None,
        Slot::NotString => return Err(BeatError::field_err(TIMESTAMP, NOT_A_STRING)),
        Slot::Str(s) => Some(
            epoch_ms(s.as_bytes()).ok_or_else(|| BeatError::field_err(TIMESTAMP, NOT_EPOCH_MS))?,
        ),
    };
    Ok(Beat {
        id,
        enabler_id,
        enabler_version,
        timestamp_ms,
    })
}

/// A compact heartbeat line starts with `_hb|`.
pub fn is_compact(line: &[u8]) -> bool {
    line.starts_with(b"_hb|")
}

/// Parse a compact heartbeat line, for senders that only have `nc -u`:
///
/// ```text
/// _hb|<enabler_id>|<enabler_version>|<id>[|T<epoch_ms>]
/// ```
///
/// e.g. `_hb|orion|3.4.0|container-7f3a|T1795293064000`. Trailing `\r`/`\n` are stripped;
/// nothing else is trimmed (spaces are legal in dimension values). Positions map to the GE
/// fields, so errors name the same fields as [`parse_json`]: a position that is absent "is
/// required", one that is present but empty is invalid, except the ID, which may be empty
/// (`_hb|orion|3.4.0|`) for the caller to derive. Because `|` separates fields, no value can
/// contain one. Unlike statsd's `|x` extensions, unknown trailing fields are refused rather
/// than ignored: a fifth field that is not `T<digits>` is most likely an ID containing `|`.
/// The caller checks [`is_compact`] first; a line without the prefix is refused as a bad
/// Enabler_ID.
pub fn parse_compact(line: &[u8]) -> Result<Beat, BeatError> {
    let mut line = line;
    while let [rest @ .., b'\r' | b'\n'] = line {
        line = rest;
    }
    let rest = line
        .strip_prefix(b"_hb|")
        .ok_or_else(|| BeatError::field_err(ENABLER_ID, "line must start with _hb|"))?;
    let mut parts = rest.split(|&b| b == b'|');
    // `split` yields at least one (possibly empty) part, so the Enabler_ID is never absent.
    let enabler_id = compact_value(ENABLER_ID, Some(parts.next().unwrap_or_default()))?;
    let enabler_version = compact_value(ENABLER_VERSION, parts.next())?;
    let id = compact_value(ID, parts.next())?;
    let timestamp_ms = match parts.next() {
        None => None,
        Some(t) => Some(
            t.strip_prefix(b"T")
                .and_then(epoch_ms)
                .ok_or_else(|| BeatError::field_err(TIMESTAMP, "must be T<epoch milliseconds>"))?,
        ),
    };
    if parts.next().is_some() {
        return Err(BeatError::field_err(TIMESTAMP, "must be the last field"));
    }
    Ok(Beat {
        id,
        enabler_id,
        enabler_version,
        timestamp_ms,
    })
}

/// One position of a compact line: present, UTF-8, then the same rules as a JSON value.
fn compact_value(field: &'static str, part: Option<&[u8]>) -> Result<String, BeatError> {
    let part = part.ok_or_else(|| BeatError::field_err(field, REQUIRED))?;
    let text = std::str::from_utf8(part)
        .map_err(|_| BeatError::field_err(field, "must be valid UTF-8"))?;
    value(field, text.to_owned())
}

/// Each value becomes a Monasca dimension value, so a beat the API would refuse is refused
/// here, with a reason the sender can act on. Both forms go through this, so they apply
/// exactly the same rules. An empty ID is the caller's decision (422, or derive one from the
/// sender's address), so it passes.
fn value(field: &'static str, s: String) -> Result<String, BeatError> {
    if field == ID && s.is_empty() {
        return Ok(s);
    }
    match validate::dimension_value(&s) {
        Ok(()) => Ok(s),
        Err(e) => Err(BeatError::field_err(field, e.describe(&s))),
    }
}

/// 1–19 ASCII digits, as a `u64`.
fn epoch_ms(digits: &[u8]) -> Option<u64> {
    if digits.is_empty()
        || digits.len() > MAX_TIMESTAMP_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // 19 digits cannot overflow a u64, so this fold is exact.
    Some(
        digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')),
    )
}

/// What one known key held.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Absent,
    Str(String),
    NotString,
}

impl Slot {
    fn required(self, field: &'static str) -> Result<String, BeatError> {
        match self {
            Slot::Absent => Err(BeatError::field_err(field, REQUIRED)),
            Slot::NotString => Err(BeatError::field_err(field, NOT_A_STRING)),
            Slot::Str(s) => Ok(s),
        }
    }
}

/// The four GE keys, read in document order so that "last wins" is well defined.
#[derive(Debug, Default)]
struct Fields {
    id: Slot,
    enabler_id: Slot,
    enabler_version: Slot,
    timestamp: Slot,
}

impl<'de> de::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Id => &mut fields.id,
                Key::EnablerId => &mut fields.enabler_id,
                Key::EnablerVersion => &mut fields.enabler_version,
                Key::Timestamp => &mut fields.timestamp,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<SlotValue>()?.0;
        }
        Ok(fields)
    }
}

/// A key, matched without allocating.
enum Key {
    Id,
    EnablerId,
    EnablerVersion,
    Timestamp,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(if k.eq_ignore_ascii_case(ID) {
            Key::Id
        } else if k.eq_ignore_ascii_case(ENABLER_ID) {
            Key::EnablerId
        } else if k.eq_ignore_ascii_case(ENABLER_VERSION) {
            Key::EnablerVersion
        } else if k.eq_ignore_ascii_case(TIMESTAMP) {
            Key::Timestamp
        } else {
            Key::Other
        })
    }
}

/// A value of a known key: a string, or anything else (consumed, remembered as "not a string"
/// so the error can name the field instead of failing the whole body as bad JSON).
struct SlotValue(Slot);

impl<'de> de::Deserialize<'de> for SlotValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor)
    }
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = SlotValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::Str(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SlotValue, E> {
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SlotValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SlotValue(Slot::NotString))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SlotValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(SlotValue(Slot::NotString))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_err(r: Result<Beat, BeatError>) -> (&'static str, String, u16, &'static str) {
        match &r {
            Err(e @ BeatError::Field { field, reason }) => {
                (*field, reason.clone(), e.status(), e.label())
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    fn beat(id: &str, e: &str, v: &str, ts: Option<u64>) -> Beat {
        Beat {
            id: id.into(),
            enabler_id: e.into(),
            enabler_version: v.into(),
            timestamp_ms: ts,
        }
    }

    #[test]
    fn the_ge_script_body_parses() {
        // What the GE Heartbeat sender script posts (no content type, string timestamp).
        let body = br#"{"ID": "d1b5a7c3e9f0", "Enabler_ID": "orion", "Enabler_Version": "3.4.0", "Timestamp": "1795293064000"}"#;
        assert_eq!(
            parse_json(body),
            Ok(beat(
                "d1b5a7c3e9f0",
                "orion",
                "3.4.0",
                Some(1_795_293_064_000)
            ))
        );
    }

    #[test]
    fn keys_match_case_insensitively() {
        let body = br#"{"id":"a","enabler_id":"e","ENABLER_VERSION":"1","timestamp":"5"}"#;
        assert_eq!(parse_json(body), Ok(beat("a", "e", "1", Some(5))));
        let body = br#"{"Id":"a","EnAbLeR_iD":"e","enabler_Version":"1"}"#;
        assert_eq!(parse_json(body), Ok(beat("a", "e", "1", None)));
    }

    #[test]
    fn the_later_of_two_case_variants_wins() {
        let body = br#"{"ID":"first","Enabler_ID":"e","Enabler_Version":"1","id":"second"}"#;
        assert_eq!(parse_json(body).map(|b| b.id), Ok("second".into()));
        // Even when the earlier one was unusable.
        let body = br#"{"ID":5,"Enabler_ID":"e","Enabler_Version":"1","id":"ok"}"#;
        assert_eq!(parse_json(body).map(|b| b.id), Ok("ok".into()));
        // And the other way round.
        let body = br#"{"ID":"ok","Enabler_ID":"e","Enabler_Version":"1","id":5}"#;
        assert_eq!(field_err(parse_json(body)).0, ID);
    }

    #[test]
    fn unknown_keys_and_surrounding_whitespace_are_fine() {
        let body = b" \n{\"ID\":\"a\",\"Enabler_ID\":\"e\",\"Enabler_Version\":\"1\",\"extra\":{\"x\":[1,{\"y\":null}]},\"n\":3}\r\n";
        assert_eq!(parse_json(body), Ok(beat("a", "e", "1", None)));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = br#"{"ID":"caf\u00e9","Enabler_ID":"a\/b","Enabler_Version":"1"}"#;
        assert_eq!(parse_json(body), Ok(beat("café", "a/b", "1", None)));
    }

    #[test]
    fn bad_json_is_a_400() {
        for body in [
            &b""[..],
            b"{",
            b"not json",
            b"{\"ID\":\"a\"} trailing",
            b"{\"ID\":\"a\",}",
            b"{\"ID\":\"\xff\"}",
        ] {
            let e = parse_json(body).expect_err("must fail");
            assert!(matches!(e, BeatError::NotJson(_)), "{body:?}: {e:?}");
            assert_eq!((e.status(), e.label(), e.field()), (400, "not_json", None));
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_a_400() {
        for body in [&b"[]"[..], b"\"ID\"", b"42", b"null", b"[{\"ID\":\"a\"}]"] {
            let e = parse_json(body).expect_err("must fail");
            assert_eq!(e, BeatError::NotObject, "{body:?}");
            assert_eq!((e.status(), e.label()), (400, "not_object"));
            assert!(e.to_string().contains("JSON but not an object"), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut body = b"{\"x\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', 10_000));
        assert!(matches!(parse_json(&body), Err(BeatError::NotJson(_))));
    }

    #[test]
    fn missing_fields_are_named() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"Enabler_ID":"e","Enabler_Version":"1"}"#, ID),
            (br#"{"ID":"a","Enabler_Version":"1"}"#, ENABLER_ID),
            (br#"{"ID":"a","Enabler_ID":"e"}"#, ENABLER_VERSION),
            (b"{}", ID),
        ];
        for (body, want) in cases {
            let (field, reason, status, label) = field_err(parse_json(body));
            assert_eq!(
                (field, reason.as_str(), status, label),
                (want, "is required", 422, "missing_field")
            );
        }
        let e = parse_json(b"{}").expect_err("missing");
        assert_eq!(e.to_string(), "field ID: is required");
        assert_eq!(e.field(), Some(ID));
    }

    #[test]
    fn values_must_be_strings() {
        for (body, want) in [
            (
                &br#"{"ID":7,"Enabler_ID":"e","Enabler_Version":"1"}"#[..],
                ID,
            ),
            (
                br#"{"ID":"a","Enabler_ID":true,"Enabler_Version":"1"}"#,
                ENABLER_ID,
            ),
            (
                br#"{"ID":"a","Enabler_ID":"e","Enabler_Version":3.4}"#,
                ENABLER_VERSION,
            ),
            (
                br#"{"ID":"a","Enabler_ID":"e","Enabler_Version":null}"#,
                ENABLER_VERSION,
            ),
            (
                br#"{"ID":["a"],"Enabler_ID":"e","Enabler_Version":"1"}"#,
                ID,
            ),
            (
                br#"{"ID":"a","Enabler_ID":{"x":1},"Enabler_Version":"1"}"#,
                ENABLER_ID,
            ),
            (
                br#"{"ID":"a","Enabler_ID":"e","Enabler_Version":"1","Timestamp":1795293064000}"#,
                TIMESTAMP,
            ),
        ] {
            let (field, reason, status, label) = field_err(parse_json(body));
            assert_eq!(
                (field, reason.as_str(), status, label),
                (want, "must be a string", 422, "invalid_field")
            );
        }
    }

    #[test]
    fn timestamps_must_be_digit_strings() {
        let ok = |ts: &str| {
            parse_json(
                format!(
                    r#"{{"ID":"a","Enabler_ID":"e","Enabler_Version":"1","Timestamp":"{ts}"}}"#
                )
                .as_bytes(),
            )
        };
        assert_eq!(ok("0").map(|b| b.timestamp_ms), Ok(Some(0)));
        assert_eq!(ok("0001").map(|b| b.timestamp_ms), Ok(Some(1)));
        assert_eq!(
            ok("9999999999999999999").map(|b| b.timestamp_ms),
            Ok(Some(9_999_999_999_999_999_999))
        );
        for bad in [
            "",
            " 1",
            "1 ",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "0x10",
            "abc",
            "10000000000000000000",
            "١٢٣",
        ] {
            let (field, reason, status, label) = field_err(ok(bad));
            assert_eq!(
                (field, reason.as_str(), status, label),
                (TIMESTAMP, NOT_EPOCH_MS, 422, "invalid_field"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_empty_id_is_left_to_the_caller() {
        let body = br#"{"ID":"","Enabler_ID":"e","Enabler_Version":"1"}"#;
        assert_eq!(parse_json(body), Ok(beat("", "e", "1", None)));
    }

    #[test]
    fn empty_enabler_fields_are_refused() {
        for (body, want) in [
            (
                &br#"{"ID":"a","Enabler_ID":"","Enabler_Version":"1"}"#[..],
                ENABLER_ID,
            ),
            (
                br#"{"ID":"a","Enabler_ID":"e","Enabler_Version":""}"#,
                ENABLER_VERSION,
            ),
        ] {
            let (field, reason, status, label) = field_err(parse_json(body));
            assert_eq!(
                (field, reason.as_str(), status, label),
                (want, "must not be empty", 422, "invalid_field")
            );
        }
    }

    fn json_with(field: &str, value: &str) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        for k in [ID, ENABLER_ID, ENABLER_VERSION] {
            map.insert(k.into(), "ok".into());
        }
        map.insert(field.into(), value.into());
        serde_json::to_vec(&map).expect("serialisable")
    }

    #[test]
    fn values_follow_the_dimension_rules() {
        for field in [ID, ENABLER_ID, ENABLER_VERSION] {
            for c in ['<', '>', '=', '{', '}', ',', '"', '\\', ';', '&'] {
                let (f, reason, status, _) =
                    field_err(parse_json(&json_with(field, &format!("a{c}b"))));
                assert_eq!(
                    (f, reason.as_str(), status),
                    (field, "must not contain any of < > = { } , \" \\ ; &", 422),
                    "{c:?}"
                );
            }
            for c in ['\0', '\t', '\n', '\r', '\x1f', '\x7f'] {
                let (f, reason, _, _) = field_err(parse_json(&json_with(field, &format!("a{c}b"))));
                assert_eq!(
                    (f, reason.as_str()),
                    (field, "must not contain control characters")
                );
            }
            let (f, reason, _, label) = field_err(parse_json(&json_with(field, &"v".repeat(256))));
            assert_eq!(
                (f, reason.as_str(), label),
                (field, "must be at most 255 characters", "invalid_field")
            );
            // 255 characters is the limit, counted in characters, not bytes.
            assert!(parse_json(&json_with(field, &"v".repeat(255))).is_ok());
            assert!(parse_json(&json_with(field, &"é".repeat(255))).is_ok());
            // Spaces, parens, pipes, colons and slashes are fine in dimension values.
            assert!(parse_json(&json_with(field, "a b(c)|d:e/f")).is_ok());
        }
    }

    #[test]
    fn the_first_bad_field_is_reported() {
        let body = br#"{"Enabler_Version":"","Timestamp":"x"}"#;
        assert_eq!(field_err(parse_json(body)).0, ID);
        let body = br#"{"ID":"a","Enabler_ID":"e","Enabler_Version":"a,b","Timestamp":"x"}"#;
        assert_eq!(field_err(parse_json(body)).0, ENABLER_VERSION);
    }

    #[test]
    fn compact_lines_parse() {
        assert_eq!(
            parse_compact(b"_hb|orion|3.4.0|container-7f3a|T1795293064000"),
            Ok(beat(
                "container-7f3a",
                "orion",
                "3.4.0",
                Some(1_795_293_064_000)
            ))
        );
        assert_eq!(
            parse_compact(b"_hb|orion|3.4.0|container-7f3a"),
            Ok(beat("container-7f3a", "orion", "3.4.0", None))
        );
        assert_eq!(
            parse_compact(b"_hb|orion|3.4.0|c\n"),
            Ok(beat("c", "orion", "3.4.0", None))
        );
        assert_eq!(
            parse_compact(b"_hb|orion|3.4.0|c|T5\r\n"),
            Ok(beat("c", "orion", "3.4.0", Some(5)))
        );
        // Spaces are part of the value: dimension values may contain them.
        assert_eq!(
            parse_compact(b"_hb|my app|3.4 beta|c "),
            Ok(beat("c ", "my app", "3.4 beta", None))
        );
        assert_eq!(parse_compact(b"_hb|e|1|"), Ok(beat("", "e", "1", None)));
        assert_eq!(
            parse_compact(b"_hb|e|1||T9"),
            Ok(beat("", "e", "1", Some(9)))
        );
    }

    #[test]
    fn compact_lines_are_recognised() {
        assert!(is_compact(b"_hb|orion|3.4.0|c"));
        assert!(is_compact(b"_hb|"));
        assert!(!is_compact(b"_hb"));
        assert!(!is_compact(b"_HB|e|1|c"));
        assert!(!is_compact(b"_sc|check|0"));
        assert!(!is_compact(b"hb.count:1|c"));
        assert!(!is_compact(b"{\"ID\":\"a\"}"));
    }

    #[test]
    fn compact_errors_name_the_position() {
        let cases: [(&[u8], &str, &str, &str); 11] = [
            (
                b"_hb|orion",
                ENABLER_VERSION,
                "is required",
                "missing_field",
            ),
            (b"_hb|orion|3.4.0", ID, "is required", "missing_field"),
            (b"_hb|orion|3.4.0\n", ID, "is required", "missing_field"),
            (b"_hb|", ENABLER_ID, "must not be empty", "invalid_field"),
            (
                b"_hb||1|c",
                ENABLER_ID,
                "must not be empty",
                "invalid_field",
            ),
            (
                b"_hb|e||c",
                ENABLER_VERSION,
                "must not be empty",
                "invalid_field",
            ),
            (
                b"_hb|e|1|c|",
                TIMESTAMP,
                "must be T<epoch milliseconds>",
                "invalid_field",
            ),
            (
                b"_hb|e|1|c|1795293064000",
                TIMESTAMP,
                "must be T<epoch milliseconds>",
                "invalid_field",
            ),
            (
                b"_hb|e|1|c|Tx",
                TIMESTAMP,
                "must be T<epoch milliseconds>",
                "invalid_field",
            ),
            (
                b"_hb|e|1|c|T5|x",
                TIMESTAMP,
                "must be the last field",
                "invalid_field",
            ),
            (
                b"orion|3.4.0|c",
                ENABLER_ID,
                "line must start with _hb|",
                "invalid_field",
            ),
        ];
        for (line, want_field, want_reason, want_label) in cases {
            let (field, reason, status, label) = field_err(parse_compact(line));
            assert_eq!(
                (field, reason.as_str(), status, label),
                (want_field, want_reason, 422, want_label),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn compact_values_follow_the_dimension_rules() {
        let (f, reason, _, _) = field_err(parse_compact(b"_hb|e|1|a=b"));
        assert_eq!(
            (f, reason.as_str()),
            (ID, "must not contain any of < > = { } , \" \\ ; &")
        );
        let (f, reason, _, _) = field_err(parse_compact(b"_hb|e\tx|1|a"));
        assert_eq!(
            (f, reason.as_str()),
            (ENABLER_ID, "must not contain control characters")
        );
        // A `\r` inside the line is not a line ending.
        let (f, reason, _, _) = field_err(parse_compact(b"_hb|e|1\r|a"));
        assert_eq!(
            (f, reason.as_str()),
            (ENABLER_VERSION, "must not contain control characters")
        );
        let long = format!("_hb|e|{}|a", "v".repeat(256));
        let (f, reason, _, _) = field_err(parse_compact(long.as_bytes()));
        assert_eq!(
            (f, reason.as_str()),
            (ENABLER_VERSION, "must be at most 255 characters")
        );
        let (f, reason, _, _) = field_err(parse_compact(b"_hb|e|1|\xff"));
        assert_eq!((f, reason.as_str()), (ID, "must be valid UTF-8"));
        let ok = format!("_hb|e|{}|a", "é".repeat(255));
        assert!(parse_compact(ok.as_bytes()).is_ok());
    }

    #[test]
    fn both_forms_agree() {
        let json = parse_json(
            br#"{"ID":"c","Enabler_ID":"orion","Enabler_Version":"3.4.0","Timestamp":"42"}"#,
        );
        assert_eq!(json, parse_compact(b"_hb|orion|3.4.0|c|T42"));
    }
}
