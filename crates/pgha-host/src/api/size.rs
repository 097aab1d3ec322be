//! Sizes in health-check bounds (`?lag=16MB`): a number with an optional unit, read as
//! PostgreSQL reads memory units.

/// Why a `?lag=` bound was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("lag={0:?}: expected a size such as 16MB or 16777216")]
    NotANumber(String),
    #[error("lag={text:?}: unknown unit {unit:?} (use B, kB, MB, GB or TB)")]
    UnknownUnit { text: String, unit: String },
    #[error("lag={0:?}: too large")]
    TooLarge(String),
}

/// A size in bytes: a number with an optional unit (B, kB, MB, GB, TB; powers of 1024, as
/// PostgreSQL reads memory units), e.g. `16MB` or `16777216`.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::NotANumber(text.to_string()))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        other => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            })
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn lag_bounds_read_units_and_refuse_what_they_cannot_read() {
        assert_eq!(parse_size("16777216"), Ok(16 << 20));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("512kB"), Ok(512 << 10));
        assert_eq!(parse_size("1 GB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "MB",
            "16 furlongs",
            "-1",
            "99999999999999999999",
            "16777216TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
