pub mod backup;
pub mod check;
pub mod doctor;
pub mod init;
pub mod restore;
pub mod snapshots;
