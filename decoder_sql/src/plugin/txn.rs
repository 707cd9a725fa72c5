//! BEGIN / COMMIT lines and per-transaction setup.

use super::Output;
use crate::pg::transmission::PinnedOutputSettings;
use crate::state::{DecoderState, TxnState};
use sqlgen::{TxnInfo, txn};

pub fn on_begin(out: &mut Output, state: &mut DecoderState, info: TxnInfo) {
    // A leftover pin belongs to a replay that errored out; its abort already restored settings.
    state.txn = TxnState {
        info: Some(info),
        pinned: Some(PinnedOutputSettings::pin()),
        ..TxnState::default()
    };
    if state.options.include_transaction && !state.options.skip_empty_xacts {
        write_begin(out, state);
    }
}

pub fn on_commit(out: &mut Output, state: &mut DecoderState) {
    // One message: the triggers switched back on, then COMMIT (see triggers.rs).
    let switched_back = super::triggers::take_switch_back_on_lines(state);
    if state.txn.begin_written {
        let info = annotation(state);
        state.buf.clear();
        state.buf.extend_from_slice(&switched_back);
        txn::render_commit(&mut state.buf, info.as_ref());
        out.write(&state.buf);
        state.txn.wrote_anything = true;
    } else if !switched_back.is_empty() {
        state.buf.clear();
        state.buf.extend_from_slice(switched_back.trim_ascii_end());
        super::emit(out, state);
    }
    if !state.txn.wrote_anything {
        // Nothing reached the consumer: keep the walsender's keepalive logic informed.
        out.update_progress(true);
    }
    if let Some(pinned) = state.txn.pinned.take() {
        pinned.release();
    }
}

/// Writes the deferred `BEGIN;` before the transaction's first output.
pub(super) fn ensure_begin(out: &mut Output, state: &mut DecoderState) {
    if state.options.include_transaction && !state.txn.begin_written {
        write_begin(out, state);
    }
}

fn write_begin(out: &mut Output, state: &mut DecoderState) {
    let info = annotation(state);
    // Rendered into its own buffer: `state.buf` may hold the statement waiting to follow.
    let mut line = Vec::with_capacity(128);
    txn::render_begin(&mut line, info.as_ref());
    out.write(&line);
    state.txn.begin_written = true;
    state.txn.wrote_anything = true;
}

fn annotation(state: &DecoderState) -> Option<TxnInfo> {
    if state.options.include_annotations {
        state.txn.info
    } else {
        None
    }
}
