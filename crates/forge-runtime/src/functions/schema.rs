//! A function's types as JSON Schemas: what the function macros record beside its
//! [`FunctionInfo`](super::FunctionInfo), found by method resolution so that a type without
//! `JsonSchema` still compiles (and is described without a schema).

use std::marker::PhantomData;

use serde_json::Value;

/// What the function macros record of a function's types, beside its [`FunctionInfo`](super::FunctionInfo).
#[derive(Clone, Debug, Default)]
pub struct FunctionTypes {
    /// The JSON Schema (2020-12) of its arguments, if their type implements `JsonSchema`.
    pub args: Option<Value>,
    /// The JSON Schema of its result, if its type implements `JsonSchema`.
    pub output: Option<Value>,
    /// Its doc comment, trimmed (`""` when it has none).
    pub doc: &'static str,
}

/// Finds a type's schema when it has one: the macros call `(&SchemaProbe::<T>::new()).schema()`
/// with both traits in scope, and method resolution picks [`HasSchema`] when `T: JsonSchema`
/// and [`NoSchema`] otherwise.
#[doc(hidden)]
pub struct SchemaProbe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> SchemaProbe<T> {
    /// A probe for `T`.
    pub const fn new() -> Self {
        SchemaProbe(PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The schema of a type that has one.
#[doc(hidden)]
pub trait HasSchema {
    /// `T`'s JSON Schema.
    fn schema(&self) -> Option<Value>;
}

impl<T: schemars::JsonSchema + ?Sized> HasSchema for SchemaProbe<T> {
    fn schema(&self) -> Option<Value> {
        Some(schemars::schema_for!(T).to_value())
    }
}

/// No schema, for a type without one.
#[doc(hidden)]
pub trait NoSchema {
    /// `None`.
    fn schema(&self) -> Option<Value>;
}

impl<T: ?Sized> NoSchema for &SchemaProbe<T> {
    fn schema(&self) -> Option<Value> {
        None
    }
}

#[cfg(test)]
// The borrow picks the trait: without it every probe would take `HasSchema`'s path.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    struct Plain;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Note {
        title: String,
    }

    #[test]
    fn a_type_with_a_schema_has_it_and_one_without_has_none() {
        let note = (&SchemaProbe::<Note>::new()).schema().expect("Note derives JsonSchema");
        assert_eq!(note["type"], "object");
        assert_eq!(note["properties"]["title"]["type"], "string");
        assert_eq!((&SchemaProbe::<Plain>::new()).schema(), None);
        let notes = (&SchemaProbe::<Vec<Note>>::new()).schema().expect("Vec<Note> has one");
        assert_eq!(notes["type"], "array");
        assert_eq!((&SchemaProbe::<()>::new()).schema().unwrap()["type"], "null");
    }
}
