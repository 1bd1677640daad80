//! Human durations in policies: `90s`, `5m`, `1h30m`, `7d`, `2w`.

use std::time::Duration;

use super::PolicyError;

/// Parses a duration made of `<number><unit>` pairs (units `s`, `m`, `h`, `d`, `w`).
pub fn parse_duration(text: &str) -> Result<Duration, PolicyError> {
    let bad = |why: &str| PolicyError::Duration {
        text: text.to_string(),
        why: why.to_string(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad("units are s, m, h, d and w, as in 90s, 5m, 1h30m, 7d")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| bad("a unit must follow a number, as in 5m"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("it is too long"))?;
    }
    if !digits.is_empty() {
        return Err(bad("the last number has no unit (write 300s, not 300)"));
    }
    if total == 0 {
        return Err(bad("it must be longer than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// The shortest spelling of a whole number of seconds (`300` → `5m`, `5400` → `1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_combinations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(1_209_600)
        );
    }

    #[test]
    fn durations_without_units_or_zero_are_refused_with_a_reason() {
        for bad in ["", "300", "5x", "0s", "m", "99999999999999999999w"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatted_durations_parse_back(secs in 1u64..10_000_000) {
            let d = Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
