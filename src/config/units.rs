// PLACEHOLDER until the config helper's version lands.
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Deserialize, Serialize)]
pub struct Duration(#[serde(with = "humantime_serde_shim")] std::time::Duration);
mod humantime_serde_shim {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(&humantime::format_duration(*d).to_string()) }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> { let s: String = serde::Deserialize::deserialize(d)?; humantime::parse_duration(&s).map_err(serde::de::Error::custom) }
}
impl Duration { pub const fn secs(s: u64) -> Self { Self(std::time::Duration::from_secs(s)) } pub const fn millis(s: u64) -> Self { Self(std::time::Duration::from_millis(s)) } pub fn get(self) -> std::time::Duration { self.0 } }
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Deserialize, Serialize)]
pub struct ByteSize(u64);
impl ByteSize { pub const fn b(n: u64) -> Self { Self(n) } pub const fn kib(n: u64) -> Self { Self(n * 1024) } pub const fn mib(n: u64) -> Self { Self(n * 1024 * 1024) } pub fn bytes(self) -> u64 { self.0 } }
