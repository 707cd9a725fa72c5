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

/// The attribute array of a tuple descriptor, one entry per column (dropped ones included).
/// PostgreSQL 13–17 keep `FormData_pg_attribute attrs[]` at the end of `TupleDescData`; 18 put
/// `natts` `CompactAttribute`s there first and the full attributes right after them.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor that outlives the returned slice.
pub unsafe fn tuple_desc_attrs<'a>(
    tupdesc: pg_sys::TupleDesc,
) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: valid per the caller.
    let natts = usize::try_from(unsafe { (*tupdesc).natts }).unwrap_or(0);
    #[cfg(not(feature = "pg18"))]
    {
        // SAFETY: the flexible array holds `natts` attributes.
        unsafe { (*tupdesc).attrs.as_slice(natts) }
    }
    #[cfg(feature = "pg18")]
    {
        // SAFETY: PG18's TupleDescAttr() reads the attributes at `&compact_attrs[natts]`
        // (tupdesc.h); they are `natts` contiguous FormData_pg_attribute.
        unsafe {
            let first = (*tupdesc)
                .compact_attrs
                .as_ptr()
                .add(natts)
                .cast::<pg_sys::FormData_pg_attribute>();
            std::slice::from_raw_parts(first, natts)
        }
    }
}

/// The C string of a `String` value node (an option's value), or None for another node type.
/// PostgreSQL 13–14 have the generic `Value` node (`val.str_`); 15 split it into `String`
/// (`sval`).
///
/// # Safety
/// `node` is null or a valid parse node.
pub unsafe fn string_node_value(node: *mut pg_sys::Node) -> Option<*const std::ffi::c_char> {
    // SAFETY: valid per the caller; the tag says which struct it is.
    if node.is_null() || unsafe { (*node).type_ } != pg_sys::NodeTag::T_String {
        return None;
    }
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    {
        // SAFETY: a T_String node is a `Value` whose union holds `str_`.
        Some(unsafe { (*node.cast::<pg_sys::Value>()).val.str_ })
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    {
        // SAFETY: a T_String node is a `String`.
        Some(unsafe { (*node.cast::<pg_sys::String>()).sval })
    }
}

/// Columns of the replica identity key (primary key or `USING INDEX`), as a bitmap offset by
/// `FirstLowInvalidHeapAttributeNumber`; empty when there is none.
/// PostgreSQL 14 added `RelationGetIdentityKeyBitmap`; 13's pgoutput asks
/// `RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY)`, which is equivalent.
///
/// # Safety
/// `rel` is an open relation; called inside the decoding transaction.
pub unsafe fn identity_key_bitmap(rel: pg_sys::Relation) -> *mut pg_sys::Bitmapset {
    #[cfg(feature = "pg13")]
    {
        // SAFETY: valid per the caller.
        unsafe {
            pg_sys::RelationGetIndexAttrBitmap(
                rel,
                pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_IDENTITY_KEY,
            )
        }
    }
    #[cfg(not(feature = "pg13"))]
    {
        // SAFETY: valid per the caller.
        unsafe { pg_sys::RelationGetIdentityKeyBitmap(rel) }
    }
}

/// Columns that some index (other than a summarizing one such as BRIN) refers to, key or
/// expression, as a bitmap offset by `FirstLowInvalidHeapAttributeNumber`. PostgreSQL 16
/// renamed `INDEX_ATTR_BITMAP_ALL` to `INDEX_ATTR_BITMAP_HOT_BLOCKING` (and split off the
/// summarizing indexes).
///
/// # Safety
/// `rel` is an open relation; called inside the decoding transaction.
pub unsafe fn indexed_columns_bitmap(rel: pg_sys::Relation) -> *mut pg_sys::Bitmapset {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    let kind = pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_ALL;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    let kind = pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_HOT_BLOCKING;
    // SAFETY: valid per the caller; the bitmap is a copy in the current memory context.
    unsafe { pg_sys::RelationGetIndexAttrBitmap(rel, kind) }
}

/// pg_rewrite (catalog/pg_rewrite.h), its OID index, and the start of its rows: fixed OIDs
/// and a layout all majors share, not among pgrx's bindings.
const REWRITE_RELATION_ID: u32 = 2618;
const REWRITE_OID_INDEX_ID: u32 = 2692;
#[repr(C)]
struct RewriteHead {
    oid: pg_sys::Oid,
    rulename: pg_sys::NameData,
}

/// The name of the rule with OID `rule`, from pg_rewrite.
///
/// # Safety
/// Called inside a transaction (catalog access, under the decoding's historic snapshot).
pub unsafe fn rule_name(rule: pg_sys::Oid) -> Option<Vec<u8>> {
    // SAFETY: an index scan of pg_rewrite by OID under AccessShareLock, closed before
    // returning; the tuple's leading fields are read through their fixed layout.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::Oid::from_u32(REWRITE_RELATION_ID),
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            1, // Anum_pg_rewrite_oid
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from_u32(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(rule),
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::Oid::from_u32(REWRITE_OID_INDEX_ID),
            true,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let name = (!tuple.is_null()).then(|| {
            let head = &*pg_sys::GETSTRUCT(tuple).cast::<RewriteHead>();
            std::ffi::CStr::from_ptr(head.rulename.data.as_ptr())
                .to_bytes()
                .to_vec()
        });
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        name
    }
}

// replication/message.h is not among pgrx's bindings. PostgreSQL 17 added `flush`.
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
unsafe extern "C-unwind" {
    #[link_name = "LogLogicalMessage"]
    fn log_logical_message_raw(
        prefix: *const std::ffi::c_char,
        message: *const std::ffi::c_char,
        size: usize,
        transactional: bool,
    ) -> pg_sys::XLogRecPtr;
}
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
unsafe extern "C-unwind" {
    #[link_name = "LogLogicalMessage"]
    fn log_logical_message_raw(
        prefix: *const std::ffi::c_char,
        message: *const std::ffi::c_char,
        size: usize,
        transactional: bool,
        flush: bool,
    ) -> pg_sys::XLogRecPtr;
}

/// `LogLogicalMessage(prefix, message, size, transactional)`: a transactional message is
/// decoded in order with the transaction's changes, at its commit; another one at once.
///
/// # Safety
/// Called inside a transaction that may write.
pub unsafe fn log_logical_message(prefix: &std::ffi::CStr, message: &[u8], transactional: bool) {
    // SAFETY: both buffers are valid for the call, which copies them into a WAL record; an
    // ERROR raised inside becomes a Rust panic at the guarded boundary.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
            log_logical_message_raw(
                prefix.as_ptr(),
                message.as_ptr().cast(),
                message.len(),
                transactional,
            );
            #[cfg(not(any(
                feature = "pg13",
                feature = "pg14",
                feature = "pg15",
                feature = "pg16"
            )))]
            log_logical_message_raw(
                prefix.as_ptr(),
                message.as_ptr().cast(),
                message.len(),
                transactional,
                false,
            );
        })
    };
}

// standard_ProcessUtility without pgrx's FFI guard: a statement's ERROR must leave by
// PostgreSQL's longjmp unchanged (the guard would turn it into a Rust panic and back, adding
// a backtrace to the client's error). PostgreSQL 14 added the `readOnlyTree` argument.
#[cfg(feature = "pg13")]
unsafe extern "C" {
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility_unguarded(
        pstmt: *mut pg_sys::PlannedStmt,
        query: *const std::ffi::c_char,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}
#[cfg(not(feature = "pg13"))]
unsafe extern "C" {
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility_unguarded(
        pstmt: *mut pg_sys::PlannedStmt,
        query: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// The `ProcessUtility_hook` entry point (PostgreSQL 13: no `readOnlyTree`).
///
/// # Safety
/// Called by PostgreSQL with valid arguments for one utility statement.
#[cfg(feature = "pg13")]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn process_utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    // SAFETY: the arguments are passed on unchanged to the next hook or the standard
    // implementation, as PostgreSQL's hook contract requires; no value with a destructor is
    // alive across the call (it may longjmp).
    unsafe {
        super::utility_hook::around(pstmt, query, top_level, |previous| {
            match previous.flatten() {
                Some(next) => next(pstmt, query, context, params, query_env, dest, qc),
                None => standard_process_utility_unguarded(
                    pstmt, query, context, params, query_env, dest, qc,
                ),
            }
        })
    }
}

/// The `ProcessUtility_hook` entry point (PostgreSQL 14+).
///
/// # Safety
/// Called by PostgreSQL with valid arguments for one utility statement.
#[cfg(not(feature = "pg13"))]
#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn process_utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    // SAFETY: the arguments are passed on unchanged to the next hook or the standard
    // implementation, as PostgreSQL's hook contract requires; no value with a destructor is
    // alive across the call (it may longjmp).
    unsafe {
        super::utility_hook::around(pstmt, query, top_level, |previous| {
            match previous.flatten() {
                Some(next) => next(
                    pstmt,
                    query,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
                None => standard_process_utility_unguarded(
                    pstmt,
                    query,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
            }
        })
    }
}

/// Whether an `ALTER TABLE … DETACH PARTITION` command is CONCURRENTLY (PostgreSQL 14 added
/// the form and `PartitionCmd.concurrent`).
///
/// # Safety
/// `cmd` is a valid AT_DetachPartition command, whose `def` is a PartitionCmd.
pub unsafe fn detach_concurrently(cmd: *mut pg_sys::AlterTableCmd) -> bool {
    #[cfg(feature = "pg13")]
    {
        let _ = cmd;
        false
    }
    #[cfg(not(feature = "pg13"))]
    {
        // SAFETY: per the function contract.
        unsafe {
            let def = (*cmd).def.cast::<pg_sys::PartitionCmd>();
            !def.is_null() && (*def).concurrent
        }
    }
}

/// Whether a CREATE TABLE AS creates a materialized view. PostgreSQL 13 calls the field
/// `relkind`; 14 renamed it `objtype`.
///
/// # Safety
/// `ctas` is a valid CreateTableAsStmt.
pub unsafe fn creates_materialized_view(ctas: *const pg_sys::CreateTableAsStmt) -> bool {
    #[cfg(feature = "pg13")]
    // SAFETY: valid per the caller.
    let kind = unsafe { (*ctas).relkind };
    #[cfg(not(feature = "pg13"))]
    // SAFETY: valid per the caller.
    let kind = unsafe { (*ctas).objtype };
    kind == pg_sys::ObjectType::OBJECT_MATVIEW
}
