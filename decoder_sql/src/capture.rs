//! SQL-callable helpers of the DDL capture installed by `CREATE EXTENSION decoder_sql`
//! (the event triggers themselves are in `sql/ddl_capture.sql`).

use crate::pg::statement::{active_statement, creating_extension};

/// The text of the top-level statement being executed, if it is the command `command_tag`
/// (the event trigger's TG_TAG); NULL when that command runs nested inside another statement
/// (a function, procedure or DO block), whose own text cannot be recovered.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn top_level_statement(command_tag: &str) -> Option<String> {
    let stmt = active_statement()?;
    (stmt.tag == command_tag).then(|| sqlgen::ddl::terminate_statement(&stmt.text))
}

/// For a top-level CREATE TABLE AS: the statement in its WITH NO DATA form (its rows are
/// decoded as INSERTs). An empty string for a temporary table (nothing to capture). NULL when
/// it cannot be captured: nested in another statement, or SELECT INTO.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn create_table_as_statement(command_tag: &str) -> Option<String> {
    let stmt = active_statement().filter(|s| s.tag == command_tag)?;
    let table_as = stmt.table_as?;
    if table_as.temporary {
        return Some(String::new());
    }
    if table_as.select_into {
        return None;
    }
    Some(sqlgen::ddl::create_table_as_without_data(&stmt.text))
}

/// True while an extension's script runs.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn in_extension_script() -> bool {
    creating_extension()
}

/// The statement that restores `search_path` to `path` on replay.
#[pgrx::pg_extern(immutable, parallel_safe)]
fn set_search_path_statement(path: &str) -> String {
    sqlgen::ddl::set_search_path_statement(path)
}

pgrx::extension_sql_file!(
    "../sql/ddl_capture.sql",
    name = "ddl_capture",
    requires = [
        top_level_statement,
        create_table_as_statement,
        in_extension_script,
        set_search_path_statement
    ]
);
