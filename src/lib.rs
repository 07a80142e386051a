//! statsgate: a statsd/UDP ingestion gateway for OpenStack Monasca.
//!
//! The data path, one module per stage (DESIGN §2):
//!
//! ```text
//! UDP :8125 ─▶ listen ─▶ parse ─▶ aggregate ──(flush interval: swap shards)──▶ flush ─▶ sink
//!  (reader threads,      (pure,    (one shard per                       (merge, render,   (console:
//!   recvmmsg,             borrowed) reader, line memo,                   validate,         JSON array
//!   SO_REUSEPORT)                   series budget)                       gauges persist)   on stdout)
//!                                                                                            │ or
//!        POST /v2.0/metrics ◀── forward (queue, senders, retry policy) ◀── batch ◀─────────────┘
//!                 ▲ auth (Keystone token)   │ outage / full queue ▲ ordered replay
//!                                           ▼                     │
//!                                         spool (segments on disk, buffer.spool_dir)
//! ```
//!
//! `gateway` wires the stages; `config` loads and validates settings; `telemetry` and `admin`
//! expose the gateway's own counters; `shutdown` drains on SIGTERM/SIGINT; `loadgen` is the
//! `statsgate bench` load generator, outside the data path.
pub mod admin;
pub mod aggregate;
pub mod allow;
pub mod auth;
pub mod batch;
pub mod checks;
pub mod clock;
pub mod config;
pub mod flush;
pub mod forward;
pub mod gateway;
pub mod heartbeat;
pub mod history;
pub mod http;
pub mod listen;
pub mod live;
pub mod loadgen;
pub mod metric;
pub mod parse;
pub mod passthrough;
pub mod probes;
pub mod reason;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod validate;
