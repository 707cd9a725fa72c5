//! The C entry points of the DDL capture's event triggers. They run only when called by
//! PostgreSQL's event-trigger machinery: the call must carry an `EventTriggerData` context,
//! which no SQL call can supply (a direct `SELECT` of one is an error). That makes them the one
//! place allowed to write signed messages into the capture channel (`crate::capture`). Each
//! hands the event's command tag and the statement's `search_path` to its handler.

use super::server_text::ServerText;
use pgrx::pg_sys;
use std::ffi::CStr;

/// What an event trigger fired for.
pub struct Event {
    /// The command tag (`CREATE TABLE` ...).
    pub tag: String,
    /// The `search_path` the statement ran with, in the server's encoding.
    pub search_path: ServerText,
}

/// # Safety
/// `fcinfo` is the function-call info PostgreSQL passed to an entry point.
unsafe fn event_of(fcinfo: pg_sys::FunctionCallInfo) -> Event {
    // SAFETY: per the function contract; the context is checked to be EventTriggerData
    // before it is read as one, and the strings are copied out at once.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            pgrx::error!("decoder_sql: this function can only be called by an event trigger");
        }
        let data = context.cast::<pg_sys::EventTriggerData>();
        let tag = CStr::from_ptr(pg_sys::GetCommandTagName((*data).tag))
            .to_string_lossy()
            .into_owned();
        let path = pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false);
        let search_path = if path.is_null() {
            Vec::new()
        } else {
            CStr::from_ptr(path).to_bytes().to_vec()
        };
        Event {
            tag,
            search_path: ServerText::from_bytes(search_path),
        }
    }
}

/// Defines the function-manager entry point `$name` (with its V1 info record) that calls
/// `$handler(&Event)`.
macro_rules! entry_point {
    ($finfo:ident, $name:ident, $handler:path) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[pgrx::pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            // SAFETY: PostgreSQL calls this with a valid fcinfo.
            let event = unsafe { event_of(fcinfo) };
            $handler(&event);
            pg_sys::Datum::from(0usize)
        }
    };
}

entry_point!(
    pg_finfo_decoder_sql_ddl_command_end,
    decoder_sql_ddl_command_end,
    crate::capture::on_ddl_command_end
);
entry_point!(
    pg_finfo_decoder_sql_ddl_command_start,
    decoder_sql_ddl_command_start,
    crate::capture::on_ddl_command_start
);
entry_point!(
    pg_finfo_decoder_sql_sql_drop,
    decoder_sql_sql_drop,
    crate::capture::on_sql_drop
);
entry_point!(
    pg_finfo_decoder_sql_replica_identity,
    decoder_sql_replica_identity,
    crate::capture::on_replica_identity
);

/// Transaction events: what an event trigger left for a later one of the same statement is
/// forgotten when the (sub)transaction that ran it aborts.
pub fn install_abort_callbacks() {
    // SAFETY: called once per backend from _PG_init (utility_hook::install's guard); the
    // callbacks stay registered for the life of the backend.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT
        || event == pg_sys::XactEvent::XACT_EVENT_COMMIT
        || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
    {
        crate::capture::forget_pending();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        crate::capture::forget_pending();
    }
}
