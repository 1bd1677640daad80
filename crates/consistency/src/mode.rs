//! The consistency mode is part of the shared vocabulary, owned by `lifeboat-model`.

pub use lifeboat_model::{Mode, ModeError};
