//! The thin layer between PostgreSQL and the plugin: the only module that touches `pg_sys` or
//! contains `unsafe`. It wraps raw pointers into safe views, caches catalog lookups, turns
//! Datums into text and writes output; it never decides what SQL to emit (see `plugin/`).

pub mod callbacks;
pub mod channel;
mod compat;
pub mod ctx;
pub mod event_trigger;
pub mod memcx;
pub mod relation;
pub mod server_text;
pub mod statement;
pub mod transmission;
pub mod tuple;
pub mod utility_hook;

use crate::error::{DecoderError, ErrorClass};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises `err` as a PostgreSQL ERROR (does not return).
pub fn report(err: DecoderError) -> ! {
    let code = match err.class() {
        ErrorClass::InvalidParameterValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorClass::ObjectNotInPrerequisiteState => {
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        }
    };
    let mut report = ErrorReport::new(code, err.to_string(), "decoder_sql");
    if let Some(detail) = err.detail() {
        report = report.set_detail(detail);
    }
    if let Some(hint) = err.hint() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returns control to PostgreSQL's error handler")
}
