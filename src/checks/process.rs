//! `kind: process`: (placeholder: being written).

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::ProcessCheck;
use std::time::Duration;

pub struct ProcessProbe;

impl ProcessProbe {
    #[allow(unused_variables)]
    pub fn new(c: &ProcessCheck, name: &str, ctx: &Context) -> anyhow::Result<Self> {
        Ok(ProcessProbe)
    }
}

impl Check for ProcessProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(async { Report::failed(Vec::new()) })
    }
    fn timed_out(&mut self, _timeout: Duration) -> Vec<Sample> {
        Vec::new()
    }
}
