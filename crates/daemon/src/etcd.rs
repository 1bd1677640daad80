//! The etcd client: etcd's v3 API through its JSON gateway (`POST /v3/...`, etcd 3.4 and
//! later), over plain HTTP with a short timeout, trying each endpoint in turn. The only place
//! that knows etcd's wire format. Keys and values are bytes (base64 on the wire); revisions
//! and lease ids are 64-bit numbers written as JSON strings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// Why etcd did not answer as asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("no etcd endpoint answered ({endpoints}): {last}; is etcd running and reachable?")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last endpoint's error.
        last: String,
    },
    /// An endpoint answered with an error.
    #[error("etcd refused {what}: {message}")]
    Refused {
        /// The request.
        what: String,
        /// etcd's message.
        message: String,
    },
}

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created it (its identity across rewrites: a fence).
    pub create_revision: i64,
    /// The revision of its last write.
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub enum Cond<'a> {
    /// The key was created at this revision (0: it does not exist).
    Created(&'a str, i64),
    /// The key was last written at this revision (0: it does not exist).
    Modified(&'a str, i64),
}

/// A write in a transaction.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    /// Put `value` under `key`, attached to a lease (0: none).
    Put(&'a str, &'a [u8], i64),
    /// Delete `key`.
    Delete(&'a str),
}

/// A client of one etcd cluster.
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    /// The endpoint that answered last (tried first).
    current: AtomicUsize,
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv(v: &Value) -> Kv {
    let bytes = |f: &str| {
        v[f].as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    };
    Kv {
        key: String::from_utf8_lossy(&bytes("key")).into_owned(),
        value: bytes("value"),
        create_revision: num(&v["create_revision"]),
        mod_revision: num(&v["mod_revision"]),
        lease: num(&v["lease"]),
    }
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`http://HOST:PORT`); nothing is sent yet.
    /// Each request waits at most `timeout` per endpoint.
    pub fn new(endpoints: &[String], timeout: Duration) -> Etcd {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Etcd {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            agent,
            current: AtomicUsize::new(0),
        }
    }

    fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no endpoint configured");
        for i in 0..n {
            let at = (first + i) % n;
            let url = format!("{}/v3/{path}", self.endpoints[at]);
            let answer = self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(&body[..]);
            let mut resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{}: {e}", self.endpoints[at]);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = match resp.body_mut().read_to_string() {
                Ok(t) => t,
                Err(e) => {
                    last = format!("{}: {e}", self.endpoints[at]);
                    continue;
                }
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // A member cut off from its quorum answers "no leader" or times out: try another.
            if status >= 500 || status == 0 {
                last = format!("{}: HTTP {status}: {}", self.endpoints[at], text.trim());
                continue;
            }
            self.current.store(at, Ordering::Relaxed);
            if status != 200 || v.get("error").is_some() {
                return Err(EtcdError::Refused {
                    what: path.to_string(),
                    message: v["message"]
                        .as_str()
                        .or(v["error"].as_str())
                        .unwrap_or(text.trim())
                        .to_string(),
                });
            }
            return Ok(v);
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(", "),
            last,
        })
    }

    /// A new lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self.call("lease/grant", json!({"TTL": ttl}))?;
        Ok(num(&v["ID"]))
    }

    /// Renews lease `id`; the seconds it has left (0: it expired, and what it held is gone).
    pub fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let v = self.call("lease/keepalive", json!({"ID": id.to_string()}))?;
        Ok(num(&v["result"]["TTL"]))
    }

    /// Ends lease `id` now: the keys attached to it go.
    pub fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("lease/revoke", json!({"ID": id.to_string()}))
            .map(|_| ())
    }

    /// Writes `value` under `key`, attached to `lease` (0: none).
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.call("kv/put", put_body(key, value, lease)).map(|_| ())
    }

    /// The key, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self.call("kv/range", json!({"key": B64.encode(key)}))?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).map(kv))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let v = self.call(
            "kv/range",
            json!({"key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix))}),
        )?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect())
            .unwrap_or_default())
    }

    /// Applies `ops` if every condition holds, atomically. Returns whether they held and,
    /// when they did, the revision the writes got.
    pub fn txn(&self, conds: &[Cond<'_>], ops: &[Op<'_>]) -> Result<(bool, i64), EtcdError> {
        let compare: Vec<Value> = conds
            .iter()
            .map(|c| match c {
                Cond::Created(key, rev) => json!({"target": "CREATE", "result": "EQUAL",
                    "key": B64.encode(key), "create_revision": rev.to_string()}),
                Cond::Modified(key, rev) => json!({"target": "MOD", "result": "EQUAL",
                    "key": B64.encode(key), "mod_revision": rev.to_string()}),
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|o| match o {
                Op::Put(key, value, lease) => json!({"request_put": put_body(key, value, *lease)}),
                Op::Delete(key) => json!({"request_delete_range": {"key": B64.encode(key)}}),
            })
            .collect();
        let v = self.call("kv/txn", json!({"compare": compare, "success": success}))?;
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            num(&v["header"]["revision"]),
        ))
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("kv/deleterange", json!({"key": B64.encode(key)}))
            .map(|_| ())
    }
}

fn put_body(key: &str, value: &[u8], lease: i64) -> Value {
    let mut body = json!({"key": B64.encode(key), "value": B64.encode(value)});
    if lease != 0 {
        body["lease"] = json!(lease.to_string());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_just_past_every_key_with_that_prefix() {
        assert_eq!(prefix_end("/lifeboat/hosts/"), b"/lifeboat/hosts0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn revisions_and_leases_are_read_from_strings_or_numbers() {
        let v = json!({"key": B64.encode("/k"), "value": B64.encode("v"),
                       "create_revision": "12", "mod_revision": 13, "lease": "99"});
        let k = kv(&v);
        assert_eq!(
            (k.key.as_str(), k.value.as_slice()),
            ("/k", b"v".as_slice())
        );
        assert_eq!((k.create_revision, k.mod_revision, k.lease), (12, 13, 99));
        assert_eq!(kv(&json!({})).create_revision, 0);
    }
}
