//! Number parsing for statsd values: a branch-light fast path for plain integers (the bulk of
//! real traffic), the standard library's correctly rounded parser for everything else.

use crate::reason::Reject;

/// Parse one statsd number. Accepts what `f64::from_str` accepts except non-finite values.
#[inline]
pub fn parse(s: &str) -> Result<f64, Reject> {
    let b = s.as_bytes();
    // Up to 15 digits fit exactly in an f64 mantissa, so the fast path is exact.
    if !b.is_empty() && b.len() <= 15 && b.iter().all(u8::is_ascii_digit) {
        let mut n: u64 = 0;
        for &d in b {
            n = n * 10 + u64::from(d - b'0');
        }
        return Ok(n as f64);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(Reject::NonFiniteValue),
        Err(_) => Err(Reject::BadValue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_floats_and_signs() {
        assert_eq!(parse("0"), Ok(0.0));
        assert_eq!(parse("42"), Ok(42.0));
        assert_eq!(parse("999999999999999"), Ok(999_999_999_999_999.0));
        assert_eq!(parse("12345678901234567"), Ok(12_345_678_901_234_567.0));
        assert_eq!(parse("0.25"), Ok(0.25));
        assert_eq!(parse(".5"), Ok(0.5));
        assert_eq!(parse("+3"), Ok(3.0));
        assert_eq!(parse("-3.5"), Ok(-3.5));
        assert_eq!(parse("1e3"), Ok(1000.0));
    }

    #[test]
    fn garbage_and_non_finite_are_refused() {
        for bad in ["", "abc", "1,5", "1_000", "0x10", "--1", " 1", "1 "] {
            assert_eq!(parse(bad), Err(Reject::BadValue), "{bad:?}");
        }
        for inf in ["inf", "-inf", "NaN", "infinity", "1e400"] {
            assert_eq!(parse(inf), Err(Reject::NonFiniteValue), "{inf:?}");
        }
    }
}
