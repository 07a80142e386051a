//! statsgate: a statsd/UDP ingestion gateway for OpenStack Monasca.
pub mod config;
pub mod parse;
pub mod reason;
pub mod validate;
pub mod aggregate;
pub mod telemetry;
pub mod flush;
pub mod metric;
pub mod sink;
