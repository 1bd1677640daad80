//! Telling people: a webhook on every failure and on recovery (generic JSON, Slack-compatible
//! or ntfy), and a healthchecks-style ping (GET) per success (`<ping_url>/fail` on failure),
//! over `http://` or `https://` (rustls). Delivery is retried three times;
//! an undeliverable notification is logged and counted in the metrics, never dropped
//! silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::log::log_line;

/// How webhook events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The event itself, as JSON (`event`, `service`, `message`...).
    #[default]
    Json,
    /// A Slack-compatible incoming webhook (`{"text": ...}`; Mattermost, Rocket.Chat...).
    Slack,
    /// An ntfy topic URL: the message as the body, the event as title, failures urgent.
    Ntfy,
}

impl WebhookFormat {
    /// The word, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Ntfy => "ntfy",
        }
    }

    /// `json`, `slack` or `ntfy`.
    pub fn from_word(text: &str) -> Option<WebhookFormat> {
        match text.trim() {
            "json" => Some(WebhookFormat::Json),
            "slack" => Some(WebhookFormat::Slack),
            "ntfy" => Some(WebhookFormat::Ntfy),
            _ => None,
        }
    }
}

/// Where webhooks go and how they are written.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// The body's format.
    pub format: WebhookFormat,
}

/// One request ready to send: method, URL, headers, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// `POST` or `GET`.
    pub method: &'static str,
    /// Where.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty for a GET).
    pub body: String,
}

/// The request `event` becomes for `hook`.
pub fn render(hook: &Webhook, event: &serde_json::Value) -> Outgoing {
    let kind = event["event"].as_str().unwrap_or("event");
    let message = event["message"].as_str().unwrap_or(kind).to_string();
    let failure = kind.ends_with("_failed")
        || kind.ends_with("_invalid")
        || kind.ends_with("_missing")
        || kind.ends_with("_refused");
    let (headers, body) = match hook.format {
        WebhookFormat::Json => (
            vec![("content-type", "application/json".to_string())],
            event.to_string(),
        ),
        WebhookFormat::Slack => (
            vec![("content-type", "application/json".to_string())],
            serde_json::json!({ "text": format!("Lifeboat: {message}") }).to_string(),
        ),
        WebhookFormat::Ntfy => (
            vec![
                ("content-type", "text/plain; charset=utf-8".to_string()),
                ("title", format!("Lifeboat: {}", kind.replace('_', " "))),
                (
                    "priority",
                    if failure { "high" } else { "default" }.to_string(),
                ),
                (
                    "tags",
                    if failure {
                        "warning"
                    } else {
                        "white_check_mark"
                    }
                    .to_string(),
                ),
            ],
            message,
        ),
    };
    Outgoing {
        method: "POST",
        url: hook.url.clone(),
        headers,
        body,
    }
}

/// A URL as it may be logged: scheme and host only (the path of a Slack or ntfy URL, and
/// any user info or query, can be a secret).
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}/…")
}

/// The HTTP client of notifications: rustls, trusting `LIFEBOAT_CA_FILE` when set, else the
/// system's store (`/etc/ssl/certs/ca-certificates.crt`), else Mozilla's roots built in.
pub fn agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    const SYSTEM: &str = "/etc/ssl/certs/ca-certificates.crt";
    let pem = match ca_file {
        Some(f) => Some(
            std::fs::read(f)
                .map_err(|e| format!("cannot read the CA file {}: {e}", f.display()))?,
        ),
        None => std::fs::read(SYSTEM).ok(),
    };
    let roots = match pem {
        Some(pem) => {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "no certificate in {}",
                    ca_file.map_or(SYSTEM.into(), |f| f.display().to_string())
                ));
            }
            RootCerts::Specific(Arc::new(certs))
        }
        None => RootCerts::WebPki,
    };
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into())
}

/// Sends `req`; the response status.
pub fn send(agent: &ureq::Agent, req: &Outgoing) -> Result<u16, String> {
    let shown = shown_url(&req.url);
    let resp = match req.method {
        "GET" => {
            let mut r = agent.get(&req.url);
            for (k, v) in &req.headers {
                r = r.header(*k, v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&req.url);
            for (k, v) in &req.headers {
                r = r.header(*k, v);
            }
            r.send(req.body.as_bytes())
        }
    };
    // ureq's errors can quote the URL: only its host is shown.
    let resp = resp.map_err(|e| {
        let text = e.to_string().replace(&req.url, &shown);
        format!("{shown}: {text}")
    })?;
    Ok(resp.status().as_u16())
}

/// Sends webhooks and pings without blocking the daemon.
pub struct Notifier {
    rt: tokio::runtime::Handle,
    webhook: Option<Webhook>,
    agent: ureq::Agent,
    /// Notifications delivered.
    pub sent: Arc<AtomicU64>,
    /// Notifications that failed after retries.
    pub failed: Arc<AtomicU64>,
}

impl Notifier {
    /// A notifier posting to `webhook` through `agent`, on runtime `rt`.
    pub fn new(rt: tokio::runtime::Handle, webhook: Option<Webhook>, agent: ureq::Agent) -> Self {
        Notifier {
            rt,
            webhook,
            agent,
            sent: Arc::default(),
            failed: Arc::default(),
        }
    }

    fn deliver(&self, req: Outgoing) {
        let (sent, failed, agent) = (self.sent.clone(), self.failed.clone(), self.agent.clone());
        self.rt.spawn_blocking(move || {
            let mut last = String::new();
            for attempt in 0..3u32 {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_secs(1 << attempt));
                }
                match send(&agent, &req) {
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
                serde_json::json!({"url": shown_url(&req.url), "error": last}),
            );
        });
    }

    /// POSTs `event` to the webhook, in its format, if one is configured.
    pub fn webhook(&self, event: serde_json::Value) {
        if let Some(hook) = &self.webhook {
            self.deliver(render(hook, &event));
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
            self.deliver(Outgoing {
                method: "GET",
                url,
                headers: Vec::new(),
                body: String::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(format: WebhookFormat) -> Webhook {
        Webhook {
            url: "https://hooks.example/services/T0/B0/SECRET".into(),
            format,
        }
    }

    #[test]
    fn each_format_writes_the_event_the_way_its_receiver_reads_it() {
        let event = serde_json::json!({"event": "backup_failed", "service": "db",
            "message": "backup of `db` failed: exit 3"});
        let json = render(&hook(WebhookFormat::Json), &event);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json.body).unwrap(),
            event
        );
        let slack = render(&hook(WebhookFormat::Slack), &event);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&slack.body).unwrap(),
            serde_json::json!({"text": "Lifeboat: backup of `db` failed: exit 3"})
        );
        let ntfy = render(&hook(WebhookFormat::Ntfy), &event);
        assert_eq!(ntfy.body, "backup of `db` failed: exit 3");
        assert!(ntfy.headers.contains(&("priority", "high".into())));
        assert!(
            ntfy.headers
                .contains(&("title", "Lifeboat: backup failed".into()))
        );
        let ok = render(
            &hook(WebhookFormat::Ntfy),
            &serde_json::json!({"event": "backup_recovered", "message": "works again"}),
        );
        assert!(ok.headers.contains(&("priority", "default".into())));
    }

    #[test]
    fn logged_urls_keep_only_scheme_and_host() {
        assert_eq!(
            shown_url("https://hooks.example/services/T0/B0/SECRET"),
            "https://hooks.example/…"
        );
        assert_eq!(
            shown_url("https://user:pw@ntfy.example:8443/topic?auth=tok"),
            "https://ntfy.example:8443/…"
        );
        assert_eq!(shown_url("http://127.0.0.1:9/x"), "http://127.0.0.1:9/…");
    }
}
