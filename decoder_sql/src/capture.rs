//! The DDL capture installed by `CREATE EXTENSION decoder_sql`: the handlers of its event
//! triggers, and SQL-callable helpers of the PL/pgSQL that decides what to capture
//! (`sql/ddl_capture.sql`).
//!
//! Only these handlers, called by PostgreSQL's event-trigger machinery through C entry points
//! (`pg::event_trigger`), the utility hook and `snapshot_sequences` write into the capture
//! channel (`pg::channel`). What they write is what the PL/pgSQL `*_of` functions return,
//! which anyone may call but which write nothing themselves; and nothing a session can set
//! (a setting, an argument) reaches the text of a message.

use crate::pg::channel;
use crate::pg::event_trigger::Event;
use crate::pg::server_text::ServerText;
use crate::pg::server_text::Spelling;
use crate::pg::statement::{
    ActiveStatement, GlobalReplay, IndexGuard, active_statement, creating_extension,
    session_has_temporary_schema, standard_conforming_strings,
};
use crate::pg::utility_hook;
use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use sqlgen::options::DEFAULT_DDL_PREFIX;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What the sql_drop event of a DROP found, for its ddl_command_end event.
struct Dropped {
    /// Every dropped object was temporary.
    temp_only: bool,
    /// Some dropped objects were temporary: the permanent ones (quoted, qualified, joined by
    /// ", "), which are all the replay may drop. None otherwise.
    permanent: Option<ServerText>,
}

thread_local! {
    static DROPPED: RefCell<Option<Dropped>> = const { RefCell::new(None) };
    // Objects this session created that are temporary only by depending on temporary ones
    // (classid, objid): neither they nor their DROP are captured. They go with the session.
    static EFFECTIVELY_TEMPORARY: RefCell<Vec<(pg_sys::Oid, pg_sys::Oid)>> =
        const { RefCell::new(Vec::new()) };
    // The replica-identity fix is running its own ALTER TABLE, written into the stream by
    // the fix itself.
    static FIXING_IDENTITY: Cell<bool> = const { Cell::new(false) };
}

/// Forgets what an aborted statement's sql_drop left behind.
pub fn forget_pending() {
    DROPPED.with(|d| d.borrow_mut().take());
}

/// Sets [`FIXING_IDENTITY`] while alive, also when an error unwinds through it.
struct FixingIdentity;

impl FixingIdentity {
    fn start() -> Self {
        FIXING_IDENTITY.with(|f| f.set(true));
        FixingIdentity
    }
}

impl Drop for FixingIdentity {
    fn drop(&mut self) {
        FIXING_IDENTITY.with(|f| f.set(false));
    }
}

thread_local! {
    // The handlers' queries, planned once per session: parsing and planning them again for
    // every DDL statement was a good part of the capture's cost. Shared out (Rc) so that a
    // query run from inside another (DDL a capture function runs) finds the list unborrowed.
    static PLANS: RefCell<Vec<(&'static str, Rc<OwnedPreparedStatement>)>> =
        const { RefCell::new(Vec::new()) };
}

/// The session's plan of `sql`, whose parameters have the types of `args`.
fn plan(
    client: &SpiClient<'_>,
    sql: &'static str,
    args: &[DatumWithOid<'_>],
) -> Result<Rc<OwnedPreparedStatement>, pgrx::spi::Error> {
    if let Some(known) = PLANS.with(|p| {
        p.borrow()
            .iter()
            .find(|(s, _)| *s == sql)
            .map(|(_, plan)| plan.clone())
    }) {
        return Ok(known);
    }
    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
    let prepared = Rc::new(client.prepare_mut(sql, &types)?.keep());
    PLANS.with(|p| p.borrow_mut().push((sql, prepared.clone())));
    Ok(prepared)
}

/// Runs `sql` (a SELECT of one text column) and returns its non-NULL values as bytes.
fn text_rows(sql: &'static str, args: &[DatumWithOid<'_>]) -> Vec<ServerText> {
    text_table(sql, args, 1)
        .into_iter()
        .filter_map(|mut row| row.pop().flatten())
        .collect()
}

/// Runs `sql` (a SELECT of `columns` text columns) and returns its rows, NULL as None.
fn text_table(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    columns: usize,
) -> Vec<Vec<Option<ServerText>>> {
    let rows = pgrx::Spi::connect_mut(|client| {
        let plan = plan(client, sql, args)?;
        let table = client.update(&*plan, None, args)?;
        let mut out = Vec::new();
        for row in table {
            out.push(
                (1..=columns)
                    .map(|i| row.get::<ServerText>(i))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok::<_, pgrx::spi::Error>(out)
    });
    rows.unwrap_or_else(|e| pgrx::error!("decoder_sql: {sql}: {e}"))
}

/// `text` read as a string in `spelling`, if that is how it reads.
fn in_spelling(text: &ServerText, spelling: Spelling) -> Option<String> {
    let (text, read) = crate::pg::server_text::read(text.as_bytes());
    (read == spelling).then_some(text)
}

/// A cell of [`text_table`] as a string in `spelling` (None for NULL or another spelling).
fn cell_in_spelling(cell: &Option<ServerText>, spelling: Spelling) -> Option<String> {
    cell.as_ref().and_then(|t| in_spelling(t, spelling))
}

/// Writes each message into the capture channel, in order.
fn emit_all(messages: &[ServerText]) {
    for m in messages.iter().filter(|m| !m.as_bytes().is_empty()) {
        channel::emit(DEFAULT_DDL_PREFIX, m.as_bytes());
    }
}

/// sql_drop: remembers whether the DROP dropped only temporary objects.
pub fn on_sql_drop(_event: &Event) {
    let (classids, objids): (Vec<pg_sys::Oid>, Vec<pg_sys::Oid>) =
        EFFECTIVELY_TEMPORARY.with(|t| t.borrow().iter().copied().unzip());
    let row = pgrx::Spi::connect_mut(|client| {
        let args = [DatumWithOid::from(classids), DatumWithOid::from(objids)];
        let plan = plan(
            client,
            "SELECT temp_only, permanent FROM decoder_sql.capture_sql_drop_of($1, $2)",
            &args,
        )?;
        let table = client.update(&*plan, None, &args)?;
        let row = table.first();
        Ok::<_, pgrx::spi::Error>((row.get::<bool>(1)?, row.get::<ServerText>(2)?))
    });
    let (temp_only, permanent) =
        row.unwrap_or_else(|e| pgrx::error!("decoder_sql: reading the dropped objects: {e}"));
    DROPPED.with(|d| {
        *d.borrow_mut() = Some(Dropped {
            temp_only: temp_only.unwrap_or(false),
            permanent,
        })
    });
}

/// ddl_command_end: the statement (and its search_path) into the stream.
pub fn on_ddl_command_end(event: &Event) {
    let dropped = DROPPED.with(|d| d.borrow_mut().take());
    if FIXING_IDENTITY.with(Cell::get) {
        return;
    }
    let (temp_only, permanent) = match dropped {
        Some(d) => (Some(d.temp_only), d.permanent),
        None => (None, None),
    };
    if dropped_is_none_and_effectively_temporary(temp_only.is_none()) {
        return;
    }
    let messages = text_rows(
        "SELECT m FROM decoder_sql.capture_ddl_command_end_of($1, $2, $3, $4) AS m",
        &[
            DatumWithOid::from(event.tag.as_str()),
            DatumWithOid::from(event.search_path.clone()),
            DatumWithOid::from(temp_only),
            DatumWithOid::from(permanent),
        ],
    );
    emit_all(&messages);
}

/// Whether the statement (one that dropped nothing) made only objects that are temporary by
/// depending on temporary ones; they are remembered for their DROP.
fn dropped_is_none_and_effectively_temporary(dropped_nothing: bool) -> bool {
    if !dropped_nothing || !session_has_temporary_schema() {
        return false;
    }
    let objects = pgrx::Spi::connect_mut(|client| {
        let table = client.update(
            "SELECT classid, objid FROM decoder_sql.effectively_temporary_objects_of()",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in table {
            if let (Some(classid), Some(objid)) =
                (row.get::<pg_sys::Oid>(1)?, row.get::<pg_sys::Oid>(2)?)
            {
                out.push((classid, objid));
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| pgrx::error!("decoder_sql: reading the statement's objects: {e}"));
    if objects.is_empty() {
        return false;
    }
    EFFECTIVELY_TEMPORARY.with(|t| t.borrow_mut().extend(objects));
    true
}

/// ddl_command_start of CREATE TABLE AS / SELECT INTO: the table, before its rows.
pub fn on_ddl_command_start(event: &Event) {
    let messages = text_rows(
        "SELECT m FROM decoder_sql.capture_ddl_command_start_of($1, $2) AS m",
        &[
            DatumWithOid::from(event.tag.as_str()),
            DatumWithOid::from(event.search_path.clone()),
        ],
    );
    emit_all(&messages);
}

/// ddl_command_end of statements that can leave a table without replica identity.
pub fn on_replica_identity(_event: &Event) {
    if FIXING_IDENTITY.with(Cell::get) {
        return;
    }
    let _fixing = FixingIdentity::start();
    let messages = text_rows(
        "SELECT m FROM decoder_sql.ensure_replica_identity_of() AS m",
        &[],
    );
    emit_all(&messages);
}

/// `decoder_sql.snapshot_sequences()`: the current state of every permanent sequence of the
/// database into the stream as `SELECT pg_catalog.setval(...)` statements, in the calling
/// transaction (pgincr stream calls it periodically). Returns how many.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn snapshot_sequences() -> i32 {
    let messages = text_rows(
        "SELECT m FROM decoder_sql.sequence_snapshot_statements() AS m",
        &[],
    );
    emit_all(&messages);
    i32::try_from(messages.len()).unwrap_or(i32::MAX)
}

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
/// Statements on roles are among them (roles belong to the cluster, not to a database): the
/// roles that later DDL, grants and owners name must exist when the stream replays, even
/// ones created and dropped between two globals snapshots.
const NOT_SEEN_BY_EVENT_TRIGGERS: &[&str] = &[
    "CREATE EVENT TRIGGER",
    "ALTER EVENT TRIGGER",
    "DROP EVENT TRIGGER",
    "CREATE ROLE",
    "ALTER ROLE",
    "GRANT ROLE",
    "REVOKE ROLE",
    "CREATE TABLESPACE",
    "ALTER TABLESPACE",
    "ALTER DATABASE",
    // Only on tablespaces, roles and the database: event triggers see the others.
    "GRANT",
    "REVOKE",
    "COMMENT",
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
    match &stmt.global_replay {
        Some(GlobalReplay::Not) => return,
        None if matches!(stmt.tag.as_str(), "GRANT" | "REVOKE" | "COMMENT") => return,
        _ => {}
    }
    if !capture_enabled() {
        return;
    }
    if let Some(GlobalReplay::CreateTablespace(name)) = &stmt.global_replay {
        create_tablespace_completed(name, stmt.spelling);
        return;
    }
    let text = in_stream_strings(stmt.text.clone());
    let text = match &stmt.global_replay {
        None | Some(GlobalReplay::Not | GlobalReplay::CreateTablespace(_)) => text,
        Some(replay) => {
            let Ok(text) = sqlgen::ddl::without_passwords(&text) else {
                uncaptured(
                    &stmt.tag,
                    "its PASSWORD option could not be told apart from the rest of the \
                     statement, which is therefore not written",
                );
                return;
            };
            match replay {
                GlobalReplay::CreateRoleIfMissing(name) => {
                    sqlgen::ddl::create_role_if_missing(&text, name)
                }
                GlobalReplay::OnThisDatabase(name) => {
                    match sqlgen::ddl::on_current_database(&text, name) {
                        Some(sql) => sql,
                        None => {
                            uncaptured(&stmt.tag, "the database's name was not found in it");
                            return;
                        }
                    }
                }
                _ => text,
            }
        }
    };
    emit_as_author(sqlgen::ddl::terminate_statement(&text), stmt);
}

/// Writes `text`, a statement the hook captured, with the search_path and roles it ran with
/// (`decoder_sql.statement_messages`, as for statements event triggers capture).
fn emit_as_author(text: String, stmt: &ActiveStatement) {
    let messages = text_rows(
        "SELECT m FROM decoder_sql.statement_messages($1, \
         pg_catalog.current_setting('search_path')) AS m",
        &[DatumWithOid::from(ServerText::new(text, stmt.spelling))],
    );
    emit_all(&messages);
}

/// Whether the capture is installed in this database and running.
fn capture_enabled() -> bool {
    let enabled = pgrx::Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger
                         WHERE evtname = 'decoder_sql_ddl_capture' AND evtenabled <> 'D')",
    );
    matches!(enabled, Ok(Some(true)))
}

/// Whether [`utility_starting`] is needed before a statement with this command tag.
pub fn wants_starting(tag: &[u8]) -> bool {
    tag == b"EXPLAIN"
}

/// Called by the utility hook before a statement [`wants_starting`] runs: `EXPLAIN ANALYZE`
/// of CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW creates its table, for which
/// no event trigger fires, and writes its rows before it ends; the table goes into the
/// stream first. (If the statement fails, its transaction takes the message with it.)
pub fn utility_starting(stmt: &ActiveStatement) {
    let Some(table_as) = stmt.table_as.as_ref().filter(|t| t.explained) else {
        return;
    };
    if table_as.temporary || creating_extension() || !capture_enabled() {
        return;
    }
    let statement = sqlgen::ddl::explained_statement(&stmt.text)
        .and_then(|inner| table_as_text(in_stream_strings(inner.to_owned()), table_as));
    let Some(statement) = statement else {
        uncaptured(
            &stmt.tag,
            "the statement EXPLAIN ANALYZE runs could not be read",
        );
        return;
    };
    emit_as_author(statement, stmt);
}

/// A CREATE TABLE AS in the form the stream replays before its rows: `WITH NO DATA` (SELECT
/// INTO as CREATE TABLE AS, a prepared statement's query in place of `EXECUTE`); a
/// materialized view as it is (its rows are not decoded: the replay computes them).
fn table_as_text(text: String, table_as: &crate::pg::statement::TableAs) -> Option<String> {
    Some(if table_as.materialized && table_as.explained {
        sqlgen::ddl::terminate_statement(&text)
    } else if table_as.select_into {
        sqlgen::ddl::select_into_as_create_table(&text)?
    } else if table_as.executes {
        // The prepared statement exists only in this session: its query takes its place.
        let prepared = table_as.prepared.clone()?;
        let query = in_stream_strings(prepared.text);
        sqlgen::ddl::table_as_prepared(
            &text,
            &query,
            &prepared.parameter_types,
            &prepared.column_names,
        )?
    } else {
        sqlgen::ddl::create_table_as_without_data(&text)
    })
}

/// Records a statement that cannot be written (`decoder_sql.record_uncaptured`), and writes
/// its marker into the stream.
fn uncaptured(tag: &str, reason: &str) {
    let marker = text_rows(
        "SELECT decoder_sql.record_uncaptured($1, $2)",
        &[DatumWithOid::from(tag), DatumWithOid::from(reason)],
    );
    emit_all(&marker);
}

/// A created tablespace, as the catalog has it, into the stream outside any transaction:
/// CREATE TABLESPACE cannot run inside one, so it is written where it can replay on its own.
fn create_tablespace_completed(name: &str, spelling: crate::pg::server_text::Spelling) {
    let statement = text_rows(
        "SELECT pg_catalog.format('CREATE TABLESPACE %I OWNER %I LOCATION %L%s;',
                spcname, pg_catalog.pg_get_userbyid(spcowner),
                -- An in-place tablespace (allow_in_place_tablespaces) has LOCATION ''.
                CASE WHEN pg_catalog.pg_tablespace_location(oid) ~ '^pg_tblspc/' THEN ''
                     ELSE pg_catalog.pg_tablespace_location(oid) END,
                CASE WHEN spcoptions IS NULL THEN ''
                     ELSE ' WITH (' || pg_catalog.array_to_string(spcoptions, ', ') || ')' END)
           FROM pg_catalog.pg_tablespace WHERE spcname = $1",
        &[DatumWithOid::from(ServerText::new(
            name.to_owned(),
            spelling,
        ))],
    );
    for s in statement {
        channel::emit_outside_transactions(DEFAULT_DDL_PREFIX, s.as_bytes());
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
    // The replay has no temporary table to copy: the table as LIKE made it.
    if stmt.likes_temporary {
        return text_rows("SELECT decoder_sql.created_table_definition()", &[])
            .into_iter()
            .next();
    }
    // A bound computed on the source is written as the values it computed.
    let mut text = stmt.text;
    // (`at` counts bytes of the statement as the server has it, which its UTF-8 text keeps.)
    if let (Some(at), Spelling::Utf8) = (stmt.computed_bound_at, spelling)
        && let Some(bound) = partition_bound(stmt.attached_partition)
        && let Some(bound) = in_spelling(&bound, spelling)
        && let Some(rewritten) = sqlgen::ddl::with_partition_bound(&text, at, &bound)
    {
        text = rewritten;
    }
    // A partitioned index that adopted an invalid partition index is written as its tree.
    if stmt.on_partitioned_table
        && stmt.tag == "CREATE INDEX"
        && let Some(tree) = invalid_partitioned_index_tree(spelling)
    {
        return Some(ServerText::new(tree, spelling));
    }
    // CONCURRENTLY cannot run inside the replayed transaction; the plain form builds the
    // same object there.
    let text = if stmt.concurrent {
        sqlgen::ddl::without_concurrently(&text, stmt.detaches).unwrap_or(text)
    } else {
        text
    };
    // An index that is invalid on the source is not on the target (the stream never made
    // it), unless it was once valid there.
    let text = in_stream_strings(text);
    let text = match &stmt.invalid_index {
        None => text,
        Some(IndexGuard::IfExists) => sqlgen::index::drop_index_if_exists(&text).unwrap_or(text),
        Some(IndexGuard::IfPresent(schema, name)) => {
            sqlgen::index::if_relation_exists(schema, name, &text)
        }
    };
    let captured = sqlgen::ddl::terminate_statement(&text);
    Some(ServerText::new(captured, spelling))
}

/// The bound (`FOR VALUES …`) the catalog holds for `partition`, or, without one, for the
/// partition the statement at ddl_command_end created.
fn partition_bound(partition: Option<pg_sys::Oid>) -> Option<ServerText> {
    match partition {
        Some(partition) => text_rows(
            "SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid)
               FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relispartition",
            &[DatumWithOid::from(partition)],
        ),
        None => text_rows(
            "SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid)
               FROM pg_catalog.pg_event_trigger_ddl_commands() d
               JOIN pg_catalog.pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND c.relispartition LIMIT 1",
            &[],
        ),
    }
    .into_iter()
    .next()
}

/// For a CREATE INDEX at ddl_command_end that made an invalid partitioned index (it adopted
/// an invalid partition index): the index written as its tree
/// (`sqlgen::index::partitioned_index_as_tree`).
fn invalid_partitioned_index_tree(spelling: Spelling) -> Option<String> {
    let rows = text_table(
        "SELECT pg_catalog.pg_get_indexdef(c.oid), n.nspname::pg_catalog.text,
                c.relname::pg_catalog.text, pn.nspname::pg_catalog.text,
                p.relname::pg_catalog.text, t.level::pg_catalog.text, (c.relkind = 'I')::pg_catalog.text,
                i.indisvalid::pg_catalog.text
           FROM pg_catalog.pg_event_trigger_ddl_commands() d
           JOIN pg_catalog.pg_class r ON r.oid = d.objid AND r.relkind = 'I'
           JOIN pg_catalog.pg_index ri ON ri.indexrelid = r.oid AND NOT ri.indisvalid
          CROSS JOIN LATERAL pg_catalog.pg_partition_tree(r.oid::pg_catalog.regclass) t
           JOIN pg_catalog.pg_class c ON c.oid = t.relid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
           LEFT JOIN pg_catalog.pg_class p ON p.oid = t.parentrelid
           LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
          ORDER BY t.level, c.oid",
        &[],
        8,
    );
    let text = |cell: &Option<ServerText>| cell_in_spelling(cell, spelling);
    let tree = rows
        .iter()
        .map(|row| {
            let parent = text(&row[3]).zip(text(&row[4]));
            Some(sqlgen::index::TreeIndex {
                definition: in_stream_strings(text(&row[0])?),
                schema: text(&row[1])?,
                name: text(&row[2])?,
                parent,
                level: text(&row[5])?.parse().ok()?,
                partitioned: text(&row[6])? == "true",
                valid: text(&row[7])? == "true",
            })
        })
        .collect::<Option<Vec<_>>>()?;
    sqlgen::index::partitioned_index_as_tree(&tree)
}

/// Before a REINDEX of `relation` or of the indexes in `schema` (InvalidOid: not limited to
/// one; passed as NULL): the invalid indexes it may make valid, quoted and qualified. Such an index is not on
/// the target when a failed CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY left it.
pub fn reindex_starting(relation: pg_sys::Oid, schema: pg_sys::Oid) -> Vec<ServerText> {
    if creating_extension() || !capture_enabled() {
        return Vec::new();
    }
    let limited = |oid: pg_sys::Oid| (oid != pg_sys::InvalidOid).then_some(oid);
    text_rows(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE NOT i.indisvalid AND c.relkind = 'i' AND c.relpersistence = 'p'
            AND n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema')
            AND ($2 IS NULL OR c.relnamespace = $2)
            AND ($1 IS NULL OR $1 IN (c.oid, i.indrelid)
                 OR c.oid IN (SELECT t.relid
                                FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t)
                 OR i.indrelid IN (SELECT t.relid
                                     FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t))",
        &[
            DatumWithOid::from(limited(relation)),
            DatumWithOid::from(limited(schema)),
        ],
    )
}

/// After a REINDEX succeeded: each index of `invalid` (from [`reindex_starting`]) that is
/// valid now is written as `CREATE INDEX IF NOT EXISTS` with what else it has
/// (`sqlgen::index::index_made_valid`). REINDEX itself is not written: it changes nothing
/// else a replay could see.
pub fn reindex_completed(stmt: &ActiveStatement, invalid: &[ServerText]) {
    let text = |cell: &Option<ServerText>| cell_in_spelling(cell, stmt.spelling);
    for name in invalid {
        let rows = text_table(
            "SELECT pg_catalog.pg_get_indexdef(c.oid), n.nspname::pg_catalog.text,
                    c.relname::pg_catalog.text, pn.nspname::pg_catalog.text,
                    p.relname::pg_catalog.text, s.spcname::pg_catalog.text,
                    pg_catalog.obj_description(c.oid, 'pg_class')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_catalog.pg_inherits h ON h.inhrelid = c.oid
               LEFT JOIN pg_catalog.pg_class p ON p.oid = h.inhparent
               LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
               LEFT JOIN pg_catalog.pg_tablespace s ON s.oid = c.reltablespace
              WHERE c.oid = pg_catalog.to_regclass($1) AND i.indisvalid",
            &[DatumWithOid::from(name.clone())],
            7,
        );
        for row in rows {
            let (Some(definition), Some(schema), Some(index)) =
                (text(&row[0]), text(&row[1]), text(&row[2]))
            else {
                continue;
            };
            let parent = text(&row[3]).zip(text(&row[4]));
            let (tablespace, comment) = (text(&row[5]), text(&row[6]));
            if let Some(sql) = sqlgen::index::index_made_valid(
                &in_stream_strings(definition),
                (&schema, &index),
                parent.as_ref().map(|(s, n)| (s.as_str(), n.as_str())),
                tablespace.as_deref(),
                comment.as_deref(),
            ) {
                emit_as_author(sql, stmt);
            }
        }
    }
}

/// For a top-level CREATE TABLE AS: the statement in its WITH NO DATA form (its rows are
/// decoded as INSERTs), with the query of a prepared statement in place of `EXECUTE name`.
/// An empty string for a temporary table (nothing to capture). NULL when it cannot be
/// captured (nested in another statement in a session without the utility hook,
/// or a SELECT INTO whose INTO clause cannot be found). SELECT INTO becomes CREATE TABLE AS.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn create_table_as_statement(command_tag: &str) -> Option<ServerText> {
    let stmt = statement_for(command_tag)?;
    let spelling = stmt.spelling;
    let table_as = stmt.table_as?;
    if table_as.temporary {
        return Some(ServerText::new(String::new(), spelling));
    }
    let statement = table_as_text(in_stream_strings(stmt.text), &table_as)?;
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
        set_search_path_statement,
        snapshot_sequences
    ]
);
