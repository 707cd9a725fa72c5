//! Pins the settings that change how values are printed, so decoded text does not depend on the
//! decoding session (postgres_fdw's "transmission modes" do the same for remote queries).

use pgrx::pg_sys;

/// (name, value) pairs set while a transaction is decoded.
const PINNED: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"DateStyle", c"ISO, YMD"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"3"),
    (c"bytea_output", c"hex"),
    (c"TimeZone", c"UTC"),
    (c"lc_monetary", c"C"),
    // regclass, regtype ... print a name schema-qualified unless this path finds it; readers
    // replay values under the same path.
    (c"search_path", c"pg_catalog"),
];

/// Settings pinned at a new GUC nest level; `release` restores the session's values. If an
/// error aborts decoding first, transaction abort restores them instead.
pub struct PinnedOutputSettings {
    nest_level: i32,
}

impl PinnedOutputSettings {
    /// Must be called inside the transaction the reorder buffer opens for replay (begin_cb is).
    pub fn pin() -> Self {
        // SAFETY: called inside a (sub)transaction; set_config_option with GUC_ACTION_SAVE
        // records the old values at the new nest level, which AtEOXact_GUC pops.
        unsafe {
            let nest_level = pg_sys::NewGUCNestLevel();
            for (name, value) in PINNED {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    pg_sys::PGERROR as i32,
                    false,
                );
            }
            PinnedOutputSettings { nest_level }
        }
    }

    pub fn release(self) {
        // SAFETY: pops exactly the nest level `pin` pushed, in the same transaction.
        unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) }
    }
}
