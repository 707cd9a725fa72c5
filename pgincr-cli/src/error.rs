//! The CLI's error type and its mapping to exit codes.

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not connect to the database: {}", describe_pg_error(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// No connection to the server (it did not answer, refused, or TLS failed); `server`
    /// lists the hosts and ports tried.
    #[error("could not connect to {server}: {reason}")]
    ConnectTo { server: String, reason: String },
    #[error("query failed: {}", describe_pg_error(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("the server is not ready for pgincr: {failed} check(s) failed")]
    CheckFailed { failed: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{context}: {source}")]
    IoAt {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}):\n{stderr_tail}")]
    Tool {
        program: String,
        status: String,
        stderr_tail: String,
    },
    /// The backup repository is missing, damaged or inconsistent.
    #[error("{0}")]
    Repository(String),
    /// The object store refused or could not be reached.
    #[error("object storage: {0}")]
    Storage(String),
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Invalid(String),
    /// A statement of a backup failed on the restore target.
    #[error("restore stopped at {location} (transaction end_lsn {end_lsn}): {message}")]
    Apply {
        location: String,
        end_lsn: String,
        message: String,
    },
    #[error("verification found {problems} problem(s)")]
    VerifyFailed { problems: usize },
    /// `status` found a problem; carries the Nagios exit code (1 warning, 2 critical).
    #[error("backup status is {}", if *.0 == 1 { "WARNING" } else { "CRITICAL" })]
    Status(u8),
}

impl Error {
    /// 3: a precondition failed (as reported by `check`); Nagios codes for `status`;
    /// 1: anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CheckFailed { .. } => 3,
            Error::Status(code) => *code,
            _ => 1,
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::IoAt { context, source }
    }
}

/// An error and every cause under it ("error connecting to server: Connection refused").
pub fn describe_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// The server's message with detail and hint, or the client error as it is.
pub fn describe_pg_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nHINT: {h}"));
            }
            s
        }
        None => describe_error_chain(err),
    }
}
