pub mod backup;
pub mod check;
pub mod daemon;
pub mod doctor;
pub mod init;
pub mod policy;
pub mod restore;
pub mod snapshots;
