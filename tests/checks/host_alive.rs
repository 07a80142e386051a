//! `kind: host_alive` checks against real things on loopback.
