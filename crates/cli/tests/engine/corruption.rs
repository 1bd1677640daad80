//! Corruption, as a table: a flipped byte, a truncated file and a deleted file, each in a pack,
//! an index file and a snapshot file of one service's backup, beside another service's
//! untouched one. For each: `check --read-data` fails and names the object (a deleted snapshot
//! file leaves nothing to name: its backup is simply gone), the damaged backup's restore fails
//! with no container and no wrong byte written, the other restores identical, and the repair
//! the README documents brings `check` back to clean. Each case prints a `corruption-row`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Object {
    Pack,
    Index,
    Snapshot,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn damage(file: &Path, how: Damage) {
    match how {
        Damage::Flip => flip_byte(file, 0.5),
        Damage::Truncate => {
            let len = std::fs::metadata(file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Damage::Delete => std::fs::remove_file(file).unwrap(),
    }
}

/// What one case found; empty `failures` when every expectation held.
struct Case {
    row: Vec<String>,
    failures: Vec<String>,
}

impl Case {
    fn expect(&mut self, ok: bool, what: String) {
        if !ok {
            self.failures.push(what);
        }
    }
}

/// Restores `name` as a copy; the run, whether a container was created, and the files left
/// in the copy's volume whose bytes are not the original's.
fn restore_as(
    lb: &Lb,
    c: &mut Cleanup,
    name: &str,
    vol: &str,
    original: &Path,
) -> (Run, bool, Vec<String>, Vec<String>) {
    let (copy, run) = lb.restore_copy(c, name, vol);
    let created = docker_ok(&["inspect", "--type", "container", &copy]);
    let copy_vol = format!("{copy}_{vol}");
    // A file written must be the original's: absent or empty is allowed, wrong is not.
    let mut wrong = Vec::new();
    let mut diffs = vec!["no volume".to_string()];
    if docker_ok(&["volume", "inspect", &copy_vol]) {
        let target = volume_path(&copy_vol);
        diffs = compare_trees(original, &target);
        for f in files(&target) {
            let rel = f.strip_prefix(&target).unwrap();
            let want = std::fs::read(original.join(rel)).ok();
            let got = std::fs::read(&f).unwrap();
            let fine = want.as_ref().is_some_and(|w| *w == got || got.is_empty());
            if !fine {
                wrong.push(rel.display().to_string());
            }
        }
    }
    (run, created, wrong, diffs)
}

fn one_case(object: Object, how: Damage) -> Case {
    let lb = Lb::new();
    let mut c = Cleanup::default();
    let mut case = Case {
        row: vec![
            format!("{object:?}").to_lowercase(),
            format!("{how:?}").to_lowercase(),
        ],
        failures: Vec::new(),
    };
    let prefix = format!("cx-{object:?}-{how:?}").to_lowercase();
    let services: Vec<(String, String, PathBuf)> = ["kept", "hit"]
        .iter()
        .map(|n| {
            let (name, vol) = (
                unique(&format!("{prefix}-{n}")),
                unique(&format!("{prefix}-{n}-v")),
            );
            let path = new_volume(&mut c, &vol);
            std::fs::write(path.join("blob.bin"), PseudoRandom::new(7).bytes(3 << 20)).unwrap();
            std::fs::write(path.join("small.txt"), format!("{n}\n")).unwrap();
            run_sleeper(&mut c, &name, &["-v", &format!("{vol}:/data")]);
            (name, vol, path)
        })
        .collect();
    let (kept, hit) = (&services[0], &services[1]);
    // Different data in each, so the hit backup's packs are its own.
    std::fs::write(hit.2.join("blob.bin"), PseudoRandom::new(8).bytes(3 << 20)).unwrap();
    lb.run(&["backup", &kept.0]).ok();
    let (packs, indexes) = (
        files(&lb.repo().join("data")),
        files(&lb.repo().join("index")),
    );
    let out = lb.run(&["backup", &hit.0, "--json"]).ok().json();
    let manifest = out["backups"][0]["snapshot"].as_str().unwrap().to_string();
    let backup_id = out["backups"][0]["backup_id"].as_str().unwrap().to_string();
    let target = match object {
        Object::Pack => files(&lb.repo().join("data"))
            .difference(&packs)
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .cloned()
            .unwrap(),
        Object::Index => files(&lb.repo().join("index"))
            .difference(&indexes)
            .next()
            .cloned()
            .unwrap(),
        Object::Snapshot => lb.repo().join("snapshots").join(&manifest),
    };
    let short = target.file_name().unwrap().to_string_lossy()[..8].to_string();
    damage(&target, how);

    // check --read-data finds it, and names it where it is still there to be named.
    let check = lb.run(&["check", "--read-data"]);
    let said = format!("{}{}", check.stdout, check.stderr);
    if object == Object::Snapshot && how == Damage::Delete {
        case.expect(
            check.code == 0,
            format!("check after a deleted snapshot file: {said}"),
        );
        case.row
            .push(format!("exit {}: nothing left to name", check.code));
    } else {
        case.expect(
            check.code == 5,
            format!("check exit {}, not 5: {said}", check.code),
        );
        let named = said.contains(&short);
        let names_pack = object == Object::Index && how == Damage::Delete;
        case.expect(
            named || names_pack,
            format!("check does not name {short}: {said}"),
        );
        case.row.push(format!(
            "exit {}, {}",
            check.code,
            if named {
                "names it"
            } else {
                "names the unindexed packs"
            }
        ));
    }
    case.expect(
        !said.contains("panicked"),
        format!("check printed a panic: {said}"),
    );

    // The damaged backup's restore fails loudly; nothing wrong is written.
    // (A damaged object the backup does not need, say an index file listing only blobs
    // another one lists too, may leave it whole: then it restores identical.)
    let (run, created, wrong, diffs) = restore_as(&lb, &mut c, &hit.0, &hit.1, &hit.2);
    let code = run.code;
    case.expect(
        wrong.is_empty(),
        format!("wrong bytes written: {wrong:?}: {}", run.stderr),
    );
    if code == 0 {
        case.expect(
            diffs.is_empty(),
            format!("restored with exit 0 but different: {diffs:?}"),
        );
        case.row
            .push("exit 0, unaffected: restored identical".into());
    } else {
        case.expect(
            code == 5 || (code == 15 && object == Object::Snapshot),
            format!(
                "the damaged backup's restore exit {code}, not 5: {}",
                run.stderr
            ),
        );
        case.expect(
            !created,
            format!("a container was created from damaged data: {}", run.stderr),
        );
        case.expect(
            run.stderr
                .lines()
                .filter(|l| l.contains("panicked"))
                .count()
                == 0,
            format!("the restore printed a panic: {}", run.stderr),
        );
        case.row.push(format!(
            "exit {code}, {}, {} wrong files",
            if created {
                "container created"
            } else {
                "no container"
            },
            wrong.len()
        ));
    }
    // The other service restores identical.
    let (copy, run) = lb.restore_copy(&mut c, &kept.0, &kept.1);
    let same = run.code == 0
        && compare_trees(&kept.2, &volume_path(&format!("{copy}_{}", kept.1))).is_empty();
    case.expect(
        same,
        format!("the undamaged service: exit {}: {}", run.code, run.stderr),
    );
    case.row
        .push(if same { "identical" } else { "DIFFERENT" }.into());

    // The documented repair (README, "Repairing a damaged repository").
    let steps: Vec<Vec<String>> = match (object, how) {
        (Object::Index, _) => vec![vec!["rebuild-index".into()]],
        (Object::Snapshot, Damage::Delete) => vec![],
        (Object::Snapshot, _) => {
            std::fs::remove_file(&target).unwrap();
            vec![]
        }
        (Object::Pack, _) => {
            // The backup's data is lost: its snapshots go (restic's forget takes ids; a tag
            // alone, without a keep rule, removes nothing).
            let listed = lb
                .restic(&[
                    "snapshots",
                    "--tag",
                    &format!("backup={backup_id}"),
                    "--json",
                ])
                .json();
            let mut forget = vec!["forget".to_string()];
            for s in listed.as_array().unwrap() {
                forget.push(s["id"].as_str().unwrap().to_string());
            }
            vec![vec!["rebuild-index".into()], forget, vec!["prune".into()]]
        }
    };
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let r = lb.restic(&args);
        case.expect(
            r.code == 0,
            format!("restic {step:?}: {}{}", r.stdout, r.stderr),
        );
    }
    let check = lb.run(&["check", "--read-data"]);
    case.expect(
        check.code == 0,
        format!("check after the repair: {}{}", check.stdout, check.stderr),
    );
    let repair = match (object, how) {
        (Object::Index, _) => "restic rebuild-index",
        (Object::Snapshot, Damage::Delete) => "none needed",
        (Object::Snapshot, _) => "remove snapshots/ID",
        (Object::Pack, _) => "rebuild-index, forget the backup's snapshots, prune",
    };
    case.row
        .push(format!("{repair}: check exit {}", check.code));
    // After an index repair the damaged backup is whole again.
    if object == Object::Index {
        let (run, _, _, diffs) = restore_as(&lb, &mut c, &hit.0, &hit.1, &hit.2);
        case.expect(
            run.code == 0 && diffs.is_empty(),
            format!("after rebuild-index: exit {}: {}", run.code, run.stderr),
        );
    }
    // And the service's next backup works.
    let next = lb.run(&["backup", &hit.0]);
    case.expect(next.code == 0, format!("the next backup: {}", next.stderr));
    case
}

#[test]
fn every_damaged_object_is_found_named_refused_and_repaired() {
    let mut failed = Vec::new();
    let mut found = 0;
    let cases = [Object::Pack, Object::Index, Object::Snapshot]
        .into_iter()
        .flat_map(|o| [Damage::Flip, Damage::Truncate, Damage::Delete].map(|d| (o, d)));
    // LIFEBOAT_CORRUPTION=index (say) runs only that object's cases.
    let only = std::env::var("LIFEBOAT_CORRUPTION").unwrap_or_default();
    for (object, how) in cases {
        if !format!("{object:?} {how:?}").to_lowercase().contains(&only) {
            continue;
        }
        let case = one_case(object, how);
        eprintln!("corruption-row | {} |", case.row.join(" | "));
        found += u32::from(case.failures.is_empty());
        for f in case.failures {
            failed.push(format!("{object:?} {how:?}: {f}"));
        }
    }
    eprintln!("corruption: {found} of 9 cases held");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
