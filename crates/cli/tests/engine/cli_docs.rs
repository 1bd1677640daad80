//! What operators expect of a command-line tool: `--version` names the build's revision,
//! completions that complete in a real shell, a man page that renders.

use std::process::Command;

fn lifeboat(args: &[&str]) -> String {
    // A state directory that cannot exist: these commands must not need one.
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .env("LIFEBOAT_STATE_DIR", "/nonexistent/lifeboat-state")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lifeboat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_git_revision_it_was_built_from() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    let v = lifeboat(&["--version"]);
    assert!(
        v.starts_with(&format!("lifeboat {} (git ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains(head.trim()), "{v} does not name HEAD {head}");
}

#[test]
fn bash_completion_completes_commands_and_flags_in_a_real_bash() {
    let script = lifeboat(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lifeboat.bash");
    std::fs::write(&file, script).unwrap();
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; \
                 _lifeboat lifeboat \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = complete("lifeboat res", 1);
    assert!(commands.lines().any(|l| l == "restore"), "{commands}");
    assert!(!commands.lines().any(|l| l == "backup"), "{commands}");
    let flags = complete("lifeboat backup --with", 2);
    assert!(flags.lines().any(|l| l == "--with-image"), "{flags}");
    for shell in ["zsh", "fish"] {
        let s = lifeboat(&["completions", shell]);
        for word in ["restore", "drill", "cluster", "with-image"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn the_man_page_renders_with_every_command_and_the_exit_codes() {
    let page = lifeboat(&["man"]);
    assert!(
        page.contains(".TH lifeboat 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lifeboat.1");
    std::fs::write(&file, &page).unwrap();
    // Plain text: no bold, underline or overstrike.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(&file)
        .output()
        .expect("groff (Debian's groff-base)");
    assert!(out.status.success());
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "groff warnings: {warnings}");
    // Justified lines: words are compared with single spaces.
    let text = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for word in [
        "backup",
        "restore",
        "drill",
        "recover",
        "daemon",
        "cluster",
        "completions",
    ] {
        assert!(text.contains(word), "the man page lacks {word}");
    }
    assert!(text.contains("Exit codes"), "no exit codes in the man page");
}
