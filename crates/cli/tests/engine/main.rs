//! End-to-end tests of the `lifeboat` binary against a real Docker engine.
//! Run them with `scripts/test`, which starts the engine and builds the fixture images.

mod alerts;
mod api_contract;
mod bad_input;
mod cli_docs;
mod clock;
mod cluster;
mod common;
mod compose;
mod consistency;
mod daemon;
mod dashboard;
mod doctor;
mod drill;
mod failover;
mod formats;
mod freeze_thaw;
mod hosts;
mod hot_mariadb;
mod hot_postgres;
mod hot_redis;
mod hot_sqlite;
mod image;
mod keys;
mod notify_tls;
mod recover;
mod regions;
mod restic;
mod roundtrip;
mod s3;
mod safety;
mod security;
mod services;
mod stack;
mod trust;
mod vfs_host;
