//! The gateway's settings (`[gateways.settings]` in the host's config.toml), with secrets
//! already resolved by the host.

use crate::types::Failure;

/// The value of a setting, or `None` when the gateway does not set it.
pub fn get(name: &str) -> Option<String> {
    crate::host::setting(name)
}

/// The value of a setting that must be present and non-empty; otherwise a
/// [`Failure::Misconfigured`] naming it.
pub fn require(name: &str) -> Result<String, Failure> {
    match get(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        Some(_) => Err(Failure::Misconfigured(format!("setting `{name}` is empty"))),
        None => Err(Failure::Misconfigured(format!(
            "setting `{name}` is missing"
        ))),
    }
}
