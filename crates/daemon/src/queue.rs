//! The daemon's domain API, what the HTTP layer calls: queue a job for a service, list the
//! committed backups. Returns domain types and typed errors; never builds HTTP responses
//! (the `api` module maps these errors to status codes).

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use lifeboat_core::BackupEntry;
use lifeboat_model::JobKind;
use serde_json::{Value, json};

use crate::daemon::Daemon;

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// No managed service of that name (404).
    #[error("no managed service `{0}` (label its container lifeboat.enable=true)")]
    Unknown(String),
    /// Its policy is invalid: the service and why (409).
    #[error("`{0}` has no valid policy: {1}")]
    Invalid(String, String),
    /// The daemon is shutting down (503).
    #[error("the daemon is shutting down; try again after it restarts")]
    Stopping,
    /// The job history failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Daemon {
    /// Queues a job of `kind` for `service`, asked through the API; it starts when the
    /// service's current job is done and a slot is free. Restores and recoveries may name a
    /// service that is gone (that is their point); backups and prunes need a managed service
    /// with a valid policy.
    pub fn enqueue(
        &self,
        service: &str,
        kind: JobKind,
        request: Option<Value>,
    ) -> Result<i64, EnqueueError> {
        self.enqueue_for(service, kind, request, "api")
    }

    /// [`Daemon::enqueue`], recording what asked for it (`api`, `failure`, `resume`).
    pub fn enqueue_for(
        &self,
        service: &str,
        kind: JobKind,
        request: Option<Value>,
        trigger: &str,
    ) -> Result<i64, EnqueueError> {
        let may_be_gone = matches!(
            kind,
            JobKind::Restore | JobKind::Recover | JobKind::Failover
        );
        if self.stopping.load(Ordering::Relaxed) {
            return Err(EnqueueError::Stopping);
        }
        if service.is_empty() || service.contains('/') {
            return Err(EnqueueError::Unknown(service.to_string()));
        }
        {
            let st = self.state();
            match st.services.get(service) {
                Some(s) if kind != JobKind::Restore => {
                    if let Some(e) = &s.policy_error {
                        return Err(EnqueueError::Invalid(service.into(), e.clone()));
                    }
                }
                None if !may_be_gone => {
                    return Err(EnqueueError::Unknown(service.into()));
                }
                _ => {}
            }
        }
        let id = self
            .store()
            .queue(kind, service, trigger, request.as_ref())?;
        self.state()
            .scheduler
            .request(service, id, Timestamp::now());
        self.log(
            "info",
            "job queued",
            json!({"job": id, "kind": kind, "service": service}),
        );
        self.wake.notify_one();
        Ok(id)
    }

    /// Committed backups in the repository, newest last.
    pub fn snapshots(&self, service: Option<&str>) -> Result<Vec<BackupEntry>, String> {
        let repo = self.env.open_repo().map_err(|e| e.to_string())?;
        lifeboat_core::list_backups(&repo, service).map_err(|e| e.to_string())
    }
}
