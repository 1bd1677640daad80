//! `lifeboat daemon`: runs each service's backup policy on its schedule, keeps what the
//! retention says (behind a safety gate), records every job in an embedded SQLite history,
//! and serves a token-protected JSON API, Prometheus metrics and a web dashboard.
//!
//! Layout: `config` (file and label options → validated plan), `scheduler` (pure timing
//! logic), `store` (job history and policy log), `services` (discovery and the engine's
//! event stream), `runner` (executes jobs through `lifeboat-core`), `queue` (the domain API
//! the HTTP layer calls), `notify` (webhooks and pings), `log`, `metrics`, `api` (axum:
//! translates HTTP to calls and typed errors to status codes, nothing more), `dashboard`;
//! `cluster`, `etcd`, `failover`, `drills` and `peer` (cluster mode); `run` wires them together. No two modules import each other.
//!
//! Never: block an async task on the engine or the repository (both are synchronous and
//! run on blocking threads), or let the HTTP layer touch the domain crates directly.

#![warn(missing_docs)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod drills;
pub mod etcd;
pub mod failover;
mod failures;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod queue;
pub mod run;
pub mod runner;
pub mod scheduler;
pub mod services;
pub mod store;

pub use config::{DaemonOptions, DaemonPlan};
pub use daemon::{RegionAccess, RunEnv};
pub use run::{DaemonError, run};
