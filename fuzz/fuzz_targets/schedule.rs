//! Schedules (`@every 5m`, five-field cron) from labels and config. Parsing never panics;
//! the next run is strictly after the given time, and a schedule's own spelling parses to
//! the same schedule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_model::policy::Schedule;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (at, text) = data.split_at(8);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(text) else {
        return;
    };
    // Any second from 1970 to about 2200.
    let secs = (u64::from_le_bytes(at.try_into().unwrap()) % 7_300_000_000) as i64;
    let t = jiff::Timestamp::from_second(secs).unwrap();
    let next = schedule.next_after(t);
    if let Some(n) = next {
        assert!(n > t, "next run {n} is not after {t}");
    }
    let _ = schedule.interval(t);
    let again = Schedule::parse(&schedule.spec()).expect("a schedule's spelling parses");
    assert_eq!(again.next_after(t), next, "the spelling `{}` runs at other times", schedule.spec());
});
