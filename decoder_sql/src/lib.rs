//! decoder_sql: a logical decoding output plugin that writes every committed change as an
//! executable SQL statement, and the extension that captures DDL into the same stream.
//!
//! Layout: `pg/` is the only place that touches `pg_sys` or holds `unsafe`; `plugin/` decides
//! what to emit from safe views; all SQL text is rendered by the pure `sqlgen` crate.

mod error;
mod pg;
mod plugin;
mod state;

pgrx::pg_module_magic!();

pub use pg::callbacks::_PG_output_plugin_init;
