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
use super::statement::{
    ActiveStatement, command_tag, computed_partition_bound, copies_temporary_table, statement_of,
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
    /// See `computed_partition_bound`.
    computed_bound_at: Option<usize>,
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
    // SAFETY: as above; a CREATE TABLE's tree is read before it runs.
    let likes_temporary = create_table && unsafe { copies_temporary_table(pstmt) };
    let computed_bound_at = create_table
        // SAFETY: as above.
        .then(|| unsafe { computed_partition_bound(pstmt) })
        .flatten();
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
        });
    });
    next(PREVIOUS.get().copied());
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(at) = r.iter().rposition(|e| e.pstmt == pstmt) {
            r.truncate(at);
        }
    });
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
