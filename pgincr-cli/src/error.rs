//! The CLI's error type and its mapping to exit codes.

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("the server is not ready for pgincr: {failed} check(s) failed")]
    CheckFailed { failed: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// 3: a precondition failed (as reported by `check`); 1: anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CheckFailed { .. } => 3,
            _ => 1,
        }
    }
}
