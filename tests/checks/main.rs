//! The checks suite: the real binary running each kind of check against real things on
//! loopback (HTTP servers it starts, open and closed ports, child processes, Nagios-convention
//! scripts, a JSONL directory, the Rainbow SDK's own client), reading what reaches the console
//! sink and `/metrics`.

#[path = "../common/mod.rs"]
mod common;
mod host_alive;
mod http;
mod nagios;
mod process;
mod rainbow;
mod schedule;
mod tcp;
