//! The HTTP layer: translates requests into daemon calls and results into JSON, nothing
//! more. Every route but `/healthz` and the dashboard's static page needs
//! `Authorization: Bearer <token>`; the page itself holds no data and asks for the token.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use lifeboat_model::JobKind;

use crate::daemon::Daemon;
use crate::queue::EnqueueError;
use crate::runner::{PruneJob, RestoreJob};

type D = State<Arc<Daemon>>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": message.to_string()}))).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization` value: the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(d): D, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), d.token.as_bytes()) => next.run(req).await,
        _ => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API token: send `Authorization: Bearer <token>` (the token is \
                 LIFEBOAT_API_TOKEN, or the token file the daemon printed at first start)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            r
        }
    }
}

/// The API, metrics and dashboard on one router.
pub fn router(d: Arc<Daemon>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .route("/api/v1/services/{name}/backup", post(backup))
        .route("/api/v1/services/{name}/restore", post(restore))
        .route("/api/v1/services/{name}/prune", post(prune))
        .route("/api/v1/services/{name}/drill", post(drill))
        .route("/api/v1/services/{name}/recover", post(recover))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/snapshots", get(snapshots))
        .route("/api/v1/policy/log", get(policy_log))
        .route("/api/v1/regions", get(regions))
        .route("/api/v1/cluster", get(cluster))
        .route_layer(middleware::from_fn_with_state(d.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .merge(protected)
        .with_state(d)
}

/// Only `/metrics` and `/healthz`, for a separate metrics listener.
pub fn metrics_router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(d.clone(), require_token))
        .route("/healthz", get(healthz))
        .with_state(d)
}

async fn healthz(State(d): D) -> Response {
    let stopping = d.stopping.load(std::sync::atomic::Ordering::Relaxed);
    axum::Json(json!({"status": if stopping { "stopping" } else { "ok" }, "version": env!("CARGO_PKG_VERSION")}))
        .into_response()
}

/// The API's contract (OpenAPI 3), kept in the repository; a test checks it against the
/// routes above and schemathesis against a running daemon.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A query string that does not parse: a JSON error, like every other.
fn bad_query(e: QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("query string: {}", e.body_text()),
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn metrics(State(d): D) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&d),
    )
        .into_response()
}

async fn services(State(d): D) -> Response {
    axum::Json(json!({"services": d.services_view()})).into_response()
}

async fn service(State(d): D, Path(name): Path<String>) -> Response {
    match d.services_view().into_iter().find(|s| s.name == name) {
        Some(s) => axum::Json(s).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no managed service `{name}`"),
        ),
    }
}

fn accepted(result: Result<i64, EnqueueError>) -> Response {
    match result {
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"job_id": id, "url": format!("/api/v1/jobs/{id}")})),
        )
            .into_response(),
        Err(e) => error(enqueue_status(&e), e),
    }
}

/// The status code for a job the daemon would not queue.
fn enqueue_status(e: &EnqueueError) -> StatusCode {
    match e {
        EnqueueError::Unknown(_) => StatusCode::NOT_FOUND,
        EnqueueError::Invalid(..) => StatusCode::CONFLICT,
        EnqueueError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        EnqueueError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An optional JSON body: empty means all defaults.
fn body<T: for<'a> Deserialize<'a> + Default>(bytes: &Bytes) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("request body: {e}"))
}

async fn backup(State(d): D, Path(name): Path<String>) -> Response {
    accepted(d.enqueue(&name, JobKind::Backup, None))
}

async fn drill(State(d): D, Path(name): Path<String>) -> Response {
    accepted(d.enqueue(&name, JobKind::Drill, None))
}

async fn restore(State(d): D, Path(name): Path<String>, bytes: Bytes) -> Response {
    match body::<RestoreJob>(&bytes).and_then(|r| r.validate().map(|()| r)) {
        Ok(r) => accepted(d.enqueue(&name, JobKind::Restore, serde_json::to_value(r).ok())),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn recover(State(d): D, Path(name): Path<String>, bytes: Bytes) -> Response {
    match body::<crate::runner::RecoverJob>(&bytes).and_then(|r| r.validate().map(|()| r)) {
        Ok(r) => accepted(d.enqueue(&name, JobKind::Recover, serde_json::to_value(r).ok())),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn prune(State(d): D, Path(name): Path<String>, bytes: Bytes) -> Response {
    match body::<PruneJob>(&bytes) {
        Ok(r) => accepted(d.enqueue(&name, JobKind::Prune, serde_json::to_value(r).ok())),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct JobsQuery {
    service: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn jobs(State(d): D, q: Result<Query<JobsQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let kind = match q.kind.as_deref().map(|k| (k, JobKind::from_word(k))) {
        None => None,
        Some((_, Some(k))) => Some(k),
        Some((k, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{k}` is not a job kind; use one of {}", JobKind::words()),
            );
        }
    };
    let since = match q
        .since
        .as_deref()
        .map(|t| (t, lifeboat_model::parse_timestamp(t)))
    {
        None => None,
        Some((_, Ok(t))) => Some(t),
        Some((t, Err(_))) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("since `{t}` is not an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)"),
            );
        }
    };
    match d.store().history(
        q.service.as_deref(),
        kind,
        since,
        q.limit.unwrap_or(50).min(1000),
    ) {
        Ok(jobs) => axum::Json(json!({"jobs": jobs})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn job(State(d): D, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a job id (a number)"),
        );
    };
    match d.store().job(id) {
        Ok(Some(j)) => axum::Json(j).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

async fn snapshots(State(d): D, q: Result<Query<ServiceQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let d2 = d.clone();
    let r = tokio::task::spawn_blocking(move || d2.snapshots(q.service.as_deref())).await;
    match r {
        Ok(Ok(list)) => {
            let rows: Vec<Value> = list.iter().map(snapshot_row).collect();
            axum::Json(json!({"snapshots": rows})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Each region the daemon copies to: its schedule and RTO, its newest copy job, and when
/// each service's newest backup there was taken.
async fn regions(State(d): D) -> Response {
    let state = d.state().regions.clone();
    let rows: Vec<Value> = d
        .plan
        .regions
        .iter()
        .map(|r| {
            let s = state.get(&r.name).cloned().unwrap_or_default();
            json!({
                "name": r.name,
                "schedule": r.schedule,
                "rto_seconds": r.rto.map(|t| t.as_secs()),
                "last_copy": s.last_copy,
                "failures": s.failures,
                "newest": s.newest,
                "drills": s.drills.iter().map(|(k, (secs, ok))| {
                    (k.clone(), json!({"recovery_seconds": secs, "ok": ok,
                        "rto_breached": r.rto.map(|t| !ok || *secs > t.as_secs_f64())}))
                }).collect::<serde_json::Map<_, _>>(),
                "next_copy": d.state().scheduler
                    .next_run(&crate::daemon::region_key(&r.name))
                    .map(lifeboat_model::format_timestamp),
            })
        })
        .collect();
    axum::Json(json!({"regions": rows})).into_response()
}

/// The cluster as this daemon sees it: hosts, heartbeat ages, the leader, services per
/// host. 404 outside cluster mode.
async fn cluster(State(d): D) -> Response {
    match &d.cluster {
        Some(c) => axum::Json(c.view()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "this daemon is not in a cluster: add a [cluster] section to its config file",
        ),
    }
}

async fn policy_log(State(d): D, q: Result<Query<ServiceQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    match d.store().policy_log(q.service.as_deref()) {
        Ok(log) => axum::Json(json!({"policy_log": log})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Snapshot rows as the API lists them (no configuration, so no secrets).
pub fn snapshot_row(b: &lifeboat_core::BackupEntry) -> Value {
    let m = &b.manifest;
    json!({
        "service": m.container_name, "backup_id": m.backup_id.0, "snapshot_id": b.snapshot_id,
        "started_at": lifeboat_model::format_timestamp(m.started_at),
        "finished_at": lifeboat_model::format_timestamp(m.finished_at),
        "bytes": m.total_bytes(), "added_bytes": m.parts.iter().map(|p| p.added_bytes).sum::<u64>(),
        "partial": m.partial, "safety": b.safety, "consistency": m.consistency, "policy_sha256": m.policy_sha256,
        "host": m.host,
    })
}

#[cfg(test)]
mod tests {
    use super::{OPENAPI, bearer_token};

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
        // Every `.route("PATH", METHOD(handler))` in this file, the dashboard page aside.
        let source = include_str!("api.rs");
        let mut served = std::collections::BTreeSet::new();
        for chunk in source.split(".route(\"").skip(1) {
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            let method = rest
                .trim_start_matches(", ")
                .split('(')
                .next()
                .unwrap_or("");
            if path.starts_with('/') && path != "/" {
                served.insert((path.to_string(), method.to_string()));
            }
        }
        assert!(served.len() >= 15, "{served:?}");
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.insert((path.clone(), method.clone()));
            }
        }
        // `/metrics` is served twice (also on its own listener): one operation.
        assert_eq!(served, documented);
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let public = op["security"] == serde_json::json!([]);
                let open = ["/healthz", "/api/v1/openapi.json"].contains(&path.as_str());
                assert_eq!(public, open, "{method} {path}: token requirement");
                if !public {
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path}: no 401"
                    );
                }
            }
        }
    }

    #[test]
    fn the_bearer_scheme_is_matched_case_insensitively() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", " Bearer t0k"] {
            assert_eq!(bearer_token(v), Some("t0k"), "{v:?}");
        }
        for v in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
