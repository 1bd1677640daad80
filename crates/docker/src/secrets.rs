//! Secret values seen in containers' environments, kept so that every text Lifeboat prints or
//! stores (logs, errors, hook output, job history, webhooks) can be scrubbed of them: a hook
//! that echoes `$DB_PASSWORD`, or an engine log line holding the inspect JSON, must not carry
//! the value any further. The values themselves stay in memory only.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// What replaces a secret in text.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are too common (`1`, `true`, `prod`) to scrub from text without
/// garbling it; they still never leave the repository through Lifeboat's own output of env.
const MIN_SECRET_LEN: usize = 6;

fn known() -> &'static Mutex<BTreeSet<String>> {
    static KNOWN: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Remembers the values of `KEY=value` pairs (called for every container inspected).
pub fn remember_env(env: &[String]) {
    let mut set = known().lock().unwrap_or_else(|p| p.into_inner());
    for kv in env {
        if let Some((_, value)) = kv.split_once('=')
            && value.len() >= MIN_SECRET_LEN
        {
            set.insert(value.to_string());
        }
    }
}

/// `text` with every remembered env value, and every `"Env":[...]` array of engine JSON,
/// replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = scrub_env_arrays(text);
    let set = known().lock().unwrap_or_else(|p| p.into_inner());
    // Longest first, so a value that contains another is replaced whole.
    let mut values: Vec<&String> = set.iter().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

/// Replaces the content of each `"Env":[ ... ]` (inspect and create bodies) in `text`.
fn scrub_env_arrays(text: &str) -> String {
    const KEY: &str = "\"Env\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        let trimmed = tail.trim_start();
        if let Some(array) = trimmed.strip_prefix('[') {
            // Env entries are JSON strings; the array ends at the first `]` outside a string.
            match array_end(array) {
                Some(end) => {
                    out.push_str(&format!("[\"{REDACTED}\"]"));
                    rest = &array[end + 1..];
                }
                None => {
                    out.push_str(&format!("[\"{REDACTED}\""));
                    rest = "";
                }
            }
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn array_end(s: &str) -> Option<usize> {
    let (mut in_string, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (false, _, '"') => in_string = true,
            (false, _, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_env_values_are_scrubbed_from_any_text() {
        remember_env(&["DB_PASSWORD=hunter2-very-secret".into(), "ON=1".into()]);
        let hook = "pre hook failed: login as admin with hunter2-very-secret refused; ON=1";
        let red = redact(hook);
        assert!(!red.contains("hunter2-very-secret"), "{red}");
        assert!(red.contains("ON=1"), "short values are left: {red}");
    }

    #[test]
    fn env_arrays_in_engine_json_are_scrubbed_before_anything_is_remembered() {
        let body = r#"{"Config":{"Env":["TOKEN=never-seen-before","X=\"]\""],"Cmd":["sh"]}}"#;
        let red = redact(body);
        assert!(!red.contains("never-seen-before"), "{red}");
        assert!(red.contains(r#""Cmd":["sh"]"#), "the rest is kept: {red}");
        assert_eq!(redact("no env here"), "no env here");
    }
}
