//! A `ProcessUtility_hook` that keeps track of every utility statement being executed, top
//! level or nested (inside functions, procedures, DO blocks, `EXECUTE`, event-trigger
//! functions), with the statement's own text, so that the DDL capture can copy exactly the
//! statement an event trigger fires for. Chains to any previously installed hook.
//!
//! The hook is installed by `_PG_init`, so it only sees statements of sessions that loaded
//! the library before them: `session_preload_libraries` or `shared_preload_libraries`
//! (pgincr init sets the former for the database). Without it, [`innermost`] is empty and
//! the capture falls back to the top-level statement of the active portal.

use super::compat;
use super::statement::{ActiveStatement, statement_of};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::c_char;
use std::sync::OnceLock;

/// A utility statement being executed.
struct Running {
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
}

thread_local! {
    // A backend runs one statement at a time on one thread; nested statements push on top.
    static RUNNING: RefCell<Vec<Running>> = const { RefCell::new(Vec::new()) };
}

static PREVIOUS: OnceLock<pg_sys::ProcessUtility_hook_type> = OnceLock::new();

/// Installs the hook (once per backend).
pub fn install() {
    if PREVIOUS.get().is_some() {
        return;
    }
    // SAFETY: _PG_init runs in the backend's only thread before any statement uses the hook;
    // the previous value is kept and called in turn.
    unsafe {
        let _ = PREVIOUS.set(pg_sys::ProcessUtility_hook);
        pg_sys::ProcessUtility_hook = Some(compat::process_utility_hook);
    }
}

/// The innermost utility statement being executed, if the hook saw it start.
pub fn innermost() -> Option<ActiveStatement> {
    RUNNING.with(|r| {
        let r = r.borrow();
        let top = r.last()?;
        // SAFETY: the entry was pushed by `around` for a statement still executing (it is
        // popped when that statement returns or fails), so its plan tree and query string
        // are alive.
        unsafe { statement_of(top.pstmt, top.query) }
    })
}

/// Pops the entry pushed for a statement when it returns or unwinds with an error.
struct Pop;

impl Drop for Pop {
    fn drop(&mut self) {
        RUNNING.with(|r| {
            r.borrow_mut().pop();
        });
    }
}

/// Runs `next` (the previous hook or standard_ProcessUtility) with the statement on the stack.
///
/// # Safety
/// `pstmt` and `query` are the hook's arguments, valid until `next` returns.
pub unsafe fn around(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    next: impl FnOnce(Option<pg_sys::ProcessUtility_hook_type>),
) {
    RUNNING.with(|r| r.borrow_mut().push(Running { pstmt, query }));
    let _pop = Pop;
    next(PREVIOUS.get().copied());
    // SAFETY: per the function contract, still valid after the statement ran.
    if let Some(stmt) = unsafe { statement_of(pstmt, query) } {
        crate::capture::utility_completed(&stmt);
    }
}
