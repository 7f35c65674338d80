//! Path and query parameters read through serde into typed structs ([`ApiPath`], [`ApiQuery`]),
//! with a 400 naming the parameter that does not fit. Empty query values count as absent (the
//! pages send `state=` for "any").

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, bad};

/// Path parameters as `T` (a struct whose fields are named like the route's `{…}`).
#[derive(Debug)]
pub(super) struct ApiPath<T>(pub(super) T);

/// Query parameters as `T`.
#[derive(Debug)]
pub(super) struct ApiQuery<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state).await.map_err(|e| bad("path", e.body_text()))?;
        from_pairs(params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).map(ApiPath)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        from_pairs(query_pairs(parts.uri.query())).map(ApiQuery)
    }
}

/// The decoded pairs of a query string, repeats kept, empty values dropped.
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `T` from `key=value` pairs; a value that does not fit names its key.
pub(super) fn from_pairs<T: DeserializeOwned>(pairs: Vec<(String, String)>) -> Result<T, ApiError> {
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { ApiError::Bad(e.inner().to_string()) } else { bad(&path, e.inner()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "read through Debug")]
    struct Params {
        limit: Option<i64>,
        state: Option<forge_core::jobs::JobState>,
    }

    #[test]
    fn a_bad_value_names_its_parameter_and_empty_ones_are_absent() {
        let pairs = query_pairs(Some("limit=abc&state="));
        let err = from_pairs::<Params>(pairs).expect_err("limit");
        assert!(matches!(&err, ApiError::Bad(d) if d.starts_with("`limit`: ")), "{err:?}");
        let ok: Params = from_pairs(query_pairs(Some("limit=5&state=running&other=x%20y"))).expect("fits");
        assert_eq!((ok.limit, ok.state), (Some(5), Some(forge_core::jobs::JobState::Running)));
        let err = from_pairs::<Params>(query_pairs(Some("state=finished"))).expect_err("state");
        assert!(matches!(&err, ApiError::Bad(d) if d.starts_with("`state`: ")), "{err:?}");
    }
}
