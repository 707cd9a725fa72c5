//! Turns a decoded heap tuple into per-column text cells.

use super::compat::{self, ChangeTuple};
use super::relation::{FastPath, RelInfo, RelView};
use pgrx::pg_sys;
use sqlgen::Cell;
use std::ffi::CStr;

/// Where a cell's text lives.
#[derive(Clone, Copy)]
enum CellSrc {
    Null,
    UnchangedToast,
    /// Range in `arena` (text we formatted ourselves).
    Arena(usize, usize),
    /// Bytes palloc'd in the scratch context (output-function results, detoasted text): valid
    /// until the scratch context is reset at the end of the change.
    Scratch(*const u8, usize),
}

/// A tuple's columns as text. Buffers are reused from change to change.
#[derive(Default)]
pub struct DecodedRow {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    cells: Vec<Option<CellSrc>>,
    arena: Vec<u8>,
    /// Loaded columns whose value was replaced by NULL because their type cannot be read back
    /// (see `ColumnInfo::unreadable`).
    replaced: Vec<usize>,
    /// Columns whose text comes from their output function: (column, function, value). All
    /// of a row's calls run under one error guard (see [`output_all`]).
    pending: Vec<(usize, *mut pg_sys::FmgrInfo, pg_sys::Datum)>,
    /// The C strings the pending calls returned, in the same order.
    results: Vec<*mut std::ffi::c_char>,
}

/// PostgreSQL's functions without pgrx's per-call error guard, for loops that run under one
/// guard of their own ([`pg_sys::ffi::pg_guard_ffi_boundary`]). Only plain old frames
/// (nothing to drop) may be live between such a call and its guard.
mod unguarded {
    use pgrx::pg_sys;

    unsafe extern "C-unwind" {
        #[link_name = "OutputFunctionCall"]
        pub fn output_function_call(
            flinfo: *mut pg_sys::FmgrInfo,
            val: pg_sys::Datum,
        ) -> *mut std::ffi::c_char;
    }
}

/// Calls every pending output function under one error guard instead of one per value (the
/// guard's sigsetjmp and bookkeeping cost about as much as formatting a small value). An
/// ERROR in any of them reaches the guard exactly as it would with a guard per call.
///
/// # Safety
/// Each entry is an initialised output function and a non-null value of its type; called on
/// PostgreSQL's thread.
unsafe fn output_all(
    pending: &[(usize, *mut pg_sys::FmgrInfo, pg_sys::Datum)],
    results: &mut Vec<*mut std::ffi::c_char>,
) {
    results.clear();
    results.resize(pending.len(), std::ptr::null_mut());
    let out = results.as_mut_ptr();
    // SAFETY: per the function contract; the closure holds only references and raw pointers
    // (no destructors are skipped when an ERROR longjmps out of it), and writes within
    // `results`, which was sized to `pending` above.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            for (k, &(_, flinfo, value)) in pending.iter().enumerate() {
                *out.add(k) = unguarded::output_function_call(flinfo, value);
            }
        });
    }
}

/// A change's old or new tuple.
#[derive(Clone, Copy)]
pub struct TupleRef {
    raw: pg_sys::HeapTuple,
}

impl TupleRef {
    /// # Safety
    /// `t` is a change tuple of the current callback (may be null).
    pub(crate) unsafe fn from_change(t: ChangeTuple) -> Option<Self> {
        // SAFETY: per the caller.
        let raw = unsafe { compat::heap_tuple(t) };
        (!raw.is_null()).then_some(TupleRef { raw })
    }
}

impl DecodedRow {
    /// Deforms `tuple` and prepares text for the columns listed in `wanted`.
    /// Must run inside the per-change scratch context (see `memcx`).
    pub fn load(&mut self, info: &RelInfo, rel: RelView, tuple: TupleRef, wanted: &[usize]) {
        // SAFETY: the relation and tuple are valid for this callback; the tuple was formed with
        // this relation's descriptor (the reorder buffer guarantees it matches the change).
        unsafe {
            let tupdesc = (*rel.raw()).rd_att;
            let natts = usize::try_from((*tupdesc).natts).unwrap_or(0);
            self.values.clear();
            self.values.resize(natts, pg_sys::Datum::from(0));
            self.nulls.clear();
            self.nulls.resize(natts, true);
            pg_sys::heap_deform_tuple(
                tuple.raw,
                tupdesc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            // Columns added after the tuple was written (ALTER TABLE ADD COLUMN ... DEFAULT
            // without rewrite) are absent from it; heap_deform_tuple reports them NULL, but
            // their value is the stored "missing" default.
            let stored =
                usize::from((*(*tuple.raw).t_data).t_infomask2 & pg_sys::HEAP_NATTS_MASK as u16);
            for i in stored..natts {
                let attnum = i32::try_from(i + 1).expect("invariant: attnum fits i32");
                let mut isnull = true;
                self.values[i] = pg_sys::getmissingattr(tupdesc, attnum, &mut isnull);
                self.nulls[i] = isnull;
            }
        }
        self.cells.clear();
        self.cells.resize(self.values.len(), None);
        self.arena.clear();
        self.replaced.clear();
        self.pending.clear();
        for &i in wanted {
            if let Some(src) = self.text_of(info, i) {
                self.cells[i] = Some(src);
            }
        }
        if self.pending.is_empty() {
            return;
        }
        // SAFETY: every pending entry is a column's output function and its non-null value
        // (see `text_of`); the returned strings live in the scratch context until the change
        // ends.
        unsafe {
            output_all(&self.pending, &mut self.results);
            for (&(i, _, _), &text) in self.pending.iter().zip(&self.results) {
                let bytes = CStr::from_ptr(text).to_bytes();
                self.cells[i] = Some(CellSrc::Scratch(bytes.as_ptr(), bytes.len()));
            }
        }
    }

    /// The cell of column `i`, which must have been listed in `wanted`.
    pub fn cell(&self, i: usize) -> Cell<'_> {
        match self.cells[i].expect("invariant: cell requested was loaded") {
            CellSrc::Null => Cell::Null,
            CellSrc::UnchangedToast => Cell::UnchangedToast,
            CellSrc::Arena(start, len) => Cell::Text(&self.arena[start..start + len]),
            CellSrc::Scratch(ptr, len) => {
                // SAFETY: scratch memory outlives every use of the row within the change callback.
                Cell::Text(unsafe { std::slice::from_raw_parts(ptr, len) })
            }
        }
    }

    /// Columns of the last [`load`](Self::load) whose value was written as NULL because its
    /// type has no input function.
    pub fn replaced(&self) -> &[usize] {
        &self.replaced
    }

    /// The cell of column `i`, or None when its output function is to be called: the column
    /// is then added to `pending`.
    fn text_of(&mut self, info: &RelInfo, i: usize) -> Option<CellSrc> {
        if self.nulls[i] {
            return Some(CellSrc::Null);
        }
        let col = &info.columns[i];
        let datum = self.values[i];
        if col.unreadable.is_some() {
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            // SAFETY: a non-null varlena datum of this column's type; only the header is read.
            let unchanged_toast = col.is_varlena && unsafe { is_external_ondisk(ptr) };
            if unchanged_toast {
                return Some(CellSrc::UnchangedToast);
            }
            self.replaced.push(i);
            return Some(CellSrc::Null);
        }
        let start = self.arena.len();
        let arena = |s: &mut Self, text: &str| {
            s.arena.extend_from_slice(text.as_bytes());
            Some(CellSrc::Arena(start, text.len()))
        };
        // On 64-bit platforms these types are passed by value in the Datum.
        match col.fast {
            FastPath::Int2 => return arena(self, itoa::Buffer::new().format(datum.value() as i16)),
            FastPath::Int4 => return arena(self, itoa::Buffer::new().format(datum.value() as i32)),
            FastPath::Int8 => return arena(self, itoa::Buffer::new().format(datum.value() as i64)),
            FastPath::Bool => return arena(self, if datum.value() != 0 { "t" } else { "f" }),
            FastPath::Text | FastPath::Output => {}
        }
        let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        // SAFETY: non-null varlena datums of this column's type; the TOAST pointer check only
        // reads the header. Unchanged TOASTed values are on-disk pointers whose data is not in
        // the WAL: report them as such and never detoast them.
        unsafe {
            if col.is_varlena && is_external_ondisk(ptr) {
                return Some(CellSrc::UnchangedToast);
            }
            if col.fast == FastPath::Text {
                // Plain (uncompressed, inline) values are read in place; only compressed or
                // reassembled-TOAST values need the detoast call.
                let plain =
                    !pgrx::varlena::varatt_is_4b_c(ptr) && !pgrx::varlena::varatt_is_1b_e(ptr);
                let detoasted = if plain {
                    ptr
                } else {
                    pg_sys::pg_detoast_datum_packed(ptr)
                };
                let data = pgrx::varlena::vardata_any(detoasted).cast::<u8>();
                return Some(CellSrc::Scratch(
                    data,
                    pgrx::varlena::varsize_any_exhdr(detoasted),
                ));
            }
        }
        self.pending.push((i, col.output.get(), datum));
        None
    }
}

/// VARATT_IS_EXTERNAL_ONDISK.
///
/// # Safety
/// `ptr` points to a varlena header.
unsafe fn is_external_ondisk(ptr: *const pg_sys::varlena) -> bool {
    // SAFETY: per the function contract.
    unsafe {
        pgrx::varlena::varatt_is_1b_e(ptr)
            && pgrx::varlena::vartag_external(ptr) == pg_sys::vartag_external::VARTAG_ONDISK as u8
    }
}
