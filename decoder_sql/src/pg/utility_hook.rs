//! A `ProcessUtility_hook` that keeps track of every utility statement being executed, top
//! level or nested (inside functions, procedures, DO blocks, `EXECUTE`, event-trigger
//! functions), with the statement's own text, so that the DDL capture can copy exactly the
//! statement an event trigger fires for. Chains to any previously installed hook.
//!
//! The hook is installed by `_PG_init`, so it only sees statements of sessions that loaded
//! the library before them: `session_preload_libraries` or `shared_preload_libraries`
//! (pgincr check --fix sets the former for the database). Without it, [`innermost`] is empty
//! and the capture falls back to the top-level statement of the active portal.
//!
//! Errors: a statement that fails leaves PostgreSQL by longjmp, straight through this hook
//! (the next hook is called without pgrx's FFI guard, so that errors keep their exact form
//! and cost nothing here). Its entry is dropped when the subtransaction that catches the error
//! aborts (subtransaction callback), or when the next top-level statement starts.

use super::compat;
use super::server_text::{ServerText, read};
use super::statement::{
    ActiveStatement, IndexGuard, InvalidIndex, command_tag, computed_attach_bound,
    computed_partition_bound, copies_temporary_table, indexes_partitioned_table,
    invalid_index_named, reindex_scope, statement_of,
};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::c_char;
use std::sync::OnceLock;

/// A utility statement being executed.
struct Running {
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    /// A CREATE TABLE with LIKE of a temporary table (see `copies_temporary_table`).
    likes_temporary: bool,
    /// See `computed_partition_bound` and `computed_attach_bound`.
    computed_bound_at: Option<usize>,
    /// See `indexes_partitioned_table`.
    on_partitioned_table: bool,
    /// The partition an ATTACH PARTITION with a computed bound attaches.
    attached_partition: Option<pg_sys::Oid>,
    /// See `invalid_index_named`.
    invalid_index: Option<InvalidIndex>,
    /// For a REINDEX: the invalid indexes it may make valid (`capture::reindex_starting`).
    reindex_invalid: Vec<ServerText>,
}

thread_local! {
    // A backend runs one statement at a time on one thread; nested statements push on top.
    static RUNNING: RefCell<Vec<Running>> = const { RefCell::new(Vec::new()) };
    // (subtransaction, how many statements were running when it started).
    static SUBXACT_MARKS: RefCell<Vec<(pg_sys::SubTransactionId, usize)>> =
        const { RefCell::new(Vec::new()) };
}

static PREVIOUS: OnceLock<pg_sys::ProcessUtility_hook_type> = OnceLock::new();

/// Installs the hook (once per backend).
pub fn install() {
    if PREVIOUS.get().is_some() {
        return;
    }
    // SAFETY: _PG_init runs in the backend's only thread before any statement uses the hook;
    // the previous value is kept and called in turn. The callback stays registered for the
    // life of the backend (the library is never unloaded).
    unsafe {
        let _ = PREVIOUS.set(pg_sys::ProcessUtility_hook);
        pg_sys::ProcessUtility_hook = Some(compat::process_utility_hook);
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// The innermost utility statement being executed, if the hook saw it start.
pub fn innermost() -> Option<ActiveStatement> {
    RUNNING.with(|r| {
        let r = r.borrow();
        let top = r.last()?;
        // SAFETY: entries are removed when their statement returns, when the subtransaction
        // that caught its error aborts, and before every top-level statement; the top entry
        // is therefore the statement running now, whose plan and query string are alive.
        let mut stmt = unsafe { statement_of(top.pstmt, top.query) }?;
        stmt.likes_temporary = top.likes_temporary;
        stmt.computed_bound_at = top.computed_bound_at;
        stmt.attached_partition = top.attached_partition;
        stmt.on_partitioned_table = top.on_partitioned_table;
        stmt.invalid_index = match &top.invalid_index {
            None => None,
            Some(InvalidIndex::Dropped) => Some(IndexGuard::IfExists),
            Some(InvalidIndex::Named(schema, name)) => {
                let ((schema, s1), (name, s2)) = (read(schema), read(name));
                (s1 == stmt.spelling && s2 == stmt.spelling)
                    .then_some(IndexGuard::IfPresent(schema, name))
            }
        };
        Some(stmt)
    })
}

/// Runs `next` (the previous hook or standard_ProcessUtility) with the statement on the stack.
///
/// # Safety
/// `pstmt` and `query` are the hook's arguments, valid until `next` returns. `next` may leave
/// by longjmp: nothing with a destructor may be alive in this frame when it is called.
pub unsafe fn around(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    top_level: bool,
    next: impl FnOnce(Option<pg_sys::ProcessUtility_hook_type>),
) {
    // SAFETY: per the function contract. Command tag names are static strings: the tag
    // outlives the statement.
    let tag = unsafe { command_tag(pstmt) };
    if tag.is_some_and(crate::capture::wants_starting) {
        // (Dropped before `next` runs.)
        // SAFETY: as above.
        if let Some(stmt) = unsafe { statement_of(pstmt, query) } {
            crate::capture::utility_starting(&stmt);
        }
    }
    let create_table = tag == Some(&b"CREATE TABLE"[..]);
    let alter_table = tag == Some(&b"ALTER TABLE"[..]);
    // SAFETY: as above; a CREATE TABLE's tree is read before it runs.
    let likes_temporary = create_table && unsafe { copies_temporary_table(pstmt) };
    let (computed_bound_at, attached_partition) = if create_table {
        // SAFETY: as above.
        (unsafe { computed_partition_bound(pstmt) }, None)
    } else if alter_table {
        // SAFETY: as above.
        unsafe { computed_attach_bound(pstmt) }.map_or((None, None), |(at, p)| (Some(at), Some(p)))
    } else {
        (None, None)
    };
    // SAFETY: as above.
    let on_partitioned_table =
        tag == Some(&b"CREATE INDEX"[..]) && unsafe { indexes_partitioned_table(pstmt) };
    // Known only before it runs: a DROP removes the index, a RENAME renames it.
    let invalid_index = matches!(
        tag,
        Some(b"ALTER TABLE" | b"ALTER INDEX" | b"DROP INDEX" | b"COMMENT")
    )
    // SAFETY: as above.
    .then(|| unsafe { invalid_index_named(pstmt) })
    .flatten();
    let reindex_invalid = if tag == Some(&b"REINDEX"[..]) {
        // SAFETY: as above.
        unsafe { reindex_scope(pstmt) }
            .map(|(relation, schema)| crate::capture::reindex_starting(relation, schema))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        if top_level {
            // Whatever is left came from statements that failed.
            r.clear();
        }
        r.push(Running {
            pstmt,
            query,
            likes_temporary,
            computed_bound_at,
            on_partitioned_table,
            attached_partition,
            invalid_index,
            reindex_invalid,
        });
    });
    next(PREVIOUS.get().copied());
    let reindex_invalid = RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let at = r.iter().rposition(|e| e.pstmt == pstmt)?;
        let invalid = std::mem::take(&mut r[at].reindex_invalid);
        r.truncate(at);
        Some(invalid)
    });
    if let Some(invalid) = reindex_invalid.filter(|i| !i.is_empty()) {
        // SAFETY: makes what the REINDEX changed visible to the queries that follow, as
        // PostgreSQL does between the commands of a transaction. As above for `statement_of`.
        if let Some(stmt) = unsafe {
            pg_sys::CommandCounterIncrement();
            statement_of(pstmt, query)
        } {
            crate::capture::reindex_completed(&stmt, &invalid);
        }
    }
    // Only the few commands the capture wants afterwards pay for their text being copied.
    if !tag.is_some_and(crate::capture::wants_completed) {
        return;
    }
    // SAFETY: as above.
    if let Some(stmt) = unsafe { statement_of(pstmt, query) } {
        crate::capture::utility_completed(&stmt);
    }
}

/// Subtransaction events: an aborted subtransaction (an error caught by PL/pgSQL's EXCEPTION,
/// a savepoint rolled back) ends the statements that started inside it.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    SUBXACT_MARKS.with(|m| {
        let mut marks = m.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB => {
                let running = RUNNING.with(|r| r.borrow().len());
                marks.push((subid, running));
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB
            | pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                if let Some(at) = marks.iter().rposition(|(id, _)| *id == subid) {
                    let (_, running) = marks[at];
                    marks.truncate(at);
                    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
                        RUNNING.with(|r| r.borrow_mut().truncate(running));
                    }
                }
            }
            _ => {}
        }
    });
}
