//! Labels come from whoever can start a container: hostile input. Lines `key=value` become
//! `lifeboat.key` labels; resolving never panics, and a policy that resolves is usable.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lifeboat_model::policy::{PolicyOptions, failover_hosts, is_enabled};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut labels = BTreeMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        labels.insert(format!("lifeboat.{k}"), v.to_string());
    }
    let _ = is_enabled(&labels, false);
    let _ = failover_hosts(&labels);
    let named = BTreeMap::from([("p".to_string(), PolicyOptions::from_labels(&labels))]);
    let Ok(policy) = PolicyOptions::resolve(&PolicyOptions::default(), &named, &labels) else {
        return;
    };
    let _ = policy.fingerprint();
    let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    if let Some(next) = policy.schedule.next_after(now) {
        assert!(next > now, "the next backup is not after now");
    }
    let _ = policy.schedule.interval(now);
    let _ = policy.recovery.backoff(policy.recovery.attempts);
    if let Some(r) = &policy.retention {
        let kept = r.keep(&[now]);
        assert_eq!(kept, vec![true], "the only backup was not kept");
    }
});
