//! Asking another host's daemon through its API (the address its heartbeat publishes in the
//! cluster): `lifeboat --host H jobs` reads H's job history this way. Plain HTTP with the
//! API token, a short timeout; answers are parsed as the API documents them.

use std::time::Duration;

use crate::store::Job;

/// What to ask `GET /api/v1/jobs` for.
#[derive(Debug, Default, Clone)]
pub struct JobsQuery {
    /// Only this service's jobs.
    pub service: Option<String>,
    /// Only jobs of this kind (its word).
    pub kind: Option<String>,
    /// Only jobs queued at or after this RFC 3339 time.
    pub since: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// The job history of the daemon answering at `api` (`HOST:PORT`), asked with `token`.
pub fn jobs(host: &str, api: &str, token: &str, q: &JobsQuery) -> Result<Vec<Job>, String> {
    // The address comes from etcd: only an IP and port is used (the token goes with it).
    let api: std::net::SocketAddr = api.parse().map_err(|_| {
        format!("host `{host}` published `{api}` as its API address, which is not IP:PORT")
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent
        .get(format!("http://{api}/api/v1/jobs"))
        .header("Authorization", format!("Bearer {token}"))
        .query("limit", q.limit.to_string());
    for (k, v) in [
        ("service", &q.service),
        ("kind", &q.kind),
        ("since", &q.since),
    ] {
        if let Some(v) = v {
            req = req.query(k, v);
        }
    }
    let mut resp = req.call().map_err(|e| {
        format!("host `{host}`'s daemon at {api} does not answer ({e}); is it running?")
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("host `{host}`'s daemon at {api}: {e}"))?;
    match status {
        200 => {}
        401 => {
            return Err(format!(
                "host `{host}`'s daemon refused the token: set LIFEBOAT_API_TOKEN to its API \
                 token (its state directory's api.token)"
            ));
        }
        _ => {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or(text);
            return Err(format!(
                "host `{host}`'s daemon answered {status}: {message}"
            ));
        }
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        jobs: Vec<Job>,
    }
    serde_json::from_str::<Answer>(&text)
        .map(|a| a.jobs)
        .map_err(|e| format!("host `{host}`'s daemon at {api} answered no job list: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_api_address_that_is_not_ip_and_port_is_refused_before_any_request() {
        for bad in [
            "evil.example/x?",
            "127.0.0.1:1@evil",
            "http://127.0.0.1:1",
            "",
        ] {
            let err = super::jobs("h2", bad, "t", &super::JobsQuery::default()).unwrap_err();
            assert!(err.contains("not IP:PORT"), "{bad}: {err}");
        }
    }
}
