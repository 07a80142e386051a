//! `kind: nagios` checks against real things on loopback.
