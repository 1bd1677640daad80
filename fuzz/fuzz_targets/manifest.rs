//! A manifest is read from any snapshot tagged as one: hostile input. Parsing never panics,
//! and what parses writes back to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_model::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::from_json(text) else {
        return;
    };
    let _ = manifest.total_bytes();
    let again = Manifest::from_json(&manifest.to_json()).expect("a written manifest reads back");
    assert_eq!(again, manifest, "a manifest changed on a write and read");
    let _ = manifest.redacted().to_json();
});
