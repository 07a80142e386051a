//! `kind: tcp`: (placeholder: being written).

use super::{BoxFuture, Check, Report, Sample};
use crate::config::TcpCheck;
use std::time::Duration;

pub struct TcpProbe;

impl TcpProbe {
    #[allow(unused_variables)]
    pub fn new(c: &TcpCheck, timeout: Duration) -> anyhow::Result<Self> {
        Ok(TcpProbe)
    }
}

impl Check for TcpProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(async { Report::failed(Vec::new()) })
    }
    fn timed_out(&mut self, _timeout: Duration) -> Vec<Sample> {
        Vec::new()
    }
}
