//! The decoding context as seen by the plugin: where output goes.

use super::compat;
use pgrx::pg_sys;

/// PostgreSQL's functions without pgrx's per-call error guard, called together under one
/// guard in [`Output::write`].
mod unguarded {
    use pgrx::pg_sys;

    unsafe extern "C-unwind" {
        #[link_name = "OutputPluginPrepareWrite"]
        pub fn output_plugin_prepare_write(ctx: *mut pg_sys::LogicalDecodingContext, last: bool);
        #[link_name = "OutputPluginWrite"]
        pub fn output_plugin_write(ctx: *mut pg_sys::LogicalDecodingContext, last: bool);
        #[link_name = "appendBinaryStringInfo"]
        pub fn append_binary_string_info(
            str_: pg_sys::StringInfo,
            data: *const std::ffi::c_void,
            datalen: std::ffi::c_int,
        );
    }
}

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
        let ctx = self.raw;
        // SAFETY: `raw` is the live decoding context of this callback; PrepareWrite resets
        // ctx->out, we append our bytes (keeping the StringInfo invariants: len < maxlen and a
        // trailing NUL), Write hands them to the walsender or SQL function.
        // Appending in Rust when the buffer has room saves a call per message, and the calls
        // share one error guard: the closure holds only raw pointers and plain values, so an
        // ERROR longjmping out of it skips no destructor.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                unguarded::output_plugin_prepare_write(ctx, true);
                let out = &mut *(*ctx).out;
                if out.maxlen - out.len > len {
                    let dst = out.data.add(out.len as usize).cast::<u8>();
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
                    out.len += len;
                    *out.data.add(out.len as usize) = 0;
                } else {
                    unguarded::append_binary_string_info(out, bytes.as_ptr().cast(), len);
                }
                unguarded::output_plugin_write(ctx, true);
            });
        }
    }

    /// Reports progress when a transaction produced no output.
    pub fn update_progress(&mut self, skipped_xact: bool) {
        // SAFETY: `raw` is the live decoding context of this callback.
        unsafe { compat::update_progress(self.raw, skipped_xact) }
    }
}
