//! The OpenAPI 3.1 document of `/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the types in [`types`](super::types), served at `GET /v1/openapi.json`.
//!
//! What every operation shares is added here once rather than on each handler: the security
//! schemes (a bearer API key or `X-Api-Key`), the `Idempotency-Key` header of every POST, the
//! `Idempotent-Replayed` and `RateLimit` headers, and the RFC 7807 problems each kind of route
//! can answer. The kinds the application exposes are written into `SubmitJob.kind` as an enum.

use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder, Schema,
    Type,
};
use utoipa::{Modify, OpenApi};

use super::webhooks::routes as webhooks;
use super::{clients, events, jobs, reports};
use crate::functions::FieldError;
use crate::gateway::Problem;

/// The generated part of the document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Forge job API",
        version = "1",
        description = "Submit jobs, follow them (events as pages or Server-Sent Events, signed webhooks) and \
                       fetch their reports. Errors are RFC 7807 problems (`application/problem+json`) whose \
                       `type` is `urn:forge:problem:<slug>`; a 422 lists the fields at fault in `errors`."
    ),
    paths(
        jobs::submit,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::retry,
        reports::report,
        events::events,
        clients::create,
        clients::list,
        clients::get,
        clients::keys,
        clients::create_key,
        clients::rotate_key,
        clients::revoke_key,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::enable,
        webhooks::disable,
        webhooks::recover,
        webhooks::resend,
        webhooks::deliveries,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&Shared),
    tags(
        (name = "jobs", description = "A client's jobs (`jobs:read`, `jobs:write`)"),
        (name = "clients", description = "Clients and their keys (the operator role)"),
        (name = "webhooks", description = "A client's webhook endpoints (`webhooks`)"),
    )
)]
struct ApiDoc;

/// The document for an application exposing `kinds` to clients.
pub fn document<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Document {
    let mut doc = ApiDoc::openapi();
    let kinds: Vec<&str> = kinds.into_iter().collect();
    if let Some(RefOr::T(Schema::Object(submit))) = doc.components.as_mut().and_then(|c| c.schemas.get_mut("SubmitJob"))
        && let Some(RefOr::T(Schema::Object(kind))) = submit.properties.get_mut("kind")
    {
        kind.enum_values = Some(kinds.iter().map(|k| serde_json::Value::from(*k)).collect());
    }
    doc
}

/// Adds what every operation shares (see the module doc).
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer forge_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("X-Api-Key", "An API key"))),
        );
        doc.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let has_id = path.contains('{');
            for (method, operation) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                if let Some(operation) = operation {
                    shared_by(operation, method == HttpMethod::Post, has_id);
                }
            }
        }
    }
}

/// The problems a route can answer beyond its own responses, and the shared headers.
fn shared_by(operation: &mut Operation, post: bool, has_id: bool) {
    let mut problems: Vec<(&str, &str)> = vec![
        ("400", "Malformed: a bad query parameter, header or JSON body"),
        ("401", "No credentials, or credentials that do not hold"),
        ("403", "The key is not a client's (or an operator's, for clients), or lacks the scope"),
        ("429", "Too many requests for this client: see `RateLimit` and `Retry-After`"),
        ("503", "The database cannot be reached: retry after `Retry-After`"),
    ];
    if has_id {
        problems.push(("404", "Nothing there, or not the caller's"));
    }
    if post {
        problems.extend([
            ("409", "The resource's state does not allow this, or the same `Idempotency-Key` is in flight"),
            ("413", "The body is too large"),
            ("415", "The body is not `application/json`"),
            ("422", "The body does not fit, or the `Idempotency-Key` was used for another request"),
        ]);
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        parameters.push(RefOr::T(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes the POST happen once per client and key (1 to 255 visible ASCII characters, kept 24 h \
                     by default): a repeat gets the first response",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[\\x21-\\x7e]+$")),
                ))
                .build(),
        ));
    }
    let text_header = |d: &str| {
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some(d))
                .build(),
        )
    };
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && status.starts_with('2')
        {
            response.headers.insert(
                "RateLimit".to_owned(),
                text_header("The client's remaining quota: `\"default\";r=<left>;t=<seconds>`"),
            );
            response.headers.insert(
                "RateLimit-Policy".to_owned(),
                text_header("The client's quota: `\"default\";q=<burst>;w=<seconds>`"),
            );
            if post {
                response.headers.insert(
                    "Idempotent-Replayed".to_owned(),
                    text_header("`true` when this is the stored response of an earlier request with the same key"),
                );
            }
        }
    }
    for (status, description) in problems {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                    )
                    .build(),
            )
        });
    }
    operation.responses.responses.entry("default".to_owned()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("An unexpected error (500), with the request's id to quote")
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build(),
        )
    });
}
