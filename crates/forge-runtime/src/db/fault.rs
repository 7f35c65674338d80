//! Telling a statement the database refused for the data it carries (retrying the same data
//! changes nothing: split the batch, or give it up) from every other failure (the server is
//! down, restarting, refusing connections, out of resources, or the statement lost a race:
//! wait and retry).

/// Whether `e` is the database refusing the data itself: a data exception (class 22, e.g. a
/// NUL in text), an integrity constraint (23), a program limit such as a value too large (54),
/// or an exception raised by a trigger or function (`P0001`).
pub(crate) fn refused_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("22") || code.starts_with("23") || code.starts_with("54") || code == "P0001"
        }),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
