//! Cache prefetch hints for the series lookups a reader pipelines over a datagram's lines.
//!
//! Owns: the one `unsafe` outside `listen/mmsg.rs`, the prefetch instruction. Must never:
//! read or write through the pointer it is given (a prefetch only warms a cache line).

/// Hints that `at` will be read soon.
#[inline(always)]
pub fn read<T: ?Sized>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of x86-64's baseline (SSE) and never faults or touches
    // memory architecturally; the pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Hints that `at` will be written soon (on x86-64 the same hint as a read: the line is
/// fetched, and the write that follows finds it in cache).
#[inline(always)]
pub fn write<T: ?Sized>(at: &T) {
    read(at);
}
