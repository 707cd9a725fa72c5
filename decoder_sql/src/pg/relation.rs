//! Per-relation metadata the plugin needs for every change (quoted names, column list, output
//! functions, replica identity), built once per relation and dropped on relcache invalidation.

use super::compat;
use super::memcx::ChildContext;
use pgrx::pg_sys;
use sqlgen::TypeClass;
use sqlgen::statement::{Compare, FiresOnReplay, Firing};
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A relation handed to a callback by the reorder buffer (borrowed, never closed by us).
#[derive(Clone, Copy)]
pub struct RelView {
    raw: pg_sys::Relation,
}

impl RelView {
    /// # Safety
    /// `raw` is a relation opened by the reorder buffer for the current callback.
    pub(crate) unsafe fn from_raw(raw: pg_sys::Relation) -> Self {
        RelView { raw }
    }

    pub(crate) fn raw(&self) -> pg_sys::Relation {
        self.raw
    }

    fn relid(&self) -> pg_sys::Oid {
        // SAFETY: valid relation per `from_raw`.
        unsafe { (*self.raw).rd_id }
    }
}

/// How a value is turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastPath {
    Int2,
    Int4,
    Int8,
    Bool,
    /// text, varchar, bpchar: the output text is the varlena's bytes.
    Text,
    /// Call the type's output function.
    Output,
}

pub struct ColumnInfo {
    /// Quoted column name.
    pub name: Vec<u8>,
    pub class: TypeClass,
    /// How the row match compares the column (see [`compare_rule`]).
    pub compare: Compare,
    /// The type (or a type it contains) has no usable input function (`pg_node_tree` ...):
    /// its text cannot be read back, so values are written as NULL. Holds the type's name.
    pub unreadable: Option<String>,
    pub(crate) fast: FastPath,
    pub(crate) is_varlena: bool,
    /// Output function; an UnsafeCell because the function may cache state in fn_extra.
    pub(crate) output: Box<UnsafeCell<pg_sys::FmgrInfo>>,
}

/// Which columns identify a row for UPDATE and DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Primary key or REPLICA IDENTITY USING INDEX: indexes into `columns`.
    Key(Vec<usize>),
    /// REPLICA IDENTITY FULL: every stored column of the old row.
    Full,
    /// NOTHING, or DEFAULT without a primary key.
    Missing,
}

pub struct RelInfo {
    /// Schema-qualified, quoted name.
    pub name: Vec<u8>,
    /// One entry per attribute (attnum - 1), dropped ones included so indexes match attnums.
    pub columns: Vec<ColumnInfo>,
    /// Columns an INSERT lists: not dropped, not generated.
    pub insert_columns: Vec<usize>,
    /// Columns an UPDATE sets: as for INSERT, minus GENERATED ALWAYS identity columns, which
    /// an UPDATE may not assign.
    pub update_columns: Vec<usize>,
    /// `update_columns` plus the key columns: what an UPDATE reads from the new tuple when the
    /// key did not change.
    pub update_and_key_columns: Vec<usize>,
    /// How UPDATE and DELETE find the row; FULL compares `insert_columns`.
    pub identity: Identity,
    /// Has a GENERATED ALWAYS identity column: INSERT needs OVERRIDING SYSTEM VALUE.
    pub has_identity_always: bool,
    /// A materialized view: its rows are derived, the replayed CREATE/REFRESH recomputes them.
    pub is_materialized_view: bool,
    /// A partitioned table (holds no rows; TRUNCATE writes it without ONLY).
    pub is_partitioned: bool,
    /// Some column's type has no input function (see `ColumnInfo::unreadable`).
    pub has_unreadable: bool,
    /// User triggers and rules that fire even under `session_replication_role = replica`
    /// (ENABLE ALWAYS / ENABLE REPLICA): (kind, quoted name, mode).
    pub fires_on_replay: Vec<(Firing, Vec<u8>, FiresOnReplay)>,
}

impl RelInfo {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Relations invalidated since the cache last looked; filled by the relcache callback, which
/// may run at any catalog access, so it only records and never touches the cache itself.
static PENDING: Mutex<Pending> = Mutex::new(Pending {
    all: false,
    relids: Vec::new(),
});
static CALLBACK_REGISTERED: AtomicBool = AtomicBool::new(false);
/// Set with every recorded invalidation, so the per-change check is one atomic load.
static PENDING_ANY: AtomicBool = AtomicBool::new(false);

struct Pending {
    all: bool,
    relids: Vec<pg_sys::Oid>,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn relcache_invalidated(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if relid == pg_sys::InvalidOid {
        pending.all = true;
        pending.relids.clear();
    } else if !pending.all {
        pending.relids.push(relid);
    }
    PENDING_ANY.store(true, Ordering::Release);
}

pub struct RelationCache {
    entries: HashMap<pg_sys::Oid, Rc<RelInfo>>,
    /// The entry returned last: consecutive changes mostly touch one table, and this skips
    /// hashing its oid. Emptied with `entries` by every invalidation.
    last: Option<(pg_sys::Oid, Rc<RelInfo>)>,
    /// Holds output functions' FmgrInfo state (fn_extra) for the session's lifetime.
    fn_cxt: ChildContext,
}

impl RelationCache {
    pub(crate) fn new(fn_cxt: ChildContext) -> Self {
        // Relcache callbacks cannot be unregistered, so register once per backend.
        if !CALLBACK_REGISTERED.swap(true, Ordering::SeqCst) {
            // SAFETY: registering a static function that only touches a static mutex.
            unsafe {
                pg_sys::CacheRegisterRelcacheCallback(
                    Some(relcache_invalidated),
                    pg_sys::Datum::from(0),
                );
            }
        }
        // Invalidations recorded for an earlier session in this backend are irrelevant now.
        *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = Pending {
            all: false,
            relids: Vec::new(),
        };
        RelationCache {
            entries: HashMap::new(),
            last: None,
            fn_cxt,
        }
    }

    /// Metadata for `rel` as of the change being decoded.
    pub fn get(&mut self, rel: RelView) -> Rc<RelInfo> {
        self.apply_invalidations();
        let relid = rel.relid();
        if let Some((last, info)) = &self.last
            && *last == relid
        {
            return Rc::clone(info);
        }
        let info = match self.entries.get(&relid) {
            Some(info) => Rc::clone(info),
            None => {
                let info = Rc::new(build(rel, self.fn_cxt));
                self.entries.insert(relid, Rc::clone(&info));
                info
            }
        };
        self.last = Some((relid, Rc::clone(&info)));
        info
    }

    fn apply_invalidations(&mut self) {
        if !PENDING_ANY.swap(false, Ordering::Acquire) {
            return;
        }
        self.last = None;
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        if pending.all {
            self.entries.clear();
        } else {
            for relid in pending.relids.drain(..) {
                self.entries.remove(&relid);
            }
        }
        pending.all = false;
        pending.relids.clear();
    }
}

fn cstr_bytes<'a>(p: *const std::ffi::c_char) -> &'a [u8] {
    // SAFETY: callers pass NUL-terminated strings from the catalogs, alive for the call.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

fn build(rel: RelView, fn_cxt: ChildContext) -> RelInfo {
    // SAFETY: the relation is open and valid for this callback; catalog lookups run inside the
    // transaction the reorder buffer opened, under the historic snapshot of this change.
    unsafe {
        let raw = rel.raw();
        let form = &*(*raw).rd_rel;
        let schema = pg_sys::get_namespace_name(form.relnamespace);
        let mut name = Vec::new();
        sqlgen::push_qualified(
            &mut name,
            cstr_bytes(schema),
            cstr_bytes(form.relname.data.as_ptr()),
        );

        let attrs = compat::tuple_desc_attrs((*raw).rd_att);
        let natts = attrs.len();
        let mut columns = Vec::with_capacity(natts);
        let (mut insert_columns, mut update_columns) = (Vec::new(), Vec::new());
        let mut has_identity_always = false;
        for (i, attr) in attrs.iter().enumerate() {
            let dropped = attr.attisdropped;
            let generated = attr.attgenerated as u8 == pg_sys::ATTRIBUTE_GENERATED_STORED;
            let identity_always = attr.attidentity as u8 == pg_sys::ATTRIBUTE_IDENTITY_ALWAYS;
            let mut colname = Vec::new();
            sqlgen::push_ident(&mut colname, cstr_bytes(attr.attname.data.as_ptr()));
            columns.push(column_info(
                colname,
                attr.atttypid,
                attr.attcollation,
                dropped,
                fn_cxt,
            ));
            if dropped || generated {
                continue;
            }
            insert_columns.push(i);
            if identity_always {
                has_identity_always = true;
            } else {
                update_columns.push(i);
            }
        }

        let identity = match form.relreplident as u8 {
            pg_sys::REPLICA_IDENTITY_FULL => Identity::Full,
            pg_sys::REPLICA_IDENTITY_NOTHING => Identity::Missing,
            _ => identity_key(raw),
        };
        mark_indexed(raw, &mut columns);
        let mut update_and_key_columns = update_columns.clone();
        if let Identity::Key(key) = &identity {
            update_and_key_columns.extend(key);
            update_and_key_columns.sort_unstable();
            update_and_key_columns.dedup();
        }
        let has_unreadable = columns.iter().any(|c| c.unreadable.is_some());
        RelInfo {
            fires_on_replay: triggers_firing_on_replay((*raw).trigdesc)
                .into_iter()
                .chain(rules_firing_on_replay((*raw).rd_rules))
                .collect(),
            has_unreadable,
            name,
            columns,
            insert_columns,
            update_columns,
            update_and_key_columns,
            identity,
            has_identity_always,
            is_materialized_view: form.relkind as u8 == pg_sys::RELKIND_MATVIEW,
            is_partitioned: form.relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE,
        }
    }
}

/// The relation's user triggers enabled ALWAYS or REPLICA (internal ones, such as foreign-key
/// triggers, only fire on origin).
///
/// # Safety
/// `desc` is the open relation's trigger descriptor, or null.
unsafe fn triggers_firing_on_replay(
    desc: *const pg_sys::TriggerDesc,
) -> Vec<(Firing, Vec<u8>, FiresOnReplay)> {
    if desc.is_null() {
        return Vec::new();
    }
    // SAFETY: a relcache trigger descriptor holds numtriggers entries, each with a
    // NUL-terminated name, valid while the relation is open.
    unsafe {
        let count = usize::try_from((*desc).numtriggers).unwrap_or(0);
        std::slice::from_raw_parts((*desc).triggers, count)
            .iter()
            .filter(|t| !t.tgisinternal)
            .filter_map(|t| {
                let fires = fires_on_replay(t.tgenabled as u8)?;
                let mut name = Vec::new();
                sqlgen::push_ident(&mut name, cstr_bytes(t.tgname));
                Some((Firing::Trigger, name, fires))
            })
            .collect()
    }
}

/// `tgenabled` / `ev_enabled`: 'A' and 'R' fire under `session_replication_role = replica`.
fn fires_on_replay(enabled: u8) -> Option<FiresOnReplay> {
    match enabled {
        pg_sys::TRIGGER_FIRES_ALWAYS => Some(FiresOnReplay::Always),
        pg_sys::TRIGGER_FIRES_ON_REPLICA => Some(FiresOnReplay::Replica),
        _ => None,
    }
}

/// The relation's rules enabled ALWAYS or REPLICA, named from pg_rewrite (the relcache's
/// rules carry only their OID).
///
/// # Safety
/// `rules` is the open relation's rule lock, or null; called inside a transaction.
unsafe fn rules_firing_on_replay(
    rules: *const pg_sys::RuleLock,
) -> Vec<(Firing, Vec<u8>, FiresOnReplay)> {
    if rules.is_null() {
        return Vec::new();
    }
    // SAFETY: a relcache rule lock holds numLocks rule pointers, valid while the relation is
    // open; the names come from catalog lookups.
    unsafe {
        let count = usize::try_from((*rules).numLocks).unwrap_or(0);
        std::slice::from_raw_parts((*rules).rules, count)
            .iter()
            .filter_map(|&rule| {
                let fires = fires_on_replay((*rule).enabled as u8)?;
                let name = compat::rule_name((*rule).ruleId)?;
                let mut quoted = Vec::new();
                sqlgen::push_ident(&mut quoted, &name);
                Some((Firing::Rule, quoted, fires))
            })
            .collect()
    }
}

/// Sets `indexed` on the text-compared columns that an index refers to, so that a FULL row
/// match also writes `=` for them and the index stays usable.
///
/// # Safety
/// `raw` is an open relation; called under the decoding transaction.
unsafe fn mark_indexed(raw: pg_sys::Relation, columns: &mut [ColumnInfo]) {
    // SAFETY: per the function contract. The bitmap is allocated in the current (scratch)
    // context and only read here.
    let indexed = unsafe { column_indexes(compat::indexed_columns_bitmap(raw)) };
    for i in indexed {
        if let Some(Compare::Text { indexed, .. }) = columns.get_mut(i).map(|c| &mut c.compare) {
            *indexed = true;
        }
    }
}

/// The user columns (indexes into the tuple descriptor, attnum - 1) in a bitmap of attribute
/// numbers offset by `FirstLowInvalidHeapAttributeNumber`; system columns are left out.
///
/// # Safety
/// `bits` is a valid bitmap (or null, the empty set).
unsafe fn column_indexes(bits: *const pg_sys::Bitmapset) -> Vec<usize> {
    let mut columns = Vec::new();
    let mut member = -1;
    loop {
        // SAFETY: per the function contract.
        member = unsafe { pg_sys::bms_next_member(bits, member) };
        if member < 0 {
            break;
        }
        let attnum = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
        if let Ok(index) = usize::try_from(attnum - 1) {
            columns.push(index);
        }
    }
    columns
}

/// Key columns of the primary key (DEFAULT) or the chosen index (USING INDEX).
///
/// # Safety
/// `raw` is an open relation; called under the decoding transaction.
unsafe fn identity_key(raw: pg_sys::Relation) -> Identity {
    // SAFETY: per the function contract. The bitmap is allocated in the current (scratch)
    // context and only read here.
    let key = unsafe { column_indexes(compat::identity_key_bitmap(raw)) };
    if key.is_empty() {
        Identity::Missing
    } else {
        Identity::Key(key)
    }
}

fn column_info(
    name: Vec<u8>,
    typid: pg_sys::Oid,
    collation: pg_sys::Oid,
    dropped: bool,
    fn_cxt: ChildContext,
) -> ColumnInfo {
    // SAFETY: `fn_cxt.0` is a live context of the decoding session; FmgrInfo is zeroed and then
    // filled by fmgr_info_cxt. Catalog lookups run inside the decoding transaction.
    let output: Box<UnsafeCell<pg_sys::FmgrInfo>> =
        Box::new(UnsafeCell::new(unsafe { std::mem::zeroed() }));
    if dropped {
        // A dropped column's type may be gone; nothing is ever printed for it.
        return ColumnInfo {
            name,
            class: TypeClass::Quoted,
            compare: Compare::Text {
                has_equality: false,
                indexed: false,
                binary_collation: false,
            },
            unreadable: None,
            fast: FastPath::Output,
            is_varlena: false,
            output,
        };
    }
    // SAFETY: as above.
    unsafe {
        let base = pg_sys::getBaseType(typid);
        let (class, fast) = classify(base);
        let mut out_fn = pg_sys::InvalidOid;
        let mut is_varlena = false;
        pg_sys::getTypeOutputInfo(typid, &mut out_fn, &mut is_varlena);
        pg_sys::fmgr_info_cxt(out_fn, output.get(), fn_cxt.0);
        let tce = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as i32);
        // Composite values: `col = '(1,x)'` resolves to record = record and the literal cannot
        // be read as an anonymous record, so they are compared in text form too.
        let composite = pg_sys::get_typtype(base) as u8 == pg_sys::TYPTYPE_COMPOSITE;
        let has_equality = !(composite || tce.is_null() || (*tce).eq_opr == pg_sys::InvalidOid);
        let unreadable = has_no_input(typid, 0).then(|| {
            let name = pg_sys::format_type_be(typid);
            String::from_utf8_lossy(cstr_bytes(name)).into_owned()
        });
        ColumnInfo {
            name,
            class,
            compare: compare_rule(base, collation, has_equality),
            unreadable,
            fast,
            is_varlena,
            output,
        }
    }
}

fn classify(base: pg_sys::Oid) -> (TypeClass, FastPath) {
    match base {
        pg_sys::INT2OID => (TypeClass::Integer, FastPath::Int2),
        pg_sys::INT4OID => (TypeClass::Integer, FastPath::Int4),
        pg_sys::INT8OID => (TypeClass::Integer, FastPath::Int8),
        pg_sys::BOOLOID => (TypeClass::Bool, FastPath::Bool),
        pg_sys::FLOAT8OID | pg_sys::NUMERICOID => (TypeClass::Number, FastPath::Output),
        pg_sys::BITOID | pg_sys::VARBITOID => (TypeClass::Bit, FastPath::Output),
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => {
            (TypeClass::Quoted, FastPath::Text)
        }
        _ => (TypeClass::Quoted, FastPath::Output),
    }
}

/// Types whose equality operator is identity: two equal values have the same representation
/// (and the same text). Enums too. Text types only under a deterministic collation, checked
/// separately.
const EQUALITY_IS_IDENTITY: &[pg_sys::Oid] = &[
    pg_sys::BOOLOID,
    pg_sys::CHAROID,
    pg_sys::NAMEOID,
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::OIDOID,
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
    pg_sys::BYTEAOID,
    pg_sys::UUIDOID,
    pg_sys::DATEOID,
    pg_sys::TIMEOID,
    pg_sys::TIMESTAMPOID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::BITOID,
    pg_sys::VARBITOID,
    pg_sys::MACADDROID,
    pg_sys::MACADDR8OID,
    pg_sys::INETOID,
    pg_sys::CIDROID,
    // money: pg_type.oid 790 (named CASHOID before PostgreSQL 14, MONEYOID after).
    pg_sys::Oid::from_u32(790),
];

/// How a row match compares a column of (base) type `base` under `collation`.
///
/// The rule: `=` when the type is in [`EQUALITY_IS_IDENTITY`] or an enum, and its collation,
/// if any, is deterministic. Everything else (numeric, float4/float8, interval, jsonb,
/// bpchar, arrays, ranges, citext, hstore, geometric types, json, xml, composites, text under
/// a nondeterministic collation ...) is compared by REPLICA IDENTITY FULL on its text form,
/// which tells apart the values that `=` takes as equal; a unique key uses `=` where the type
/// has one, as its index admits one row per equality class.
///
/// # Safety
/// Called inside the decoding transaction (catalog lookups).
unsafe fn compare_rule(base: pg_sys::Oid, collation: pg_sys::Oid, has_equality: bool) -> Compare {
    // SAFETY: catalog lookups inside the decoding transaction, per the function contract.
    unsafe {
        let deterministic =
            collation == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(collation);
        let identity = EQUALITY_IS_IDENTITY.contains(&base) || pg_sys::type_is_enum(base);
        if identity && deterministic && has_equality {
            Compare::Equal
        } else {
            Compare::Text {
                has_equality,
                indexed: false, // set by mark_indexed
                binary_collation: !deterministic,
            }
        }
    }
}

/// Types whose input function rejects every value (the server writes them, nothing may read
/// them): `pg_node_tree` (stored expressions, e.g. `pg_class.relpartbound`), the extended
/// statistics types `pg_ndistinct`, `pg_dependencies`, `pg_mcv_list`, and the BRIN summaries
/// `pg_brin_bloom_summary`, `pg_brin_minmax_multi_summary` (PostgreSQL 14+; OIDs below 10000
/// are fixed, so on older servers these two simply never occur).
const NO_INPUT_TYPES: &[pg_sys::Oid] = &[
    pg_sys::Oid::from_u32(194),  // pg_node_tree
    pg_sys::Oid::from_u32(3361), // pg_ndistinct
    pg_sys::Oid::from_u32(3402), // pg_dependencies
    pg_sys::Oid::from_u32(5017), // pg_mcv_list
    pg_sys::Oid::from_u32(4600), // pg_brin_bloom_summary
    pg_sys::Oid::from_u32(4601), // pg_brin_minmax_multi_summary
];

/// A value of `typid` cannot be read back from its text: the type, or a type it contains
/// (domain base, array element, composite attribute, range subtype), is in [`NO_INPUT_TYPES`].
///
/// # Safety
/// Called inside a transaction (catalog lookups).
unsafe fn has_no_input(typid: pg_sys::Oid, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    if NO_INPUT_TYPES.contains(&typid) {
        return true;
    }
    // SAFETY: catalog lookups, per the function contract.
    unsafe {
        match pg_sys::get_typtype(typid) as u8 {
            pg_sys::TYPTYPE_DOMAIN => has_no_input(pg_sys::getBaseType(typid), depth + 1),
            pg_sys::TYPTYPE_RANGE => has_no_input(pg_sys::get_range_subtype(typid), depth + 1),
            pg_sys::TYPTYPE_COMPOSITE => attribute_types(typid)
                .unwrap_or_default()
                .into_iter()
                .any(|t| has_no_input(t, depth + 1)),
            pg_sys::TYPTYPE_BASE => {
                let element = pg_sys::get_element_type(typid);
                element != pg_sys::InvalidOid && has_no_input(element, depth + 1)
            }
            _ => false,
        }
    }
}

/// The types of the live attributes of composite type `typid`, None when it has no row type.
///
/// # Safety
/// Called inside a transaction (catalog lookups).
unsafe fn attribute_types(typid: pg_sys::Oid) -> Option<Vec<pg_sys::Oid>> {
    // SAFETY: the type cache hands out a reference-counted descriptor (or null with noError);
    // it is released once below, after the attribute types were copied out.
    unsafe {
        let tupdesc = pg_sys::lookup_rowtype_tupdesc_noerror(typid, -1, true);
        if tupdesc.is_null() {
            return None;
        }
        let types: Vec<pg_sys::Oid> = compat::tuple_desc_attrs(tupdesc)
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| a.atttypid)
            .collect();
        if (*tupdesc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(tupdesc);
        }
        Some(types)
    }
}
