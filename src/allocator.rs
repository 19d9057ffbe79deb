//! The process's allocator, mimalloc, which is `malloc` for libtorch as well as for Rust (the
//! `override` feature; `src/main.rs` says why): when the memory it frees goes back to the system.
//!
//! mimalloc returns ("purges") free pages once they have stayed unused for its purge delay, one
//! second by default. A model's working memory (ResNet-18's activations) is freed after every
//! batch, so with that default a model asked once every few seconds finds its pages purged each
//! time and faults them in again: +15 ms on a 50 ms ResNet-18 request on the development VM
//! (README, ninth stop). glibc's arenas, which libtorch used before, never gave that memory back.
//! tserve sets a delay of ten minutes instead: a model idle that long gives its working memory
//! back, and its next request pays the faults once. `MIMALLOC_PURGE_DELAY`, when set, wins.
//!
//! A worker that has just warmed up is different: nothing will use its freed pages until its
//! first batch, however long that takes, so it gives them back at once ([`give_back_free_pages`]).

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` in the mimalloc (v3) that
/// `libmimalloc-sys` builds, whose Rust constants do not list it. The tests check it reads as
/// that option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages stay resident before mimalloc purges them, unless the environment says.
const PURGE_DELAY_MS: std::ffi::c_long = 10 * 60 * 1000;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless `MIMALLOC_PURGE_DELAY` sets it.
/// Call it first thing in `main`.
pub fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options; mimalloc reads them atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// Returns the calling thread's free pages to the system now, whatever the purge delay.
pub fn give_back_free_pages() {
    // SAFETY: mi_collect(force) only purges free pages (of this thread's heap, and the arenas'
    // pending purges); live allocations are untouched.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_named() {
        // mimalloc v3's default purge delay is 1000 ms and no other option defaults to it: a
        // wrong index (a mimalloc whose options moved) reads something else. Nothing in the unit
        // tests sets it; the variable would, so the check needs it unset.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads an option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
    }
}
