//! The rules for names that Lifeboat turns into engine objects and host paths: container and
//! volume names, bind-mount host paths, snapshot ids. Each comes from someone else (the
//! command line, an API body, a manifest in the repository), so each is checked here, once,
//! before any path is derived from it.

use std::fmt;

/// A name that breaks its rule, with what was given and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What the name is for ("container name", "volume name", ...).
    pub what: &'static str,
    /// The offending value, escaped for printing.
    pub value: String,
    /// The rule, in words.
    pub rule: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.rule)
    }
}

impl std::error::Error for NameError {}

fn fail(what: &'static str, value: &str, rule: &'static str) -> NameError {
    NameError {
        what,
        value: value.escape_debug().to_string(),
        rule,
    }
}

/// Docker's own rule for object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 255 bytes (a
/// leading `/`, as inspect prints names, is accepted and not part of the name).
fn docker_name(what: &'static str, value: &str) -> Result<(), NameError> {
    const RULE: &str = "use 2-255 characters from a-z, A-Z, 0-9, `_`, `.`, `-`, starting with \
                        a letter or digit";
    let name = value.strip_prefix('/').unwrap_or(value);
    let b = name.as_bytes();
    let ok = (2..=255).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(fail(what, value, RULE))
    }
}

/// A container name (as given to `--as`, the API's `as`, or stored in a manifest).
pub fn container_name(value: &str) -> Result<(), NameError> {
    docker_name("container name", value)
}

/// A named volume's name.
pub fn volume_name(value: &str) -> Result<(), NameError> {
    docker_name("volume name", value)
}

/// A bind mount's host path: absolute, normalised (no empty, `.` or `..` components), not
/// the root itself, no NUL. Restoring writes there, so a path that walks elsewhere is refused.
pub fn bind_path(value: &str) -> Result<(), NameError> {
    const RULE: &str = "a bind mount's host path must be absolute and normalised (no `.`, `..` \
                        or empty components), and not `/`";
    let trimmed = value.trim_end_matches('/');
    let ok = value.starts_with('/')
        && !trimmed.is_empty()
        && !value.contains('\0')
        && trimmed[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(fail("bind path", value, RULE))
    }
}

/// A snapshot or backup id as a user selects it (a prefix is fine; empty is not "the newest").
pub fn snapshot_selector(value: &str) -> Result<(), NameError> {
    const RULE: &str = "give a snapshot id or backup id (a prefix is enough), or leave the \
                        option out for the newest";
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(fail("snapshot", value, RULE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn container_names_follow_dockers_rule() {
        for good in ["web", "web-2", "a.b_c", "/web", "db1"] {
            assert!(container_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "x",
            "x/../../../victim",
            "../x",
            "-web",
            ".web",
            "a b",
            "a\0b",
            "ü1",
        ] {
            assert!(container_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bind_paths_must_be_absolute_and_normalised() {
        for good in ["/srv/conf", "/srv/conf/", "/etc/agent/config.yaml", "/a"] {
            assert!(bind_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/",
            "//",
            "srv/conf",
            "/srv/../etc",
            "/srv/./x",
            "/srv//x",
            "/a\0b",
        ] {
            assert!(bind_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_snapshot_selector_is_an_error_not_the_newest() {
        assert!(snapshot_selector("").is_err());
        assert!(snapshot_selector("1a2b").is_ok());
        assert!(snapshot_selector("web-20261123T203434Z-1a2b3c4d").is_ok());
        assert!(snapshot_selector("../x").is_err());
    }

    proptest! {
        #[test]
        fn a_valid_container_name_never_holds_a_path_separator(s in "\\PC{0,40}") {
            if container_name(&s).is_ok() {
                let name = s.strip_prefix('/').unwrap_or(&s);
                prop_assert!(!name.contains('/') && name != "." && name != "..");
            }
        }

        #[test]
        fn a_valid_bind_path_never_climbs(s in "(/[a-z.]{0,3}){0,5}/?") {
            if bind_path(&s).is_ok() {
                prop_assert!(!s.split('/').any(|c| c == ".."));
            }
        }
    }
}
