//! The daemon's OpenAPI document against the daemon itself: schemathesis (from PyPI)
//! generates requests for every operation of `/api/v1/openapi.json` and checks that none
//! answers 5xx, that every status, content type and body matches the document, and that
//! every protected route refuses a request without the token.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::daemon::{Daemon, TOKEN, managed, succeeded};

fn schemathesis() -> PathBuf {
    std::env::var_os("LIFEBOAT_SCHEMATHESIS").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/lifeboat/schemathesis/bin/st")
        },
        PathBuf::from,
    )
}

#[test]
fn schemathesis_finds_no_server_error_and_every_response_matches_the_openapi_document() {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let scope = unique("lbt-contract");
    let vol = unique("lbt-contract-data");
    new_volume(&mut c, &vol);
    managed(
        &mut c,
        &scope,
        &scope,
        Some(&vol),
        &["lifeboat.schedule=1h"],
    );
    let d = Daemon::start(&lb, &scope, "");
    d.wait_until("the first backup", Duration::from_secs(60), || {
        succeeded(&d.jobs(&scope)) == 1
    });
    let st = schemathesis();
    let out = Command::new(&st)
        .args(["run", &format!("{}/api/v1/openapi.json", d.base)])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--hypothesis-max-examples", "40"])
        .args(["--hypothesis-seed", "20261202", "--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-engine)", st.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    // Every operation was exercised.
    assert!(
        text.contains("16 passed"),
        "not every operation ran:\n{text}"
    );
    // The service it never named is untouched: still one backup, no restore.
    let jobs = d.jobs(&scope);
    assert!(
        jobs.iter().all(|j| j["kind"] == "backup"),
        "schemathesis reached the real service: {jobs:?}"
    );
}
