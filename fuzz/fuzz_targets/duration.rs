//! Durations (`90s`, `1h30m`, `2w`) from labels and config. Parsing never panics or
//! overflows, and the shortest spelling reads back to the same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_model::policy::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = parse_duration(text) else {
        return;
    };
    assert!(d.as_secs() > 0, "`{text}` parsed to zero");
    let spelled = format_duration(d);
    assert_eq!(parse_duration(&spelled).ok(), Some(d), "`{spelled}` reads back differently");
});
