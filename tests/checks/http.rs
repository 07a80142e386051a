//! `kind: http` checks against real things on loopback.
