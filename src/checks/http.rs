//! `kind: http`: (placeholder: being written).

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::HttpCheck;
use std::time::Duration;

pub struct HttpProbe;

impl HttpProbe {
    #[allow(unused_variables)]
    pub fn new(c: &HttpCheck, timeout: Duration, ctx: &Context) -> anyhow::Result<Self> {
        Ok(HttpProbe)
    }
}

impl Check for HttpProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(async { Report::failed(Vec::new()) })
    }
    fn timed_out(&mut self, _timeout: Duration) -> Vec<Sample> {
        Vec::new()
    }
}
