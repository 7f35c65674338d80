//! The dashboard's pages: one HTML shell, a script and a stylesheet, embedded in the binary.
//!
//! The shell holds no data, so it is served to anyone; everything it shows comes from `/_api`,
//! which checks access. Responses carry a strict content security policy (this gateway only,
//! no inline scripts) and an ETag, so a reload costs a 304.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use sha2::Digest;

use super::DashboardState;

#[derive(RustEmbed)]
#[folder = "src/dashboard/assets"]
struct Assets;

/// The client runtime `forge generate ts` writes, served as `assets/client.js`: the dashboard's
/// live pages subscribe through it.
const CLIENT_JS: &str = include_str!("../../../../templates/client/client.js");

/// `/_dashboard` (the shell) and `/_dashboard/assets/{file}`.
pub(crate) fn router() -> Router<DashboardState> {
    Router::new()
        .route("/_dashboard", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route("/_dashboard/", get(|| async { Redirect::permanent("/_dashboard") }))
        .route(
            "/_dashboard/assets/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers) }),
        )
}

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn serve(file: &str, headers: &HeaderMap) -> Response {
    let (data, hash): (Vec<u8>, [u8; 32]) = if file == "client.js" {
        (CLIENT_JS.as_bytes().to_vec(), sha2::Sha256::digest(CLIENT_JS.as_bytes()).into())
    } else {
        let Some(asset) = Assets::get(file) else {
            return (StatusCode::NOT_FOUND, "no such dashboard asset").into_response();
        };
        (asset.data.into_owned(), asset.metadata.sha256_hash())
    };
    let etag = format!("\"{}\"", hash.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { data.into_response() };
    let h = response.headers_mut();
    let content_type = match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
