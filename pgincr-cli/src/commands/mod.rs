//! One module per command.

pub mod base;
pub mod check;
pub mod init;
pub mod restore;
pub mod stream;
