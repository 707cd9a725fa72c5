//! Differences between PostgreSQL major versions, kept in one place.

use pgrx::pg_sys;

/// The heap tuple of a change's old/new tuple field.
/// PostgreSQL 13–16 store a `ReorderBufferTupleBuf *`; 17 changed it to a plain `HeapTuple`.
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
pub type ChangeTuple = *mut pg_sys::ReorderBufferTupleBuf;
#[cfg(any(feature = "pg17", feature = "pg18"))]
pub type ChangeTuple = pg_sys::HeapTuple;

/// # Safety
/// `t` is null or points to a tuple owned by the reorder buffer for the current callback.
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
pub unsafe fn heap_tuple(t: ChangeTuple) -> pg_sys::HeapTuple {
    if t.is_null() {
        std::ptr::null_mut()
    } else {
        // SAFETY: non-null and valid per the caller; we only take the embedded field's address.
        unsafe { &raw mut (*t).tuple }
    }
}

/// # Safety
/// `t` is null or a valid heap tuple for the current callback.
#[cfg(any(feature = "pg17", feature = "pg18"))]
pub unsafe fn heap_tuple(t: ChangeTuple) -> pg_sys::HeapTuple {
    t
}

/// Commit timestamp of a transaction being replayed.
/// PostgreSQL 15 moved `commit_time` into the `xact_time` union.
///
/// # Safety
/// `txn` is valid for the current callback.
pub unsafe fn commit_time(txn: *const pg_sys::ReorderBufferTXN) -> i64 {
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    {
        // SAFETY: valid per the caller.
        unsafe { (*txn).commit_time }
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    {
        // SAFETY: valid per the caller; for a committed (non-prepared) transaction the union
        // holds the commit time.
        unsafe { (*txn).xact_time.commit_time }
    }
}

/// Tells the walsender decoding is progressing although nothing was written, so that
/// `wal_sender_timeout` does not fire during long filtered stretches.
///
/// # Safety
/// `ctx` is the decoding context of the current callback.
pub unsafe fn update_progress(ctx: *mut pg_sys::LogicalDecodingContext, skipped_xact: bool) {
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    {
        let _ = skipped_xact;
        // SAFETY: valid per the caller.
        unsafe { pg_sys::OutputPluginUpdateProgress(ctx) }
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    {
        // SAFETY: valid per the caller.
        unsafe { pg_sys::OutputPluginUpdateProgress(ctx, skipped_xact) }
    }
}
