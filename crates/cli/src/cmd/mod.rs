pub mod backup;
pub mod check;
pub mod init;
pub mod restore;
pub mod snapshots;
