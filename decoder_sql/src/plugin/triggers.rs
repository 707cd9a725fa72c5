//! Triggers and rules that would fire on replay. Replay runs with
//! `session_replication_role = replica`, which keeps ordinary triggers and rules quiet, but
//! one enabled ALWAYS or REPLICA still fires:
//! as the replaying role (a superuser, for a restore), and a second time for effects the
//! stream already holds as rows. So before the transaction's first change to such a table the
//! stream switches the table's firing triggers off, and switches them back on, as they were,
//! before the transaction commits and before any DDL of the transaction (which may change
//! them). The switches are part of the replayed transaction: if it fails, they roll back too.

use super::{Output, emit};
use crate::pg::relation::RelInfo;
use crate::state::DecoderState;
use sqlgen::statement::{render_disable, render_enable};

/// Switches off `info`'s firing triggers and rules, unless this transaction already did.
pub fn switch_off(out: &mut Output, state: &mut DecoderState, info: &RelInfo) {
    if info.fires_on_replay.is_empty()
        || state
            .txn
            .triggers_off
            .iter()
            .any(|(table, _, _, _)| *table == info.name)
    {
        return;
    }
    for (firing, name, fires) in &info.fires_on_replay {
        state.buf.clear();
        render_disable(&mut state.buf, &info.name, *firing, name);
        emit(out, state);
        state
            .txn
            .triggers_off
            .push((info.name.clone(), *firing, name.clone(), *fires));
    }
    state.buf.clear();
}

/// Switches everything this transaction switched off back on.
pub fn switch_back_on(out: &mut Output, state: &mut DecoderState) {
    for (table, firing, name, fires) in std::mem::take(&mut state.txn.triggers_off) {
        state.buf.clear();
        render_enable(&mut state.buf, &table, firing, &name, fires);
        emit(out, state);
    }
    state.buf.clear();
}

/// The statements that switch everything back on, one per line, each followed by a line
/// break, for the commit to send in one message with its COMMIT line: everything the commit
/// callback sends carries the commit's LSN, and `pg_recvlogical --endpos` at exactly that LSN
/// stops after the first such message, which must then be the complete end of the
/// transaction.
pub fn take_switch_back_on_lines(state: &mut DecoderState) -> Vec<u8> {
    let mut lines = Vec::new();
    for (table, firing, name, fires) in std::mem::take(&mut state.txn.triggers_off) {
        render_enable(&mut lines, &table, firing, &name, fires);
        lines.push(b'\n');
    }
    lines
}
