//! Output-plugin entry points. Each `decode_*` function adapts raw pointers into safe views and
//! forwards to a `plugin::on_*` handler; errors become an ERROR here and nowhere else.

use super::ctx::Output;
use super::memcx::ChildContext;
use super::relation::{RelView, RelationCache};
use super::report;
use super::tuple::TupleRef;
use crate::plugin::{self, Change, ChangeKind, Message};
use crate::state::DecoderState;
use pgrx::{PgMemoryContexts, pg_guard, pg_sys};
use sqlgen::{Lsn, OutputFormat, TxnInfo};
use std::ffi::CStr;

#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn _PG_output_plugin_init(cb: *mut pg_sys::OutputPluginCallbacks) {
    // SAFETY: PostgreSQL hands us its callback table to fill for the duration of this call.
    let cb = unsafe { &mut *cb };
    cb.startup_cb = Some(decode_startup);
    cb.shutdown_cb = Some(decode_shutdown);
    cb.begin_cb = Some(decode_begin);
    cb.commit_cb = Some(decode_commit);
    cb.change_cb = Some(decode_change);
    cb.truncate_cb = Some(decode_truncate);
    cb.message_cb = Some(decode_message);
    // No filter_by_origin_cb: a backup wants every change, whatever its origin.
    // No stream_* callbacks: only committed transactions are decoded, in commit order.
}

/// # Safety
/// `ctx` is a decoding context whose private data was installed by `decode_startup`.
unsafe fn state<'a>(ctx: *mut pg_sys::LogicalDecodingContext) -> &'a mut DecoderState {
    // SAFETY: per the function contract; the state is a separate allocation, so holding it
    // alongside an `Output` for the same context aliases nothing.
    unsafe { &mut *(*ctx).output_plugin_private.cast::<DecoderState>() }
}

fn cstr_lossy(p: *const std::ffi::c_char) -> String {
    // SAFETY: callers pass NUL-terminated strings owned by PostgreSQL for the call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_startup(
    ctx: *mut pg_sys::LogicalDecodingContext,
    opt: *mut pg_sys::OutputPluginOptions,
    _is_init: bool,
) {
    // SAFETY: ctx and opt are valid for this call. output_plugin_options is a List of DefElem
    // whose args are String nodes or NULL (a bare option name).
    let pairs: Vec<(String, Option<String>)> = unsafe {
        let list = (*ctx).output_plugin_options;
        let len = if list.is_null() {
            0
        } else {
            usize::try_from((*list).length).unwrap_or(0)
        };
        (0..len)
            .map(|i| {
                let elem = (*(*list).elements.add(i))
                    .ptr_value
                    .cast::<pg_sys::DefElem>();
                let name = cstr_lossy((*elem).defname);
                let arg = (*elem).arg;
                let value = super::compat::string_node_value(arg).map(cstr_lossy);
                (name, value)
            })
            .collect()
    };
    let options = match plugin::on_startup(&pairs) {
        Ok(options) => options,
        Err(err) => report(err),
    };
    // SAFETY: valid for this call; the contexts are children of the decoding context, so they
    // and the state (dropped by a reset callback) live exactly as long as the session.
    unsafe {
        (*opt).output_type = match options.output_format {
            OutputFormat::Textual => pg_sys::OutputPluginOutputType::OUTPUT_PLUGIN_TEXTUAL_OUTPUT,
            OutputFormat::Binary => pg_sys::OutputPluginOutputType::OUTPUT_PLUGIN_BINARY_OUTPUT,
        };
        let parent = (*ctx).context;
        let relations =
            RelationCache::new(ChildContext::create(parent, c"decoder_sql relation cache"));
        let scratch = ChildContext::create(parent, c"decoder_sql change");
        let state = DecoderState::new(options, relations, scratch);
        let state = PgMemoryContexts::For(parent).leak_and_drop_on_delete(state);
        (*ctx).output_plugin_private = state.cast();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_shutdown(_ctx: *mut pg_sys::LogicalDecodingContext) {
    // The state and our contexts are freed with the decoding context.
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_begin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    // SAFETY: ctx and txn are valid for this callback; commit fields are set before replay.
    let (mut out, state, info) = unsafe {
        let info = TxnInfo {
            xid: (*txn).xid.into_inner(),
            commit_lsn: Lsn((*txn).final_lsn),
            end_lsn: Lsn((*txn).end_lsn),
            commit_time: super::compat::commit_time(txn),
        };
        (Output::from_raw(ctx), state(ctx), info)
    };
    plugin::on_begin(&mut out, state, info);
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_commit(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    _commit_lsn: pg_sys::XLogRecPtr,
) {
    // SAFETY: ctx is valid for this callback.
    let (mut out, state) = unsafe { (Output::from_raw(ctx), state(ctx)) };
    plugin::on_commit(&mut out, state);
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_change(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    relation: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: all pointers come from the reorder buffer and are valid for this callback; the
    // relation is borrowed, not closed by us. Only INSERT/UPDATE/DELETE reach change_cb.
    let (mut out, state, rel, change) = unsafe {
        let tp = (*change).data.tp;
        let kind = match (*change).action {
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_INSERT => ChangeKind::Insert,
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_UPDATE => ChangeKind::Update,
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_DELETE => ChangeKind::Delete,
            _ => return,
        };
        let change = Change {
            kind,
            old: TupleRef::from_change(tp.oldtuple),
            new: TupleRef::from_change(tp.newtuple),
            lsn: Lsn((*change).lsn),
        };
        (
            Output::from_raw(ctx),
            state(ctx),
            RelView::from_raw(relation),
            change,
        )
    };
    let scratch = state.scratch;
    if let Err(err) = scratch.run_and_reset(|| plugin::on_change(&mut out, state, rel, &change)) {
        report(err);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_truncate(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    nrelations: std::ffi::c_int,
    relations: *mut pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: `relations` holds `nrelations` open relations for this callback.
    let (mut out, state, rels, restart, cascade) = unsafe {
        let n = usize::try_from(nrelations).unwrap_or(0);
        let rels: Vec<RelView> = (0..n)
            .map(|i| RelView::from_raw(*relations.add(i)))
            .collect();
        let t = (*change).data.truncate;
        (
            Output::from_raw(ctx),
            state(ctx),
            rels,
            t.restart_seqs,
            t.cascade,
        )
    };
    let scratch = state.scratch;
    scratch.run_and_reset(|| plugin::on_truncate(&mut out, state, &rels, restart, cascade));
}

#[pg_guard]
unsafe extern "C-unwind" fn decode_message(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    message_lsn: pg_sys::XLogRecPtr,
    transactional: bool,
    prefix: *const std::ffi::c_char,
    message_size: pg_sys::Size,
    message: *const std::ffi::c_char,
) {
    // SAFETY: prefix is NUL-terminated and message holds message_size bytes, both valid for
    // this callback, as is txn when not null.
    let (mut out, state, msg) = unsafe {
        let content = if message_size == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(message.cast::<u8>(), message_size)
        };
        let msg = Message {
            transactional,
            // The reorder buffer hands a transactional message over with the top-level
            // transaction it belongs to (its changes replay as one); another one with the
            // transaction that wrote it, if it had an xid.
            xid: if !txn.is_null() {
                u32::from((*txn).xid)
            } else {
                0
            },
            prefix: CStr::from_ptr(prefix).to_bytes(),
            content,
            lsn: Lsn(message_lsn),
        };
        (Output::from_raw(ctx), state(ctx), msg)
    };
    plugin::on_message(&mut out, state, &msg);
}
