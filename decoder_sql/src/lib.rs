//! decoder_sql: a logical decoding output plugin that writes every committed change as an
//! executable SQL statement, and the extension that captures DDL into the same stream.
//!
//! Layout: `pg/` is the only place that touches `pg_sys` or holds `unsafe`; `plugin/` decides
//! what to emit from safe views; all SQL text is rendered by the pure `sqlgen` crate.

mod capture;
mod error;
mod pg;
mod plugin;
mod state;

pgrx::pg_module_magic!();

pub use pg::callbacks::_PG_output_plugin_init;

/// Runs when a session loads the library (`session_preload_libraries`, or the first call of
/// one of its functions): from then on the DDL capture sees every utility statement's text.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::utility_hook::install();
    pg::event_trigger::install_abort_callbacks();
}

/// Version of the SQL stream format this library writes (see docs/format.md). A reader refuses
/// streams of a newer major version than it knows.
pub const FORMAT_VERSION: i32 = 4;

/// `decoder_sql.format_version()`: the stream format version written by the installed plugin.
#[pgrx::pg_extern(immutable, parallel_safe)]
fn format_version() -> i32 {
    FORMAT_VERSION
}
