//! Puts the build's git revision into `lifeboat --version`: `LIFEBOAT_GIT_REV` when set (an
//! image build, whose context has no `.git`), else the clone's HEAD, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    // The commit only: whether the tree had changes is not tracked (it would rebuild on
    // every `git status`).
    println!("cargo:rerun-if-env-changed=LIFEBOAT_GIT_REV");
    let rev = std::env::var("LIFEBOAT_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LIFEBOAT_GIT_REV={rev}");
    // Rebuilt when HEAD moves (a commit, a checkout).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        // The branch's ref, loose or packed (a path that does not exist would rerun this
        // on every build).
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            for path in [format!("{dir}/{r}"), format!("{dir}/packed-refs")] {
                if std::path::Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
