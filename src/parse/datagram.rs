//! Datagram framing: which datagrams are heartbeats, and the statsd lines of the others.
//!
//! Owns: splitting a datagram on `\n` (a trailing `\r` dropped, empty lines skipped, as
//! DogStatsD does). Must never: allocate, or look inside a line (that is [`super::parse_line`]).

/// A datagram whose first non-whitespace byte is `{` is a heartbeat (DESIGN §5).
pub fn is_heartbeat(datagram: &[u8]) -> bool {
    datagram.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The lines of a datagram: split on `\n`, a trailing `\r` removed, empty lines skipped.
pub fn lines(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    Lines::new(datagram)
        .map(|line| match line {
            [line @ .., b'\r'] => line,
            line => line,
        })
        .filter(|l| !l.is_empty())
}

/// A datagram split on `\n`, one newline search per line.
///
/// Lines are short (~20 bytes), so a search costs more in call and set-up than in looking at
/// bytes: `memchr_iter` goes through a function pointer to its AVX2 searcher every time.
/// On x86-64 this calls memchr's SSE2 searcher directly instead (SSE2 is part of x86-64, so
/// it inlines into the line loop).
struct Lines<'a> {
    /// What follows the last newline answered; `None` once the last line was.
    rest: Option<&'a [u8]>,
    #[cfg(target_arch = "x86_64")]
    sse2: Option<memchr::arch::x86_64::sse2::memchr::One>,
}

impl<'a> Lines<'a> {
    fn new(datagram: &'a [u8]) -> Self {
        Self {
            rest: Some(datagram),
            #[cfg(target_arch = "x86_64")]
            sse2: memchr::arch::x86_64::sse2::memchr::One::new(b'\n'),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn search(&self, haystack: &[u8]) -> Option<usize> {
        match &self.sse2 {
            Some(sse2) => sse2.find(haystack),
            None => memchr::memchr(b'\n', haystack),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn search(&self, haystack: &[u8]) -> Option<usize> {
        memchr::memchr(b'\n', haystack)
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let split = self.search(rest).and_then(|i| rest.split_at_checked(i));
        let Some((line, newline_on)) = split else {
            self.rest = None;
            return Some(rest);
        };
        self.rest = newline_on.get(1..);
        Some(line)
    }
}
