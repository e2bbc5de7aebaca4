//! Settings of mimalloc, the allocator `gauntlet` and `gauntlet-bench` run with, applied by
//! their `main` before any work starts.

use std::ffi::{c_int, c_long};

// The crate links mimalloc's library; its option calls are declared here.
use mimalloc as _;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t`.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// How long freed memory stays committed before mimalloc returns it to the OS, ms.
/// mimalloc 3 keeps it 1000 ms. Under a query load that frees a few hundred MB a second
/// (batches, decode buffers, answers), that held about 130 MB more than the live heap at the
/// peak: in the `run query` workload (124k series, 30 s at concurrency 2) peak RSS was
/// 432–512 MiB at 1000 ms against 354–375 MiB at 100 ms, with heaptrack's live peak at
/// 230 MB. 100 ms is what mimalloc 2 waited for its arenas; 0 purges at once and costs page
/// faults on every reuse. `MIMALLOC_PURGE_DELAY` in the environment overrides it.
pub const PURGE_DELAY_MS: c_long = 100;

unsafe extern "C" {
    fn mi_option_set_default(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// Applies the settings above (each only where the environment does not set it).
pub fn tune() {
    // SAFETY: plain C calls with an option index of mimalloc's enum and a value; mimalloc
    // reads the option when it next purges. Called from `main` before other threads start
    // (mimalloc's option setters are not thread-safe).
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// The purge delay mimalloc uses now, ms.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: a read of an option by its index.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc 3's default is 1000 ms: the index names the purge delay.
        assert_eq!(purge_delay_ms(), 1000);
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
