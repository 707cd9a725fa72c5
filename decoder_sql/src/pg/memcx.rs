//! Memory contexts owned by the plugin.

use pgrx::pg_sys;

const ALLOCSET_DEFAULT_MINSIZE: usize = 0;
const ALLOCSET_DEFAULT_INITSIZE: usize = 8 * 1024;
const ALLOCSET_DEFAULT_MAXSIZE: usize = 8 * 1024 * 1024;

/// A child memory context of the decoding context. Freed when the decoding context is deleted.
#[derive(Clone, Copy)]
pub struct ChildContext(pub(crate) pg_sys::MemoryContext);

impl ChildContext {
    pub(crate) fn create(parent: pg_sys::MemoryContext, name: &'static std::ffi::CStr) -> Self {
        // SAFETY: `parent` is the live decoding context; `name` is static as the API requires.
        let cxt = unsafe {
            pg_sys::AllocSetContextCreateInternal(
                parent,
                name.as_ptr(),
                ALLOCSET_DEFAULT_MINSIZE,
                ALLOCSET_DEFAULT_INITSIZE,
                ALLOCSET_DEFAULT_MAXSIZE,
            )
        };
        ChildContext(cxt)
    }

    /// Runs `f` with this context current, then restores the previous one and resets this one,
    /// so output-function results and detoasted copies live exactly as long as one change.
    pub fn run_and_reset<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(pg_sys::MemoryContext, pg_sys::MemoryContext);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: both contexts are alive: the previous one belongs to our caller and
                // the scratch one to the decoding context. Runs on unwind too.
                unsafe {
                    pg_sys::CurrentMemoryContext = self.0;
                    // Skip the call when nothing was allocated (isReset is maintained by
                    // the allocator).
                    if !(*self.1).isReset {
                        pg_sys::MemoryContextReset(self.1);
                    }
                }
            }
        }
        // SAFETY: switching CurrentMemoryContext to a live context of ours; restored by the guard.
        let previous = unsafe {
            let previous = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = self.0;
            previous
        };
        let _restore = Restore(previous, self.0);
        f()
    }
}
