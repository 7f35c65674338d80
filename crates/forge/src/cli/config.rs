//! `forge config`: checks forge.toml and the environment as a node's build does, and prints
//! the resulting configuration (secrets redacted).

use forge::ForgeConfig;

/// Validates `config` and prints it as TOML (or JSON).
pub(crate) fn show(config: &ForgeConfig, json: bool) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    let mut value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    if let Some(secret) = value.pointer_mut("/auth/jwt_secret") {
        *secret = serde_json::Value::String("<redacted>".to_owned());
    }
    if let Some(url) = value.pointer_mut("/database/url")
        && let Some(text) = url.as_str()
    {
        *url = serde_json::Value::String(forge::db::redact_url(text));
    }
    let text = if json {
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
    } else {
        toml::to_string_pretty(&value).map_err(|e| e.to_string())?
    };
    println!("{text}");
    Ok(())
}
