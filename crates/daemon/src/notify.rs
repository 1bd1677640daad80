//! Telling people: a JSON webhook on every failure and on recovery, and a healthchecks-style
//! ping (GET) per success (`<ping_url>/fail` on failure). Delivery is retried three times;
//! an undeliverable notification is logged and counted in the metrics, never dropped
//! silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::log::log_line;

/// Sends webhooks and pings without blocking the daemon.
pub struct Notifier {
    rt: tokio::runtime::Handle,
    webhook_url: Option<String>,
    /// Notifications delivered.
    pub sent: Arc<AtomicU64>,
    /// Notifications that failed after retries.
    pub failed: Arc<AtomicU64>,
}

/// Sends one HTTP/1.1 request to an `http://` URL; the response status.
pub async fn http_request(method: &str, url: &str, body: Option<String>) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let limit = Duration::from_secs(10);
    let stream = tokio::time::timeout(limit, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("lifeboat/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(limit, sender.send_request(req))
        .await
        .map_err(|_| format!("{url} did not answer within {}s", limit.as_secs()))?
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(resp.status().as_u16())
}

impl Notifier {
    /// A notifier posting to `webhook_url` on runtime `rt`.
    pub fn new(rt: tokio::runtime::Handle, webhook_url: Option<String>) -> Self {
        Notifier {
            rt,
            webhook_url,
            sent: Arc::default(),
            failed: Arc::default(),
        }
    }

    fn deliver(&self, method: &'static str, url: String, body: Option<String>) {
        let (sent, failed) = (self.sent.clone(), self.failed.clone());
        self.rt.spawn(async move {
            let mut last = String::new();
            for attempt in 0..3u32 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                match http_request(method, &url, body.clone()).await {
                    Ok(code) if (200..300).contains(&code) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(code) => last = format!("answered HTTP {code}"),
                    Err(e) => last = e,
                }
            }
            failed.fetch_add(1, Ordering::Relaxed);
            log_line(
                "error",
                "notification not delivered after 3 attempts",
                serde_json::json!({"url": url, "error": last}),
            );
        });
    }

    /// POSTs `event` (JSON) to the webhook, if one is configured.
    pub fn webhook(&self, event: serde_json::Value) {
        if let Some(url) = &self.webhook_url {
            self.deliver("POST", url.clone(), Some(event.to_string()));
        }
    }

    /// GETs the service's ping URL (`/fail` appended on failure).
    pub fn ping(&self, url: Option<&str>, ok: bool) {
        if let Some(url) = url {
            let url = if ok {
                url.to_string()
            } else {
                format!("{}/fail", url.trim_end_matches('/'))
            };
            self.deliver("GET", url, None);
        }
    }
}
