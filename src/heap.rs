//! glibc's heap, where libtorch's allocations live (Rust's own go to mimalloc, see `main.rs`):
//! how many arenas it keeps, and giving back what a worker's warm-up freed.
//!
//! glibc gives each new thread that allocates its own arena (up to eight per core). An arena
//! other than the main one never gives the free memory at its top back to the system:
//! `malloc_trim` trims only the main arena's top. A native worker's warm-up frees its
//! activations into the top of its thread's arena, so with glibc's default an added DenseNet-161
//! worker kept 15.9 MB of freed activations resident (`/proc/<pid>/smaps`: one new 64 MiB-aligned
//! region) and cost +7 to +18 MiB from one try to the next. With one arena, the main one, the trim
//! after warm-up gives it all back: +7.1 to +7.3 MiB (ResNet-18: +2.4 MiB against +12), every try
//! (README, Memory).
//!
//! One arena is one lock for libtorch's allocations that glibc's per-thread cache does not serve.
//! Measured on 2 cores in alternating pairs: the MLP at c=64 1.02x the requests/s of an arena per
//! thread, ResNet-18 at c=16 0.99x, both inside the minute's drift; not measured on many cores. A
//! user who wants glibc's default (or any count) sets `MALLOC_ARENA_MAX` (or
//! `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) and tserve leaves it be. Python workers are
//! processes of their own and keep glibc's default.

/// Keeps glibc to the main arena for the whole process, unless the environment sizes the arenas.
/// Call first thing in `main`: a thread that has allocated already keeps the arena it has.
pub fn use_one_arena() {
    if user_sized_arenas(|name| std::env::var(name).ok()) {
        return;
    }
    // SAFETY: mallopt only sets a malloc parameter; M_ARENA_MAX is glibc's (libc's constant).
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Returns the heap's free pages to the system (all arenas' free chunks, and the main arena's
/// top): what a worker's warm-up freed.
pub fn release_free_pages() {
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe { libc::malloc_trim(0) };
}

/// Whether the environment sets glibc's arena count itself.
fn user_sized_arenas(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_ARENA_MAX").is_some() || var("GLIBC_TUNABLES").is_some_and(|tunables| tunables.contains("glibc.malloc.arena_max"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    }

    #[test]
    fn the_users_arena_count_wins() {
        assert!(!user_sized_arenas(env(&[])));
        assert!(!user_sized_arenas(env(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")])));
        assert!(user_sized_arenas(env(&[("MALLOC_ARENA_MAX", "8")])));
        assert!(user_sized_arenas(env(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4")])));
    }
}
