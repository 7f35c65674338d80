//! What the commands share for their output: JSON or a line of text, and database errors.

use serde_json::Value;

pub(crate) fn done(json: bool, value: Value, message: &str) -> Result<(), String> {
    if json {
        print_json(&value)
    } else {
        println!("{message}");
        Ok(())
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    println!("{}", serde_json::to_string(value).map_err(|e| e.to_string())?);
    Ok(())
}

pub(crate) fn db_error(e: sqlx::Error) -> String {
    format!("database error: {e}")
}
