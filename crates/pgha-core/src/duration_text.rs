//! Durations as people write them in flags and files: `250ms`, `30s`, `2m`, `1h`, `1.5`.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationTextError {
    #[error("{0:?} is not a duration (write e.g. 250ms, 30s, 2m, 1h, or a number of seconds)")]
    NotANumber(String),
    #[error("unknown unit {unit:?} in {text:?} (ms, s, m or min, h)")]
    UnknownUnit { unit: String, text: String },
}

/// Parses a non-negative number with an optional unit: `ms`, `s`, `m` or `min`, `h`; a bare
/// number counts seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationTextError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationTextError::NotANumber(text.to_string()))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(DurationTextError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| DurationTextError::NotANumber(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_bare_seconds() {
        for (text, ms) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("2m", 120_000),
            ("2min", 120_000),
            ("1h", 3_600_000),
            ("1.5", 1_500),
            (" 4s ", 4_000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration_and_says_why() {
        assert_eq!(
            parse_duration("soon"),
            Err(DurationTextError::NotANumber("soon".into()))
        );
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationTextError::NotANumber("-1s".into()))
        );
        assert_eq!(
            parse_duration("3d"),
            Err(DurationTextError::UnknownUnit {
                unit: "d".into(),
                text: "3d".into()
            })
        );
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("").is_err());
    }
}
