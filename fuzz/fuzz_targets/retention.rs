//! Retention arithmetic: which backups a policy keeps. The first line is the rule, the rest
//! of the input backup times. Never panics; the newest backup is always kept; the answer does
//! not depend on the order the backups are listed in; `within` keeps everything in its window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_model::policy::Retention;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (rule, rest) = data.split_at(split);
    let Ok(rule) = std::str::from_utf8(rule) else {
        return;
    };
    let Ok(retention) = Retention::parse(rule) else {
        return;
    };
    let again = Retention::parse(&retention.spec()).expect("a rule's spelling parses");
    assert_eq!(again, retention, "the spelling `{}` is another rule", retention.spec());
    // Backup times, 5 bytes each: any second of jiff's range (year -9999 to 9999).
    let times: Vec<jiff::Timestamp> = rest
        .chunks_exact(5)
        .map(|c| {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], 0, 0, 0]) as i64;
            let span = jiff::Timestamp::MAX.as_second() - jiff::Timestamp::MIN.as_second();
            jiff::Timestamp::from_second(jiff::Timestamp::MIN.as_second() + v % span).unwrap()
        })
        .collect();
    let keep = retention.keep(&times);
    assert_eq!(keep.len(), times.len());
    let Some(newest) = times.iter().max() else {
        return;
    };
    for (t, k) in times.iter().zip(&keep) {
        if t == newest {
            assert!(*k, "the newest backup was not kept");
        }
        if let Some(w) = retention.within {
            if newest.as_second() - t.as_second() < w.as_secs() as i64 {
                assert!(*k, "a backup within {w:?} of the newest was not kept");
            }
        }
    }
    // The same times listed in reverse keep the same backups. Equal times may be told apart
    // by position, so the comparison is of how many are kept at each time.
    let mut reversed = times.clone();
    reversed.reverse();
    let keep_rev = retention.keep(&reversed);
    let count = |ts: &[jiff::Timestamp], ks: &[bool]| {
        let mut m = std::collections::BTreeMap::new();
        for (t, k) in ts.iter().zip(ks) {
            *m.entry(*t).or_insert(0u32) += u32::from(*k);
        }
        m
    };
    assert_eq!(count(&times, &keep), count(&reversed, &keep_rev), "order changed what is kept");
});
