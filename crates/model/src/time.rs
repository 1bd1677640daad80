//! Timestamps in manifests are RFC 3339, UTC, always with nine fractional digits, so every
//! reader sees the same precision (the mission's "ns versus ms" failure cause).

use jiff::Timestamp;

/// Formats `ts` as `2026-11-23T20:34:34.123456789Z`: UTC, nanosecond precision, fixed width.
pub fn format_timestamp(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// Parses any RFC 3339 timestamp (any precision, any offset) into a UTC instant.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| {
        format!("`{text}` is not an RFC 3339 timestamp ({e}); use e.g. 2026-11-23T20:00:00Z")
    })
}

pub(crate) mod serde_ns {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_timestamp(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_always_carry_nine_fraction_digits_in_utc() {
        let ts: Timestamp = "2026-01-02T03:04:05+02:00".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2026-01-02T01:04:05.000000000Z");
        let ts: Timestamp = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2026-01-02T03:04:05.123456789Z");
        assert_eq!(parse_timestamp(&format_timestamp(ts)).unwrap(), ts);
    }

    #[test]
    fn parse_timestamp_names_the_bad_input() {
        let err = parse_timestamp("yesterday").unwrap_err();
        assert!(err.contains("`yesterday`"), "{err}");
    }
}
