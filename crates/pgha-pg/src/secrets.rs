//! Generated passwords and the libpq password file that hands them to PostgreSQL programs.

use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::error::Result;
use crate::instance::write_private;
use crate::osuser::RunAs;

/// A random password of `len` alphanumeric characters (no characters a passfile must escape).
pub fn generate_password(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Escapes a passfile field (`:` and `\`).
fn escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// Writes a libpq password file (mode 0600, owned by the PostgreSQL OS user) with one line per
/// (user, password), valid for any host, port and database.
pub fn write_passfile(path: &Path, entries: &[(&str, &str)], run_as: &RunAs) -> Result<()> {
    let text: String = entries
        .iter()
        .map(|(user, pw)| format!("*:*:*:{}:{}\n", escape(user), escape(pw)))
        .collect();
    write_private(path, &text, run_as)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_plain() {
        let a = generate_password(24);
        let b = generate_password(24);
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(escape("a:b\\c"), "a\\:b\\\\c");
    }
}
