//! One module per command.

pub mod base;
pub mod check;
pub mod config;
pub mod init;
pub mod origins;
pub mod prune;
pub mod restore;
pub mod status;
pub mod stream;
pub mod supervise;
pub mod verify;
