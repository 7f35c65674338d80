//! What an application's functions look like from outside: their names, kinds, access rules,
//! doc comments and the JSON Schemas of their argument and result types. `app --describe`
//! prints it ([`describe`]); `forge generate ts` reads it and writes a typed client.
//!
//! A type has a schema when it implements [`schemars::JsonSchema`] (`#[derive(JsonSchema)]`,
//! re-exported by `forge`); a function whose types do not still works, and its client is typed
//! `unknown` where the schema is missing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::registry::{Access, FunctionKind, FunctionRegistration};

/// The application as `--describe` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppDescription {
    /// The Forge version the application was built with.
    pub forge_version: String,
    /// Every function, sorted by name.
    pub functions: Vec<FunctionDescription>,
}

/// One function as `--describe` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDescription {
    /// Its name: the `/rpc/{name}` path and the JSON-RPC method.
    pub name: String,
    /// Query, mutation or action.
    pub kind: FunctionKind,
    /// Callable without credentials.
    pub public: bool,
    /// The roles of which a caller needs one (empty: no role needed).
    pub roles: Vec<String>,
    /// The Rust type of its arguments, as written.
    pub args_type: String,
    /// The Rust type of its result, as written.
    pub output_type: String,
    /// The JSON Schema of its arguments (`None`: the type does not implement `JsonSchema`).
    pub args_schema: Option<Value>,
    /// The JSON Schema of its result (`None`: the type does not implement `JsonSchema`).
    pub output_schema: Option<Value>,
    /// The tables a query declares it reads (`None`: undeclared, or not a query).
    pub reads: Option<Vec<String>>,
    /// Its doc comment.
    pub doc: String,
}

/// Every function compiled into this binary, described.
pub fn describe() -> AppDescription {
    let mut functions: Vec<FunctionDescription> = inventory::iter::<FunctionRegistration>
        .into_iter()
        .map(|registration| {
            let info = (registration.info)();
            let types = (registration.types)();
            let (public, roles) = match info.access {
                Access::Public => (true, Vec::new()),
                Access::Authenticated => (false, Vec::new()),
                Access::AnyRole(roles) => (false, roles.iter().map(|r| (*r).to_owned()).collect()),
            };
            FunctionDescription {
                name: info.name.to_owned(),
                kind: info.kind,
                public,
                roles,
                args_type: info.args_type.to_owned(),
                output_type: info.output_type.to_owned(),
                args_schema: types.args,
                output_schema: types.output,
                reads: info.reads.map(|tables| tables.iter().map(|t| (*t).to_owned()).collect()),
                doc: types.doc.to_owned(),
            }
        })
        .collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    AppDescription { forge_version: env!("CARGO_PKG_VERSION").to_owned(), functions }
}
