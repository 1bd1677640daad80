//! The daemon's log: one JSON object per line on stderr, with every known secret value
//! scrubbed. Everything in the daemon that logs goes through here.

use jiff::Timestamp;

/// Logs one JSON line on stderr, secrets scrubbed.
pub fn log_line(level: &str, msg: &str, fields: serde_json::Value) {
    let mut obj = serde_json::json!({
        "time": lifeboat_model::format_timestamp(Timestamp::now()),
        "level": level,
        "msg": msg,
    });
    if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
        o.extend(f);
    }
    eprintln!("{}", lifeboat_docker::secrets::redact(&obj.to_string()));
}
