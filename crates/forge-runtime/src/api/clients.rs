//! `/v1/clients`: an operator's clients and their keys.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::body;
use super::error::ApiError;
use super::idempotency::{self, Change, Post, to_json};
use super::sql;
use super::state::ApiState;
use super::types::{Client, ClientKey, CreatedClientKey, NewClient, NewClientKey, NoOptions, Page, RotateKey, SCOPES};
use crate::gateway::api_keys::{self, ApiKeyError};
use crate::gateway::{ApiKey, NewApiKey};

/// The longest grace a rotation may give the old key.
const MAX_GRACE_SECS: u64 = 30 * 86_400;

/// `POST /v1/clients`: 201 with the client; 409 when the name is taken.
#[utoipa::path(post, operation_id = "create_client", path = "/v1/clients", tag = "clients", request_body = NewClient, responses((status = 201, description = "The client", body = Client, links(("get" = (operation_id = "get_client", parameters(("id" = "$response.body#/id")))), ("keys" = (operation_id = "list_client_keys", parameters(("id" = "$response.body#/id")))), ("create_key" = (operation_id = "create_client_key", parameters(("id" = "$response.body#/id"))))))))]
pub(super) async fn create(State(state): State<ApiState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let prepared = async {
        let owner = state.operator(&headers).await?;
        let value = body::json_value(&headers, &body)?;
        let new: NewClient = body::parse(value.clone())?;
        body::check_text("name", new.name.trim(), 100)?;
        Ok::<_, ApiError>((owner, value, new))
    };
    let (owner, value, new) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            let client: Option<Client> = sqlx::query_as(sql::INSERT_CLIENT)
                .bind(Uuid::new_v4())
                .bind(new.name.trim())
                .fetch_optional(&mut *conn)
                .await?;
            let client =
                client.ok_or_else(|| ApiError::Conflict(format!("a client named {:?} exists", new.name.trim())))?;
            Ok((StatusCode::CREATED, to_json(&client)?))
        })
    })
    .await
}

/// `GET /v1/clients`.
#[utoipa::path(get, operation_id = "list_clients", path = "/v1/clients", tag = "clients", responses((status = 200, description = "Every client", body = Page<Client>)))]
pub(super) async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let result = async {
        state.operator(&headers).await?;
        let clients: Vec<Client> = sqlx::query_as(sql::LIST_CLIENTS).fetch_all(state.pool()).await?;
        Ok::<_, ApiError>(Json(super::types::Page { data: clients, next_cursor: None }))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `GET /v1/clients/{id}`.
#[utoipa::path(get, operation_id = "get_client", path = "/v1/clients/{id}", tag = "clients", params(("id" = uuid::Uuid, Path, description = "The client's id")), responses((status = 200, description = "The client", body = Client)))]
pub(super) async fn get(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        state.operator(&headers).await?;
        let id = client_id(&id)?;
        Ok::<_, ApiError>(Json(find_client(&state, id).await?))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `GET /v1/clients/{id}/keys`: prefixes only.
#[utoipa::path(get, operation_id = "list_client_keys", path = "/v1/clients/{id}/keys", tag = "clients", params(("id" = uuid::Uuid, Path, description = "The client's id")), responses((status = 200, description = "The client's keys (prefixes, never secrets)", body = Page<ClientKey>)))]
pub(super) async fn keys(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        state.operator(&headers).await?;
        let id = client_id(&id)?;
        find_client(&state, id).await?;
        let keys: Vec<ApiKey> = sqlx::query_as(sql::CLIENT_KEYS).bind(id).fetch_all(state.pool()).await?;
        let keys: Vec<ClientKey> = keys.into_iter().map(ClientKey::from).collect();
        Ok::<_, ApiError>(Json(super::types::Page { data: keys, next_cursor: None }))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `POST /v1/clients/{id}/keys`: 201 with the key, shown this once.
#[utoipa::path(post, operation_id = "create_client_key", path = "/v1/clients/{id}/keys", tag = "clients", params(("id" = uuid::Uuid, Path, description = "The client's id")), request_body(content = Option<NewClientKey>, description = "Options, or nothing"), responses((status = 201, description = "The key, shown this once", body = CreatedClientKey, links(("rotate" = (operation_id = "rotate_client_key", parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id")))), ("revoke" = (operation_id = "revoke_client_key", parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id"))))))))]
pub(super) async fn create_key(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let prepared = async {
        let owner = state.operator(&headers).await?;
        let id = client_id(&id)?;
        let value = body::json_value(&headers, &body)?;
        let new: NewClientKey = body::parse(value.clone())?;
        if let Some(name) = &new.name {
            body::check_text("name", name.trim(), 100)?;
        }
        for (i, scope) in new.scopes.iter().enumerate() {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(ApiError::field(format!("scopes[{i}]"), format!("must be one of {}", SCOPES.join(", "))));
            }
        }
        let client = find_client(&state, id).await?;
        Ok::<_, ApiError>((owner, value, new, client))
    };
    let (owner, value, new, client) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            let mut key =
                NewApiKey::named(new.name.map_or_else(|| format!("{} key", client.name), |n| n.trim().to_owned()));
            key.client_id = Some(client.id);
            key.scopes = new.scopes;
            key.expires_at = new.expires_at;
            let created = api_keys::insert(conn, key, None).await.map_err(key_error)?;
            let answer = CreatedClientKey { record: created.record.into(), key: created.key };
            Ok((StatusCode::CREATED, to_json(&answer)?))
        })
    })
    .await
}

/// `POST /v1/clients/{id}/keys/{key_id}/rotate`: 201 with the new key; the old one works for
/// `grace_seconds` more.
#[utoipa::path(post, operation_id = "rotate_client_key", path = "/v1/clients/{id}/keys/{key_id}/rotate", tag = "clients", params(("id" = uuid::Uuid, Path, description = "The client's id"), ("key_id" = uuid::Uuid, Path, description = "The key's id")), request_body(content = Option<RotateKey>, description = "The grace period, or nothing (the old key stops at once)"), responses((status = 201, description = "The new key, shown this once", body = CreatedClientKey, links(("rotate" = (operation_id = "rotate_client_key", parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id")))), ("revoke" = (operation_id = "revoke_client_key", parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id"))))))))]
pub(super) async fn rotate_key(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path((id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let prepared = async {
        let owner = state.operator(&headers).await?;
        let (id, key_id) = (client_id(&id)?, key_id_of(&key_id)?);
        let value = body::json_value(&headers, &body)?;
        let rotate: RotateKey = body::parse(value.clone())?;
        if rotate.grace_seconds > MAX_GRACE_SECS {
            return Err(ApiError::field("grace_seconds", "must be at most 30 days (2592000)"));
        }
        Ok::<_, ApiError>((owner, id, key_id, value, rotate))
    };
    let (owner, id, key_id, value, rotate) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    let response = idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            check_key_of(conn, id, key_id).await?;
            let grace = std::time::Duration::from_secs(rotate.grace_seconds);
            let created = api_keys::rotate_in(conn, key_id, grace).await.map_err(key_error)?;
            let answer = CreatedClientKey { record: created.record.into(), key: created.key };
            Ok((StatusCode::CREATED, to_json(&answer)?))
        })
    })
    .await;
    api_keys::key_changed(state.pool());
    response
}

/// `POST /v1/clients/{id}/keys/{key_id}/revoke`: 200 with the key, refused from now on.
#[utoipa::path(post, operation_id = "revoke_client_key", path = "/v1/clients/{id}/keys/{key_id}/revoke", tag = "clients", params(("id" = uuid::Uuid, Path, description = "The client's id"), ("key_id" = uuid::Uuid, Path, description = "The key's id")), request_body(content = Option<NoOptions>, description = "Nothing, or `{}`"), responses((status = 200, description = "The key, revoked", body = ClientKey)))]
pub(super) async fn revoke_key(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path((id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let prepared = async {
        let owner = state.operator(&headers).await?;
        let (id, key_id) = (client_id(&id)?, key_id_of(&key_id)?);
        let value = body::json_value(&headers, &body)?;
        body::parse::<NoOptions>(value.clone())?;
        Ok::<_, ApiError>((owner, id, key_id, value))
    };
    let (owner, id, key_id, value) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    let response = idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            check_key_of(conn, id, key_id).await?;
            let key = api_keys::revoke_in(conn, key_id).await.map_err(key_error)?;
            Ok((StatusCode::OK, to_json(&ClientKey::from(key))?))
        })
    })
    .await;
    // After the commit: this node's cached keys are dropped before the answer is sent.
    api_keys::key_changed(state.pool());
    response
}

async fn find_client(state: &ApiState, id: Uuid) -> Result<Client, ApiError> {
    let client: Option<Client> = sqlx::query_as(sql::GET_CLIENT).bind(id).fetch_optional(state.pool()).await?;
    client.ok_or_else(|| ApiError::NotFound(format!("no client {id}")))
}

async fn check_key_of(conn: &mut sqlx::PgConnection, client: Uuid, key: Uuid) -> Result<(), ApiError> {
    let belongs: bool = sqlx::query_scalar(sql::KEY_OF_CLIENT).bind(key).bind(client).fetch_one(conn).await?;
    if belongs { Ok(()) } else { Err(ApiError::NotFound(format!("client {client} has no key {key}"))) }
}

fn client_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::NotFound(format!("no client {}", text.chars().take(40).collect::<String>())))
}

fn key_id_of(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::NotFound(format!("no key {}", text.chars().take(40).collect::<String>())))
}

fn key_error(e: ApiKeyError) -> ApiError {
    match e {
        ApiKeyError::NotFound(id) => ApiError::NotFound(format!("no key {id}")),
        ApiKeyError::InvalidName => ApiError::field("name", "must be 1 to 100 characters"),
        ApiKeyError::Revoked(id) => ApiError::Conflict(format!("key {id} is revoked: create a new key instead")),
        ApiKeyError::Database(e) => e.into(),
    }
}
