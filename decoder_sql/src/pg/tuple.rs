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
        for &i in wanted {
            let src = self.text_of(info, i);
            self.cells[i] = Some(src);
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

    fn text_of(&mut self, info: &RelInfo, i: usize) -> CellSrc {
        if self.nulls[i] {
            return CellSrc::Null;
        }
        let col = &info.columns[i];
        let datum = self.values[i];
        if col.unreadable.is_some() {
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            // SAFETY: a non-null varlena datum of this column's type; only the header is read.
            let unchanged_toast = col.is_varlena && unsafe { is_external_ondisk(ptr) };
            if unchanged_toast {
                return CellSrc::UnchangedToast;
            }
            self.replaced.push(i);
            return CellSrc::Null;
        }
        let start = self.arena.len();
        let arena = |s: &mut Self, text: &str| {
            s.arena.extend_from_slice(text.as_bytes());
            CellSrc::Arena(start, text.len())
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
                return CellSrc::UnchangedToast;
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
                return CellSrc::Scratch(data, pgrx::varlena::varsize_any_exhdr(detoasted));
            }
            let text = pg_sys::OutputFunctionCall(col.output.get(), datum);
            let bytes = CStr::from_ptr(text).to_bytes();
            CellSrc::Scratch(bytes.as_ptr(), bytes.len())
        }
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
