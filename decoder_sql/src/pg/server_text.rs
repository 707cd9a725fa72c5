//! Statement text in the server's encoding, returned to SQL as `text` byte for byte (see
//! `sqlgen::bytes` for how it is carried through Rust strings).

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum, IntoDatum};
use pgrx::pg_sys;

pub use sqlgen::bytes::Spelling;

/// `bytes` as a string that [`ServerText::new`] turns back into the same bytes.
pub fn read(bytes: &[u8]) -> (String, Spelling) {
    sqlgen::bytes::from_bytes(bytes)
}

/// A `text` value holding bytes in the server's encoding, returned without conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerText(Vec<u8>);

impl ServerText {
    /// The bytes of `text`, read by [`read`] with `spelling`.
    pub fn new(text: String, spelling: Spelling) -> ServerText {
        ServerText(sqlgen::bytes::to_bytes(text, spelling))
    }

    /// Bytes in the server's encoding, as they are.
    pub fn from_bytes(bytes: Vec<u8>) -> ServerText {
        ServerText(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromDatum for ServerText {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-null text datum, per the caller; detoasting may copy it into the
        // current memory context, from which the bytes are copied out at once.
        unsafe {
            let varlena = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any_exhdr(varlena);
            let data = pgrx::varlena::vardata_any(varlena).cast::<u8>();
            Some(ServerText(std::slice::from_raw_parts(data, len).to_vec()))
        }
    }
}

impl IntoDatum for ServerText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // A text datum is a varlena of the bytes, as pgrx makes one from a String.
        self.0.as_slice().into_datum()
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }

    fn is_compatible_with(other: pg_sys::Oid) -> bool {
        other == pg_sys::TEXTOID || other == pg_sys::VARCHAROID
    }
}

// SAFETY: the datum is returned to the function's caller, as `box_into` requires; it is
// made the way pgrx returns a String.
unsafe impl BoxRet for ServerText {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: a freshly palloc'd text datum, returned as is.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

// Passed to and from SQL as `text`, whose datum is the varlena `into_datum` builds.
pgrx::impl_sql_translatable!(ServerText, "text");
