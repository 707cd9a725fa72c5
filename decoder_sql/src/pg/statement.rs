//! The client statement being executed, as the portal running it sees it. Used by DDL capture
//! to copy the exact text of a top-level DDL statement, even from a multi-statement query string.

use pgrx::pg_sys;
use std::ffi::CStr;

/// What a CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableAs {
    pub temporary: bool,
    pub select_into: bool,
}

/// The statement of the active portal: the top-level statement the client sent.
#[derive(Debug, Clone)]
pub struct ActiveStatement {
    /// Command tag, e.g. "CREATE TABLE".
    pub tag: String,
    /// The statement's own text within the query string (other statements excluded).
    pub text: String,
    pub table_as: Option<TableAs>,
}

/// The statement the active portal is running, if any: the top-level statement the client
/// sent.
pub fn active_statement() -> Option<ActiveStatement> {
    // SAFETY: ActivePortal is either null or the portal being run by this backend, valid while
    // its statement executes (we are called from within it).
    unsafe {
        let portal = pg_sys::ActivePortal;
        if portal.is_null() || (*portal).sourceText.is_null() {
            return None;
        }
        let stmts = (*portal).stmts;
        if stmts.is_null() || (*stmts).length != 1 {
            return None;
        }
        let node = (*(*stmts).elements).ptr_value.cast::<pg_sys::Node>();
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_PlannedStmt {
            return None;
        }
        statement_of(node.cast(), (*portal).sourceText)
    }
}

/// The command tag, own text and CREATE TABLE AS details of a planned utility statement.
///
/// # Safety
/// `planned` is a valid utility PlannedStmt and `source` the NUL-terminated query string it
/// was parsed from; `stmt_location`/`stmt_len` are byte offsets into it (len 0 = rest of the
/// string), as the parser sets them for each raw statement.
pub unsafe fn statement_of(
    planned: *mut pg_sys::PlannedStmt,
    source: *const std::ffi::c_char,
) -> Option<ActiveStatement> {
    // SAFETY: per the function contract.
    unsafe {
        if planned.is_null() || source.is_null() {
            return None;
        }
        let utility = (*planned).utilityStmt;
        if utility.is_null() {
            return None;
        }
        let tag = CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(utility)))
            .to_string_lossy()
            .into_owned();
        let source = CStr::from_ptr(source).to_bytes();
        let start = usize::try_from((*planned).stmt_location)
            .unwrap_or(0)
            .min(source.len());
        let len = usize::try_from((*planned).stmt_len).unwrap_or(0);
        let end = if len == 0 {
            source.len()
        } else {
            (start + len).min(source.len())
        };
        let text = String::from_utf8_lossy(&source[start..end]).into_owned();
        let table_as = if (*utility).type_ == pg_sys::NodeTag::T_CreateTableAsStmt {
            let ctas = utility.cast::<pg_sys::CreateTableAsStmt>();
            let into = (*ctas).into;
            let temporary = !into.is_null()
                && !(*into).rel.is_null()
                && (*(*into).rel).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP;
            Some(TableAs {
                temporary,
                select_into: (*ctas).is_select_into,
            })
        } else {
            None
        };
        Some(ActiveStatement {
            tag,
            text,
            table_as,
        })
    }
}

/// True while an extension script runs (CREATE/ALTER EXTENSION): its objects belong to the
/// extension and are recreated by the CREATE EXTENSION statement itself.
pub fn creating_extension() -> bool {
    // SAFETY: a plain read of a backend-global flag.
    unsafe { pg_sys::creating_extension }
}
