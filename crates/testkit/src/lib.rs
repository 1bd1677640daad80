//! Test fixtures shared by the integration tests: the real Docker engine and locally built
//! images, uniquely named containers and volumes that clean up after themselves, a metadata
//! corpus, and a tree comparison that checks everything a restore must keep.
//!
//! Fixtures use the `docker` CLI on purpose: they prove Lifeboat against the engine through a
//! second, independent client.

mod corpus;
mod docker;
mod tree;

pub use corpus::write_corpus;
pub use docker::{
    BUSYBOX_IMAGE, Cleanup, docker, docker_ok, ensure_busybox_image, unique, volume_path,
};
pub use tree::{Entry, compare_trees, compare_trees_ignoring_sparseness, snapshot_tree};
