//! Config value units: durations (`10s`, `250ms`, `1h30m`) and byte sizes (`64MiB`, `512`).
//!
//! Both read the forms operators write and serialize back to a compact string that reads the
//! same, so `Config` round-trips through YAML and through the env overlay unchanged.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A span of time written with a unit: `10s`, `250ms`, `5m`, `1h30m` (humantime syntax).
///
/// A bare number is refused: `10` could mean seconds or milliseconds, and guessing wrong by
/// a factor of 1000 is worse than asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The form the shipped file and the docs use: hours at most (`24h`, not humantime's
        // `1day`), no spaces (`1h30m`), and it parses back to the same value.
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        let total_ms = self.0.as_millis();
        let sub_ms = self.0.subsec_nanos() % 1_000_000;
        let mut rest = total_ms;
        for (unit, ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= ms {
                write!(f, "{}{unit}", rest / ms)?;
                rest %= ms;
            }
        }
        if sub_ms > 0 {
            write!(f, "{sub_ms}ns")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.parse::<f64>().is_ok() {
            return Err(format!(
                "invalid duration {s:?}: expected a duration with a unit, like \"10s\", \"250ms\" or \"5m\""
            ));
        }
        humantime::parse_duration(t).map(Self).map_err(|e| {
            format!("invalid duration {s:?}: {e}; expected a duration with a unit, like \"10s\"")
        })
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, like \"10s\"")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(E::custom)
            }

            // YAML `interval: 10` arrives as a number: same refusal as the string "10".
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
                Err(bare_number(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
                Err(bare_number(n))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
                Err(bare_number(n))
            }
        }
        d.deserialize_any(V)
    }
}

fn bare_number<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid duration {n}: expected a duration with a unit, like \"10s\", \"250ms\" or \"5m\""
    ))
}

/// A number of bytes. Reads `64MiB`, `8 KiB`, `1GiB`, `512B`, a plain integer `512` or the
/// string `"512"` (bytes).
///
/// IEC units are binary (`1KiB` = 1024); SI units are decimal as in the `bytesize` crate
/// (`1KB` = 1000). A lone letter (`64M`, `8k`) is refused because operators read it as
/// binary while `bytesize` reads it as decimal. Fractions of a unit (`1.5KiB`) are allowed
/// and rounded down to whole bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;

impl ByteSize {
    pub const fn b(bytes: u64) -> Self {
        Self(bytes)
    }

    pub const fn kib(kib: u64) -> Self {
        Self(kib * KIB)
    }

    pub const fn mib(mib: u64) -> Self {
        Self(mib * MIB)
    }

    pub const fn gib(gib: u64) -> Self {
        Self(gib * MIB * KIB)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest IEC unit that divides the size exactly, so the text parses back to the
    /// same number: `64MiB`, `8KiB`, `1000B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let (mut n, mut unit) = (self.0, 0);
        while n != 0 && n % KIB == 0 && unit + 1 < UNITS.len() {
            n /= KIB;
            unit += 1;
        }
        write!(f, "{n}{}", UNITS[unit])
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        // Plain digits are exact bytes; no float detour.
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Self(n));
        }
        let hint = "expected bytes or a number with a unit, like \"64MiB\", \"8KiB\" or \"512B\"";
        let number_len = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..number_len], t[number_len..].trim_start());
        // bytesize reads a lone `M` as 10^6 where operators mean MiB: make them say which.
        if unit.len() == 1 && "kmgtpe".contains(unit.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "invalid size {s:?}: unit {unit:?} is ambiguous, write {unit}iB (1024) or {unit}B (1000)"
            ));
        }
        // bytesize names the units; the arithmetic is done here because bytesize saturates
        // on overflow instead of failing.
        let factor = unit
            .parse::<bytesize::Unit>()
            .map_err(|e| format!("invalid size {s:?}: {e}; {hint}"))?
            * 1u64;
        let too_large = || format!("invalid size {s:?}: too large");
        if let Ok(n) = number.parse::<u64>() {
            return n.checked_mul(factor).map(Self).ok_or_else(too_large);
        }
        match number.parse::<f64>() {
            Ok(v) if !number.starts_with('.') => {
                let bytes = v * factor as f64;
                // 2^64 is exactly representable; anything from it up does not fit.
                if bytes < 18_446_744_073_709_551_616.0 {
                    Ok(Self(bytes as u64))
                } else {
                    Err(too_large())
                }
            }
            _ => Err(format!("invalid size {s:?}: {hint}")),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"64MiB\" or a number of bytes")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {n}: must not be negative")))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size {n}: expected whole bytes or a number with a unit, like \"64MiB\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(yaml: &str) -> Result<ByteSize, String> {
        serde_saphyr::from_str::<ByteSize>(yaml).map_err(|e| e.to_string())
    }

    fn dur(yaml: &str) -> Result<Duration, String> {
        serde_saphyr::from_str::<Duration>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_parse_iec_as_binary_and_si_as_decimal() {
        assert_eq!(size("64MiB").unwrap(), ByteSize::mib(64));
        assert_eq!(size("8KiB").unwrap(), ByteSize::kib(8));
        assert_eq!(size("1GiB").unwrap(), ByteSize::mib(1024));
        assert_eq!(size("512B").unwrap(), ByteSize::b(512));
        assert_eq!(size("64 MiB").unwrap(), ByteSize::mib(64));
        assert_eq!(size("1kib").unwrap(), ByteSize::kib(1));
        assert_eq!(size("1KB").unwrap(), ByteSize::b(1000));
        assert_eq!(size("1.5KiB").unwrap(), ByteSize::b(1536));
        assert_eq!(size("512").unwrap(), ByteSize::b(512));
        assert_eq!(size("\"512\"").unwrap(), ByteSize::b(512));
        assert_eq!(size("0").unwrap(), ByteSize::b(0));
        assert_eq!(
            size("9007199254740993").unwrap(),
            ByteSize::b(9_007_199_254_740_993)
        );
    }

    #[test]
    fn sizes_refuse_junk() {
        for bad in [
            "-1",
            "1.5",
            "abc",
            "64M",
            "8k",
            "12XB",
            "\"\"",
            "100000000EiB",
            "true",
            ".5KiB",
            "KiB",
            "1..2KiB",
            "16EiB",
            "20000000000000000000B",
            "2e3B",
            "5x",
        ] {
            let err = size(bad).expect_err(bad);
            assert!(err.contains("size"), "{bad}: {err}");
        }
        assert!(size("64M").unwrap_err().contains("MiB"));
    }

    #[test]
    fn sizes_serialize_compactly_and_round_trip() {
        let cases = [
            (ByteSize::mib(64), "64MiB"),
            (ByteSize::kib(8), "8KiB"),
            (ByteSize::b(1000), "1000B"),
            (ByteSize::b(0), "0B"),
            (ByteSize::b(1536), "1536B"),
            (ByteSize::mib(1024), "1GiB"),
            (ByteSize::b(u64::MAX), "18446744073709551615B"),
        ];
        for (value, text) in cases {
            assert_eq!(value.to_string(), text);
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::json!(text)
            );
            assert_eq!(size(text).unwrap(), value, "{text}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(dur("10s").unwrap(), Duration::secs(10));
        assert_eq!(dur("250ms").unwrap(), Duration::millis(250));
        assert_eq!(dur("5m").unwrap(), Duration::secs(300));
        assert_eq!(dur("1h30m").unwrap(), Duration::secs(5400));
        assert_eq!(dur("1h 30m").unwrap(), Duration::secs(5400));
        assert_eq!(Duration::secs(5).get(), std::time::Duration::from_secs(5));
    }

    #[test]
    fn durations_refuse_bare_numbers_and_junk() {
        for bad in ["10", "\"10\"", "1.5", "-5s", "ten", "10x"] {
            let err = dur(bad).expect_err(bad);
            assert!(err.contains("like \"10s\""), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_serialize_as_humantime_and_round_trip() {
        let cases = [
            (Duration::secs(10), "10s"),
            (Duration::secs(300), "5m"),
            (Duration::secs(5400), "1h30m"),
            (Duration::millis(250), "250ms"),
            (Duration::millis(1500), "1s500ms"),
            (Duration::from(std::time::Duration::from_nanos(3)), "3ns"),
            (Duration::secs(86_400), "24h"),
            (Duration::secs(8 * 86_400 + 61), "192h1m1s"),
            (Duration::secs(0), "0s"),
        ];
        for (value, text) in cases {
            assert_eq!(value.to_string(), text);
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::json!(text)
            );
            assert_eq!(dur(text).unwrap(), value, "{text}");
        }
    }
}
