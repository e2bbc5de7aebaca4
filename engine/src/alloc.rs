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

/// `mi_option_allow_thp` in mimalloc's `mi_option_t`.
const MI_OPTION_ALLOW_THP: c_int = 43;

unsafe extern "C" {
    fn mi_option_set_default(option: c_int, value: c_long);
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// Applies the settings above (each only where the environment does not set it), and turns
/// transparent huge pages off for the process unless `MIMALLOC_ALLOW_THP` asks for them.
///
/// mimalloc asks for huge pages on its memory, so each first touch of a fresh 2 MiB region
/// zeroes all of it, and purging part of a huge page and touching it again zeroes another.
/// With fifty heavy queries running, their threads spent a third of the process's CPU in the
/// kernel zeroing pages, and a small query waited behind them: p99 133 ms with huge pages,
/// 13-19 ms without. Databases that allocate and free as queries come and go (Redis,
/// MongoDB) advise the same.
pub fn tune() {
    // SAFETY: plain C calls with an option index of mimalloc's enum and a value; mimalloc
    // reads the option when it next purges or maps memory. Called from `main` before other
    // threads start (mimalloc's option setters are not thread-safe).
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // The option was read when mimalloc started; setting it (not its default) keeps
        // mimalloc from asking for huge pages on memory it maps from now on, and the prctl
        // keeps the kernel from backing with huge pages what it asked for before.
        // SAFETY: as above.
        unsafe { mi_option_set(MI_OPTION_ALLOW_THP, 0) };
        // Logging has not started yet; a kernel without the prctl (before 3.15) leaves
        // mimalloc's option alone in force, which covers what it maps from now on.
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

/// Whether the kernel may back this process's memory with transparent huge pages.
pub fn huge_pages_allowed() -> bool {
    !nix::sys::prctl::get_thp_disable().unwrap_or(false)
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
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert!(!huge_pages_allowed(), "huge pages are off after tune()");
        }
    }
}
