//! `kind: nagios`: (placeholder: being written).

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::NagiosCheck;
use std::time::Duration;

pub struct NagiosProbe;

impl NagiosProbe {
    #[allow(unused_variables)]
    pub fn new(c: &NagiosCheck, name: &str, ctx: &Context) -> anyhow::Result<Self> {
        Ok(NagiosProbe)
    }
}

impl Check for NagiosProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(async { Report::failed(Vec::new()) })
    }
    fn timed_out(&mut self, _timeout: Duration) -> Vec<Sample> {
        Vec::new()
    }
}
