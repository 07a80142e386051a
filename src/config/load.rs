// PLACEHOLDER until the config helper's version lands.
use super::Config;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
pub fn load(path: Option<&std::path::Path>, _env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    match path { None => Ok(Config::default()), Some(p) => { let s = std::fs::read_to_string(p).map_err(|e| ConfigError(e.to_string()))?; serde_saphyr::from_str(&s).map_err(|e| ConfigError(e.to_string())) } }
}
