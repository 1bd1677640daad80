//! A small blocking S3 client: the requests restic's repository layout needs (GET with a range,
//! PUT, HEAD, DELETE, ListObjectsV2), each under a timeout, retried with exponential backoff
//! and jitter on what is transient, within a budget after which it fails with a clear reason.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::location::S3Location;
use super::sign::{S3Credentials, ToSign, canonical_query, sign};

/// How hard a request is tried. The defaults are documented in the README ("S3 repositories").
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub first_wait: Duration,
    /// The longest wait between two attempts.
    pub max_wait: Duration,
    /// The most one attempt may take (connect, send, receive).
    pub request_timeout: Duration,
    /// The most connecting may take.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_wait: Duration::from_millis(250),
            max_wait: Duration::from_secs(8),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a request failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Failure {
    /// Every attempt failed with a transient error (connection refused or reset, timeout,
    /// 5xx, SlowDown).
    GaveUp {
        /// What was asked, e.g. `PUT data/ab/ab12…`.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// The last error.
        last: String,
        /// No attempt got an HTTP answer (the endpoint is down or unreachable).
        unreachable: bool,
    },
    /// The credentials were refused (403: unknown key, bad signature, no permission).
    Denied {
        /// The S3 error code and message.
        reason: String,
    },
    /// The bucket does not exist.
    NoBucket,
    /// The object does not exist.
    NotFound {
        /// Its key.
        key: String,
    },
    /// Any other refusal (4xx).
    Refused {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The S3 error code and message.
        reason: String,
    },
    /// An uploaded object does not have the size that was sent.
    SizeMismatch {
        /// Its key.
        key: String,
        /// Bytes sent.
        sent: u64,
        /// Bytes stored.
        stored: u64,
    },
    /// The answer could not be understood (a listing without its continuation token, say).
    Malformed {
        /// What was asked.
        what: String,
        /// What is wrong with the answer.
        reason: String,
    },
}

impl std::fmt::Display for S3Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Failure::GaveUp {
                what,
                attempts,
                elapsed,
                last,
                ..
            } => write!(
                f,
                "{what} failed {attempts} times in {:.1}s (last: {last})",
                elapsed.as_secs_f64()
            ),
            S3Failure::Denied { reason } => write!(f, "access denied: {reason}"),
            S3Failure::NoBucket => f.write_str("the bucket does not exist"),
            S3Failure::NotFound { key } => write!(f, "object `{key}` does not exist"),
            S3Failure::Refused {
                what,
                status,
                reason,
            } => write!(f, "{what} refused with HTTP {status}: {reason}"),
            S3Failure::SizeMismatch { key, sent, stored } => write!(
                f,
                "object `{key}` holds {stored} bytes after {sent} were uploaded"
            ),
            S3Failure::Malformed { what, reason } => {
                write!(f, "{what}: the server's answer is malformed: {reason}")
            }
        }
    }
}

/// A response that was received (any status).
struct Answer {
    status: u16,
    body: Vec<u8>,
    content_length: Option<u64>,
}

/// One attempt's outcome as the retry loop sees it.
enum Attempt {
    Done(Answer),
    /// Transient; `true` when an HTTP answer came back (the server is there).
    Retry(String, bool),
    Fatal(S3Failure),
}

/// A client for one bucket and prefix.
#[derive(Clone)]
pub struct S3Client {
    agent: ureq::Agent,
    location: S3Location,
    region: String,
    credentials: S3Credentials,
    policy: RetryPolicy,
    /// The last request that used up its retries, and when: for a while after, requests fail
    /// at once instead of each spending the whole budget again (the engine carries on with
    /// its other uploads after one fails).
    tripped: Arc<Mutex<Option<(Instant, S3Failure)>>>,
}

/// How long requests fail at once after one used up its retries.
pub const TRIPPED_FOR: Duration = Duration::from_secs(30);

impl S3Client {
    /// A client for `location`; nothing is sent yet.
    pub fn new(
        location: S3Location,
        region: String,
        credentials: S3Credentials,
        policy: RetryPolicy,
    ) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(policy.request_timeout))
            .timeout_connect(Some(policy.connect_timeout))
            .max_idle_connections_per_host(32)
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        S3Client {
            agent,
            location,
            region,
            credentials,
            policy,
            tripped: Arc::new(Mutex::new(None)),
        }
    }

    /// The location this client talks to.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The bytes of `name` (a range of them with `range = Some((offset, length))`).
    pub fn get(&self, name: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, S3Failure> {
        let key = self.location.key(name);
        let headers: Vec<(&str, String)> = range
            .map(|(o, l)| vec![("range", format!("bytes={o}-{}", o + l.saturating_sub(1)))])
            .unwrap_or_default();
        let a = self.call("GET", &key, &[], &headers, b"")?;
        match a.status {
            200 | 206 => {
                if let Some((_, len)) = range
                    && a.body.len() as u64 != len
                {
                    return Err(S3Failure::Malformed {
                        what: format!("GET {key}"),
                        reason: format!("{} bytes instead of {len}", a.body.len()),
                    });
                }
                Ok(a.body)
            }
            _ => Err(self.refusal("GET", &key, &a)),
        }
    }

    /// Stores `body` as `name`, then checks that the stored object has its size.
    pub fn put(&self, name: &str, body: &[u8]) -> Result<(), S3Failure> {
        let key = self.location.key(name);
        let a = self.call("PUT", &key, &[], &[], body)?;
        if a.status != 200 {
            return Err(self.refusal("PUT", &key, &a));
        }
        let stored = self.size(name)?.ok_or_else(|| S3Failure::SizeMismatch {
            key: key.clone(),
            sent: body.len() as u64,
            stored: 0,
        })?;
        if stored != body.len() as u64 {
            return Err(S3Failure::SizeMismatch {
                key,
                sent: body.len() as u64,
                stored,
            });
        }
        Ok(())
    }

    /// The size of `name`, `None` when it does not exist.
    pub fn size(&self, name: &str) -> Result<Option<u64>, S3Failure> {
        let key = self.location.key(name);
        let a = self.call("HEAD", &key, &[], &[], b"")?;
        match a.status {
            200 => a
                .content_length
                .map(Some)
                .ok_or_else(|| S3Failure::Malformed {
                    what: format!("HEAD {key}"),
                    reason: "no Content-Length".into(),
                }),
            404 => Ok(None),
            _ => Err(self.refusal("HEAD", &key, &a)),
        }
    }

    /// Deletes `name` (no error when it is gone already).
    pub fn delete(&self, name: &str) -> Result<(), S3Failure> {
        let key = self.location.key(name);
        let a = self.call("DELETE", &key, &[], &[], b"")?;
        match a.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.refusal("DELETE", &key, &a)),
        }
    }

    /// Every object under `dir/` (names relative to the location, with sizes). A page that
    /// fails fails the whole listing: a partial list is never returned.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, S3Failure> {
        Ok(self
            .list_objects(dir)?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    /// [`S3Client::list`] with each object's time by the store's clock.
    pub(crate) fn list_objects(&self, dir: &str) -> Result<Vec<super::xml::Listed>, S3Failure> {
        let prefix = format!("{}/", self.location.key(dir));
        let strip = self.location.key("").len();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_string()), ("prefix", prefix.clone())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let a = self.call("GET", "", &query, &[], b"")?;
            if a.status != 200 {
                return Err(self.refusal("LIST", &prefix, &a));
            }
            let text = String::from_utf8_lossy(&a.body);
            let page = super::xml::parse_listing(&text).map_err(|reason| S3Failure::Malformed {
                what: format!("LIST {prefix}"),
                reason,
            })?;
            for mut o in page.objects {
                o.key = o
                    .key
                    .get(strip..)
                    .unwrap_or(&o.key)
                    .trim_start_matches('/')
                    .to_string();
                out.push(o);
            }
            match (page.truncated, page.next_token) {
                (false, _) => return Ok(out),
                (true, Some(t)) => token = Some(t),
                (true, None) => {
                    return Err(S3Failure::Malformed {
                        what: format!("LIST {prefix}"),
                        reason: "truncated without a continuation token".into(),
                    });
                }
            }
        }
    }

    /// Whether the bucket exists and the credentials may use it.
    pub fn check_bucket(&self) -> Result<(), S3Failure> {
        let a = self.call("HEAD", "", &[], &[], b"")?;
        match a.status {
            200 => Ok(()),
            _ => Err(self.refusal("HEAD", "", &a)),
        }
    }

    /// What a non-success answer means.
    fn refusal(&self, method: &str, key: &str, a: &Answer) -> S3Failure {
        let text = String::from_utf8_lossy(&a.body);
        let code = super::xml::tag(&text, "Code").unwrap_or_default();
        let message = super::xml::tag(&text, "Message").unwrap_or_default();
        let reason = if code.is_empty() {
            format!("HTTP {}", a.status)
        } else {
            format!("{code}: {message}")
        };
        match (a.status, code.as_str()) {
            (_, "NoSuchBucket") => S3Failure::NoBucket,
            (404, _) if key.is_empty() => S3Failure::NoBucket,
            (404, _) => S3Failure::NotFound {
                key: key.to_string(),
            },
            (401 | 403, _) => S3Failure::Denied { reason },
            (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => {
                S3Failure::Denied { reason }
            }
            (status, _) => S3Failure::Refused {
                what: format!("{method} {key}"),
                status,
                reason,
            },
        }
    }

    /// Sends one request with retries; returns the first non-transient answer.
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, S3Failure> {
        let what = format!("{method} {}", if key.is_empty() { "/" } else { key });
        if let Some((at, failure)) = &*self.tripped.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < TRIPPED_FOR
        {
            return Err(failure.clone());
        }
        let started = Instant::now();
        let mut wait = self.policy.first_wait;
        let mut answered = false;
        let mut attempt = 1;
        loop {
            let last = match self.attempt(method, key, query, headers, body) {
                Attempt::Done(a) => return Ok(a),
                Attempt::Fatal(f) => return Err(f),
                Attempt::Retry(why, got_answer) => {
                    answered |= got_answer;
                    why
                }
            };
            if attempt >= self.policy.attempts {
                let failure = S3Failure::GaveUp {
                    what,
                    attempts: attempt,
                    elapsed: started.elapsed(),
                    last,
                    unreachable: !answered,
                };
                *self.tripped.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), failure.clone()));
                return Err(failure);
            }
            // Full jitter: a random wait up to the doubled step, so many clients do not retry
            // in step.
            let pause = wait.mul_f64(0.5 + 0.5 * random_fraction());
            log::warn!(
                "S3 {what}: {last}; retry {attempt}/{} in {:.2}s",
                self.policy.attempts - 1,
                pause.as_secs_f64()
            );
            std::thread::sleep(pause);
            wait = (wait * 2).min(self.policy.max_wait);
            attempt += 1;
        }
    }

    fn attempt(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Attempt {
        let path = if key.is_empty() {
            format!("/{}", self.location.bucket)
        } else {
            format!("/{}/{key}", self.location.bucket)
        };
        let signed = sign(
            &ToSign {
                method,
                host: &self.location.host,
                path: &path,
                query,
                headers,
                payload: body,
            },
            &self.credentials,
            &self.region,
            jiff::Timestamp::now(),
        );
        let qs = canonical_query(query);
        let url = format!(
            "{}://{}{}{}{}",
            self.location.scheme,
            self.location.host,
            super::sign::encode(&path, false),
            if qs.is_empty() { "" } else { "?" },
            qs
        );
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(signed.iter().map(|(k, v)| (*k, v)))
        {
            req = req.header(k, v);
        }
        let result = match req.body(body.to_vec()) {
            Ok(r) => self.agent.run(r),
            Err(e) => {
                return Attempt::Fatal(S3Failure::Malformed {
                    what: format!("{method} {key}"),
                    reason: e.to_string(),
                });
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(transport_error(&e), false),
        };
        let status = resp.status().as_u16();
        let content_length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            match resp.body_mut().with_config().limit(u64::MAX).read_to_vec() {
                Ok(b) => b,
                Err(e) => {
                    return Attempt::Retry(
                        format!("reading the answer: {}", transport_error(&e)),
                        true,
                    );
                }
            }
        };
        let answer = Answer {
            status,
            body,
            content_length,
        };
        // Only an answer that is not a success carries an error code; a success's body is the
        // object itself (read as text, a restore's 1 MiB packs cost 40% of its CPU).
        let code = if status >= 300 {
            super::xml::tag(&String::from_utf8_lossy(&answer.body), "Code")
        } else {
            None
        };
        let slow_down = status == 503 || code.as_deref() == Some("SlowDown");
        if status >= 500 || status == 429 || slow_down {
            return Attempt::Retry(
                format!(
                    "HTTP {status}{}",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                ),
                true,
            );
        }
        Attempt::Done(answer)
    }
}

fn transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        ureq::Error::Io(io) => format!("{io}"),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

/// A random number in [0, 1) for jitter, from the standard library's per-process random keys.
fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
