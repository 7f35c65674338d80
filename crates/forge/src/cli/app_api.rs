//! Asking the running application, through its dashboard API (`/_api`), what only its code
//! knows: whether a job's arguments fit the kind's Rust type. The CLI finds the app where
//! `forge.toml` says its gateway listens and, when `[auth] jwt_secret` is set, signs a
//! short-lived token with `[dashboard] role` (in development mode a local request needs none).

use std::time::Duration;

use forge::ForgeConfig;
use forge::gateway::{TokenRequest, mint_token};
use serde_json::Value;

/// What the app answered.
pub(crate) enum Answer {
    /// The app did it (2xx) and answered this JSON.
    Done(Value),
    /// The app refused the request as the user made it (400, 404 for a kind, 409, 422): this
    /// sentence says why, and nothing was done.
    Refused(String),
}

/// Why the app could not be asked: the caller falls back to what it can do without it.
pub(crate) struct Unreachable(pub(crate) String);

/// The app's base URL, from `[gateway] host` and `port` (a wildcard address asked on loopback).
pub(crate) fn base_url(config: &ForgeConfig) -> String {
    let host = match config.gateway.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    format!("http://{host}:{}", config.gateway.port)
}

/// POSTs `body` to `path` (under `/_api`) on the running app.
pub(crate) async fn post(config: &ForgeConfig, path: &str, body: &Value) -> Result<Answer, Unreachable> {
    let base = base_url(config);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Unreachable(format!("cannot make an HTTP client: {e}")))?;
    // The header a browser cannot send cross-site: the dashboard API asks it of every POST.
    let mut request = client.post(format!("{base}/_api{path}")).header("x-forge-csrf", "forge-cli").json(body);
    if config.auth.jwt_secret.as_deref().is_some_and(|s| !s.is_empty()) {
        let mut token = TokenRequest::new("forge-cli", Duration::from_secs(60));
        token.roles = vec![config.dashboard.role.clone()];
        let token = mint_token(&config.auth, &token).map_err(|e| Unreachable(format!("cannot sign a token: {e}")))?;
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| Unreachable(format!("no app answers at {base} ({e})")))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| Unreachable(format!("the app at {base} broke off ({e})")))?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(Answer::Done(json));
    }
    let detail = json["detail"].as_str().or(json["title"].as_str()).unwrap_or(text.trim()).to_owned();
    match status.as_u16() {
        400 | 409 | 422 => Ok(Answer::Refused(detail)),
        401 | 403 => Err(Unreachable(format!(
            "the app at {base} refused the CLI ({status}: {detail}); set [auth] jwt_secret so the CLI can sign a token"
        ))),
        _ => Err(Unreachable(format!("the app at {base} answered {status}: {detail}"))),
    }
}
