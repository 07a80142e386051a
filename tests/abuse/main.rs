//! The abuse suite: the real binary against hostile senders, clients, servers and file
//! systems. Each module holds one family of attacks; every test here failed on the gateway
//! before the hardening it checks (issue 11) and must keep passing after.

#[path = "../common/mod.rs"]
mod common;
mod http;
mod service;
mod spool;
mod timers;
mod upstream;
