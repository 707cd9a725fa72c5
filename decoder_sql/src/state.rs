//! Per-decoding-session state, owned by the decoding context's memory (dropped with it).

use crate::pg::memcx::ChildContext;
use crate::pg::relation::RelationCache;
use crate::pg::transmission::PinnedOutputSettings;
use crate::pg::tuple::DecodedRow;
use sqlgen::statement::{FiresOnReplay, Firing};
use sqlgen::{Options, TxnInfo};

pub struct DecoderState {
    pub options: Options,
    pub relations: RelationCache,
    /// Statement text being built; reused so its capacity survives between changes.
    pub buf: Vec<u8>,
    pub old_row: DecodedRow,
    pub new_row: DecodedRow,
    pub txn: TxnState,
    /// Reset after every change: output-function results and detoasted values live here.
    pub scratch: ChildContext,
}

/// What has been written for the transaction being decoded.
#[derive(Default)]
pub struct TxnState {
    pub info: Option<TxnInfo>,
    pub begin_written: bool,
    pub wrote_anything: bool,
    /// Output-affecting settings pinned for the duration of the transaction.
    pub pinned: Option<PinnedOutputSettings>,
    /// Triggers and rules the stream switched off in this transaction: (table, kind, name,
    /// how it fires), names quoted (see `plugin::triggers`).
    pub triggers_off: Vec<(Vec<u8>, Firing, Vec<u8>, FiresOnReplay)>,
}

impl DecoderState {
    pub fn new(options: Options, relations: RelationCache, scratch: ChildContext) -> Self {
        Self {
            options,
            relations,
            buf: Vec::with_capacity(1024),
            old_row: DecodedRow::default(),
            new_row: DecodedRow::default(),
            txn: TxnState::default(),
            scratch,
        }
    }
}
