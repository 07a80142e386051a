//! `kind: tcp` checks against real things on loopback.
