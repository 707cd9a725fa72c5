//! The decoding context as seen by the plugin: where output goes.

use super::compat;
use pgrx::pg_sys;

/// Writes complete messages (one statement each) to the consumer.
pub struct Output {
    raw: *mut pg_sys::LogicalDecodingContext,
}

impl Output {
    /// # Safety
    /// `raw` is the decoding context passed to the current callback.
    pub(crate) unsafe fn from_raw(raw: *mut pg_sys::LogicalDecodingContext) -> Self {
        Output { raw }
    }

    /// Sends `bytes` as one message (pg_recvlogical adds the newline).
    pub fn write(&mut self, bytes: &[u8]) {
        let len = i32::try_from(bytes.len()).expect("invariant: a statement is below 1 GB");
        // SAFETY: `raw` is the live decoding context of this callback; PrepareWrite resets
        // ctx->out, we append our bytes, Write hands them to the walsender or SQL function.
        unsafe {
            pg_sys::OutputPluginPrepareWrite(self.raw, true);
            pg_sys::appendBinaryStringInfo((*self.raw).out, bytes.as_ptr().cast(), len);
            pg_sys::OutputPluginWrite(self.raw, true);
        }
    }

    /// Reports progress when a transaction produced no output.
    pub fn update_progress(&mut self, skipped_xact: bool) {
        // SAFETY: `raw` is the live decoding context of this callback.
        unsafe { compat::update_progress(self.raw, skipped_xact) }
    }
}
