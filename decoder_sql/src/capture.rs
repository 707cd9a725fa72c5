//! SQL-callable helpers of the DDL capture installed by `CREATE EXTENSION decoder_sql`
//! (the event triggers themselves are in `sql/ddl_capture.sql`).

use crate::pg::server_text::ServerText;
use crate::pg::statement::{
    ActiveStatement, active_statement, creating_extension, standard_conforming_strings,
};
use crate::pg::utility_hook;

/// The statement an event trigger fires for, if it is the command `command_tag` (TG_TAG).
/// With the utility hook loaded, that is the innermost utility statement running, top level
/// or nested in a function, procedure, DO block or EXECUTE. Without it only a top-level
/// statement can be found, through the active portal; nested ones give None.
fn statement_for(command_tag: &str) -> Option<ActiveStatement> {
    // The hook is empty when it was installed during the statement (the library was loaded
    // by this very event trigger): the portal still knows a top-level statement.
    let stmt = utility_hook::innermost().or_else(active_statement)?;
    (stmt.tag == command_tag).then_some(stmt)
}

/// Commands event triggers never fire for, captured by the utility hook once they succeed.
const NOT_SEEN_BY_EVENT_TRIGGERS: &[&str] = &[
    "CREATE EVENT TRIGGER",
    "ALTER EVENT TRIGGER",
    "DROP EVENT TRIGGER",
];

/// Whether [`utility_completed`] is needed after a statement with this command tag.
pub fn wants_completed(tag: &[u8]) -> bool {
    NOT_SEEN_BY_EVENT_TRIGGERS
        .iter()
        .any(|t| t.as_bytes() == tag)
}

/// Called by the utility hook after a statement [`wants_completed`] succeeded.
pub fn utility_completed(stmt: &ActiveStatement) {
    if !wants_completed(stmt.tag.as_bytes()) || creating_extension() {
        return;
    }
    // Only where the capture is installed and running.
    let enabled = pgrx::Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger
                         WHERE evtname = 'decoder_sql_ddl_capture' AND evtenabled <> 'D')",
    );
    if !matches!(enabled, Ok(Some(true))) {
        return;
    }
    let text = ServerText::new(sqlgen::ddl::terminate_statement(&stmt.text), stmt.spelling);
    if let Err(e) = pgrx::Spi::run_with_args(
        "SELECT decoder_sql.emit_ddl($1, pg_catalog.current_setting('search_path'))",
        &[pgrx::datum::DatumWithOid::from(text)],
    ) {
        pgrx::warning!("decoder_sql: {} was not captured: {e}", stmt.tag);
    }
}

/// The text of the statement being executed, if it is the command `command_tag` (the event
/// trigger's TG_TAG), ending in `;`; an empty string when it touches only temporary objects;
/// NULL when it cannot be recovered (see `statement_for`). The text is in the server's
/// encoding, byte for byte.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn capture_statement(command_tag: &str) -> Option<ServerText> {
    let stmt = statement_for(command_tag)?;
    let spelling = stmt.spelling;
    // Temporary objects do not outlive their session; large objects are not decoded.
    if stmt.temporary || stmt.large_object {
        return Some(ServerText::new(String::new(), spelling)); // nothing to replay
    }
    // CONCURRENTLY cannot run inside the replayed transaction; the plain form builds the
    // same object there.
    let text = if stmt.concurrent {
        sqlgen::ddl::without_concurrently(&stmt.text, stmt.detaches).unwrap_or(stmt.text)
    } else {
        stmt.text
    };
    let captured = sqlgen::ddl::terminate_statement(&in_stream_strings(text));
    Some(ServerText::new(captured, spelling))
}

/// For a top-level CREATE TABLE AS: the statement in its WITH NO DATA form (its rows are
/// decoded as INSERTs). An empty string for a temporary table (nothing to capture). NULL when
/// it cannot be captured (nested in another statement in a session without the utility hook,
/// or a SELECT INTO whose INTO clause cannot be found). SELECT INTO becomes CREATE TABLE AS.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn create_table_as_statement(command_tag: &str) -> Option<ServerText> {
    let stmt = statement_for(command_tag)?;
    let spelling = stmt.spelling;
    let table_as = stmt.table_as?;
    if table_as.temporary {
        return Some(ServerText::new(String::new(), spelling));
    }
    let text = in_stream_strings(stmt.text);
    let statement = if table_as.select_into {
        sqlgen::ddl::select_into_as_create_table(&text)?
    } else {
        sqlgen::ddl::create_table_as_without_data(&text)
    };
    Some(ServerText::new(statement, spelling))
}

/// The stream is read with standard_conforming_strings on: a statement written for it off
/// gets its plain literals as E'' literals, which mean the same.
fn in_stream_strings(text: String) -> String {
    if standard_conforming_strings() {
        text
    } else {
        sqlgen::lexer::with_standard_strings(&text)
    }
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
        capture_statement,
        create_table_as_statement,
        in_extension_script,
        set_search_path_statement
    ]
);
