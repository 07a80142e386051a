//! Framing on the Unix stream socket: newline-separated lines (`nc -U`, socat, any statsd
//! stream client), or DogStatsD's length-prefixed packets (what the DogStatsD clients send
//! to a `unixstream://` socket: a little-endian u32 length, then that many bytes of lines).
//!
//! Owns: telling the two apart per connection by its first four bytes (a length under
//! 16 MiB has a zero fourth byte, which no statsd text has), and cutting either into whole
//! lines through a [`Framer`], so memory stays one partial line per connection whatever a
//! packet's declared length. Must never: buffer a packet whole, or let a line run from one
//! packet into the next.

use crate::listen::stream::Framer;

const PREFIX: usize = 4;

#[derive(Debug)]
enum Mode {
    /// Fewer than four bytes seen yet.
    Undecided {
        head: [u8; PREFIX],
        len: usize,
    },
    Lines,
    /// In a header (`have` of its bytes read) while `body_left` is 0, else in a body.
    Packets {
        header: [u8; PREFIX],
        have: usize,
        body_left: usize,
    },
}

/// The connection ended inside a DogStatsD packet: its last, unfinished line is dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Cut;

/// One connection's framing.
#[derive(Debug)]
pub struct Decoder {
    mode: Mode,
    framer: Framer,
    max_line: usize,
}

fn join(a: Option<Vec<u8>>, b: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.extend_from_slice(&b);
            Some(a)
        }
        (a, None) => a,
        (None, b) => b,
    }
}

impl Decoder {
    pub fn new(max_line: usize) -> Decoder {
        Decoder {
            mode: Mode::Undecided {
                head: [0; PREFIX],
                len: 0,
            },
            framer: Framer::new(max_line),
            max_line,
        }
    }

    /// Whether the connection turned out to speak DogStatsD's length-prefixed framing.
    #[cfg(test)]
    pub fn is_packets(&self) -> bool {
        matches!(self.mode, Mode::Packets { .. })
    }

    /// Bytes just read: the whole lines they complete (`None` when none did) and how many
    /// over-long lines were skipped, as [`Framer::push`].
    pub fn push(&mut self, bytes: &[u8]) -> (Option<Vec<u8>>, u64) {
        match &mut self.mode {
            Mode::Lines => self.framer.push(bytes),
            Mode::Packets { .. } => self.push_packets(bytes),
            Mode::Undecided { head, len } => {
                let take = (PREFIX - *len).min(bytes.len());
                head[*len..*len + take].copy_from_slice(&bytes[..take]);
                *len += take;
                if *len < PREFIX {
                    return (None, 0);
                }
                let head = *head;
                self.mode = if head[PREFIX - 1] == 0 {
                    Mode::Packets {
                        header: [0; PREFIX],
                        have: 0,
                        body_left: 0,
                    }
                } else {
                    Mode::Lines
                };
                let (first, s1) = self.push(&head);
                let (rest, s2) = self.push(&bytes[take..]);
                (join(first, rest), s1 + s2)
            }
        }
    }

    fn push_packets(&mut self, mut bytes: &[u8]) -> (Option<Vec<u8>>, u64) {
        let Decoder {
            mode,
            framer,
            max_line,
        } = self;
        let Mode::Packets {
            header,
            have,
            body_left,
        } = mode
        else {
            return (None, 0);
        };
        let mut out = None;
        let mut skipped = 0;
        while !bytes.is_empty() {
            if *body_left == 0 {
                let take = (PREFIX - *have).min(bytes.len());
                header[*have..*have + take].copy_from_slice(&bytes[..take]);
                *have += take;
                bytes = &bytes[take..];
                if *have == PREFIX {
                    *have = 0;
                    *body_left = u32::from_le_bytes(*header) as usize;
                }
                continue;
            }
            let take = (*body_left).min(bytes.len());
            let (lines, s) = framer.push(&bytes[..take]);
            out = join(out, lines);
            skipped += s;
            *body_left -= take;
            bytes = &bytes[take..];
            if *body_left == 0 {
                // A packet's last line needs no newline; it must not join the next packet's.
                if let Some(mut last) = framer.finish() {
                    last.push(b'\n');
                    out = join(out, Some(last));
                }
                *framer = Framer::new(*max_line);
            }
        }
        (out, skipped)
    }

    /// At the connection's end: its final line when it had no newline, or [`Cut`] when it
    /// ended inside a DogStatsD packet.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, Cut> {
        match &self.mode {
            Mode::Undecided { head, len } => {
                let head = *head;
                let len = *len;
                self.mode = Mode::Lines;
                let (lines, _) = self.framer.push(&head[..len]);
                Ok(join(lines, self.framer.finish()))
            }
            Mode::Lines => Ok(self.framer.finish()),
            Mode::Packets {
                have, body_left, ..
            } => {
                if *have > 0 || *body_left > 0 {
                    Err(Cut)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(body: &[u8]) -> Vec<u8> {
        let mut p = (body.len() as u32).to_le_bytes().to_vec();
        p.extend_from_slice(body);
        p
    }

    /// Feeds `bytes` in pieces of `step` bytes; all lines out, skipped count, and finish.
    fn run(
        d: &mut Decoder,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<u8>, u64, Result<Option<Vec<u8>>, Cut>) {
        let mut out = Vec::new();
        let mut skipped = 0;
        for piece in bytes.chunks(step) {
            let (lines, s) = d.push(piece);
            out.extend(lines.unwrap_or_default());
            skipped += s;
        }
        (out, skipped, d.finish())
    }

    #[test]
    fn newline_framing_in_any_pieces() {
        for step in [1, 2, 3, 5, 100] {
            let mut d = Decoder::new(64);
            let (out, skipped, last) = run(&mut d, b"a:1|c\nb:2|c\nc:3|g", step);
            assert_eq!(out, b"a:1|c\nb:2|c\n", "step {step}");
            assert_eq!(skipped, 0);
            assert_eq!(last, Ok(Some(b"c:3|g".to_vec())));
            assert!(!d.is_packets());
        }
    }

    #[test]
    fn fewer_than_four_bytes_are_a_line() {
        let mut d = Decoder::new(64);
        assert_eq!(run(&mut d, b"a:1", 10).2, Ok(Some(b"a:1".to_vec())));
        // Undecided until the end (no valid statsd line is that short).
        let mut d = Decoder::new(64);
        let (out, _, last) = run(&mut d, b"x\n", 10);
        assert_eq!((out, last), (Vec::new(), Ok(Some(b"x\n".to_vec()))));
    }

    #[test]
    fn dogstatsd_packets_in_any_pieces_never_join_lines() {
        let mut stream = packet(b"a:1|c|#k:v");
        stream.extend(packet(b"b:2|g\nc:3|ms"));
        stream.extend(packet(b""));
        stream.extend(packet(b"d:4|c\n"));
        for step in [1, 3, 4, 7, 1000] {
            let mut d = Decoder::new(64);
            let (out, skipped, last) = run(&mut d, &stream, step);
            assert_eq!(
                String::from_utf8_lossy(&out),
                "a:1|c|#k:v\nb:2|g\nc:3|ms\nd:4|c\n",
                "step {step}"
            );
            assert_eq!(skipped, 0);
            assert_eq!(last, Ok(None));
            assert!(d.is_packets());
        }
    }

    #[test]
    fn an_over_long_line_in_a_packet_costs_only_itself() {
        let mut long = vec![b'x'; 100];
        long.extend_from_slice(b":1|c");
        let mut stream = packet(&long);
        stream.extend(packet(b"ok:1|c"));
        let mut d = Decoder::new(16);
        let (out, skipped, last) = run(&mut d, &stream, 7);
        assert_eq!(out, b"ok:1|c\n");
        assert_eq!(skipped, 1);
        assert_eq!(last, Ok(None));
    }

    #[test]
    fn a_declared_length_never_buffers_more_than_a_line() {
        // A header claiming ~16 MiB, then endless bytes without a newline.
        let mut d = Decoder::new(32);
        let _ = d.push(&[0xff, 0xff, 0xff, 0x00]);
        let mut skipped = 0;
        for _ in 0..1000 {
            let (out, s) = d.push(&[b'y'; 1000]);
            assert!(out.is_none());
            skipped += s;
        }
        // Skipped to a newline that never comes: nothing was kept.
        assert_eq!(skipped, 1);
        assert_eq!(d.finish(), Err(Cut));
    }

    #[test]
    fn a_connection_cut_inside_a_header_or_body_is_reported() {
        let mut d = Decoder::new(64);
        let mut p = packet(b"a:1|c\nb:2");
        p.truncate(p.len() - 1);
        let (out, _, last) = run(&mut d, &p, 3);
        assert_eq!(out, b"a:1|c\n");
        assert_eq!(last, Err(Cut));
        let mut d = Decoder::new(64);
        let mut p = packet(b"a:1|c");
        p.extend_from_slice(&[1, 0]);
        assert_eq!(run(&mut d, &p, 100).2, Err(Cut));
    }
}
