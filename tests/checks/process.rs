//! `kind: process` checks against real things on loopback.
