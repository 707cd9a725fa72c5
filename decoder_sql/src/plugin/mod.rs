//! What to emit for each decoding event. Safe code only: no `pg_sys`, no `unsafe`; values are
//! read through `pg::` views and all text is rendered by `sqlgen`.

mod change;
mod message;
mod triggers;
mod txn;

pub use change::{on_change, on_truncate};
pub use message::on_message;
pub use txn::{on_begin, on_commit};

use crate::error::Result;
use crate::pg::ctx::Output;
use crate::pg::tuple::TupleRef;
use crate::state::DecoderState;
use sqlgen::{Lsn, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn sql_verb(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
        }
    }
}

pub struct Change {
    pub kind: ChangeKind,
    pub old: Option<TupleRef>,
    pub new: Option<TupleRef>,
    pub lsn: Lsn,
}

pub struct Message<'a> {
    pub transactional: bool,
    /// The top-level transaction of a transactional message (0 otherwise).
    pub xid: u32,
    pub prefix: &'a [u8],
    pub content: &'a [u8],
    pub lsn: Lsn,
}

/// Parses the plugin options given to the decoding session.
pub fn on_startup(pairs: &[(String, Option<String>)]) -> Result<Options> {
    Ok(Options::parse(
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
    )?)
}

/// Writes `state.buf` as one message, opening the transaction first when needed.
fn emit(out: &mut Output, state: &mut DecoderState) {
    txn::ensure_begin(out, state);
    out.write(&state.buf);
    state.txn.wrote_anything = true;
}
