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

/// `n` and the noun in the number it takes: `1 job`, `2 jobs`, `0 jobs`.
pub(crate) fn count(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(count(1, "job", "jobs"), "1 job");
        assert_eq!(count(0, "job", "jobs"), "0 jobs");
        assert_eq!(count(2, "failed attempt", "failed attempts"), "2 failed attempts");
    }
}
