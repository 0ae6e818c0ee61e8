//! The text format (printer and parser). Placeholder until implemented.

/// Quotes `s` unless it is a bare identifier (`[A-Za-z0-9_./-]+`).
pub fn quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
    {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}
