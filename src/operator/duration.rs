//! Durations as an operator types them (`--not-seen-for 30d`, `"not_seen_for": "12h"`):
//! one or more `<whole number><unit>` groups, units `s`, `m`, `h`, `d`, `w`
//! (`90m`, `1d12h`). Outside input: every failure is an error with the reason, never a panic.

use std::time::Duration;

/// The longest duration accepted (100 years): beyond it a typo is more likely than intent.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write e.g. 30d, 12h, 90m)")]
    Empty,
    #[error("{0:?} is not a duration: write a number followed by s, m, h, d or w (e.g. 30d)")]
    Malformed(String),
    #[error("{0:?} is longer than 100 years")]
    TooLong(String),
}

fn unit_seconds(unit: char) -> Option<u64> {
    match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3_600),
        'd' => Some(86_400),
        'w' => Some(7 * 86_400),
        _ => None,
    }
}

/// Parses `30d`, `12h`, `1d12h`, `45s`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_owned());
    let too_long = || DurationError::TooLong(text.to_owned());
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in trimmed.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or_else(too_long)?;
            number = Some(n);
        } else {
            let seconds = unit_seconds(c).ok_or_else(malformed)?;
            let n = number.take().ok_or_else(malformed)?;
            total = n
                .checked_mul(seconds)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(too_long)?;
        }
    }
    if number.is_some() {
        return Err(malformed());
    }
    let duration = Duration::from_secs(total);
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

/// A duration in the largest units that keep it exact enough to read (`3d 4h`, `12m`, `40s`).
pub fn human(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3_599 => format!("{}m", seconds / 60),
        3_600..=86_399 => format!("{}h {}m", seconds / 3_600, seconds % 3_600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_groups() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("1d12h"), Ok(Duration::from_secs(36 * 3_600)));
        assert_eq!(parse(" 90m "), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["30", "d", "3x", "-1d", "1.5d", "", "99999999999999999999d", "6000w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(human(3 * 86_400 + 4 * 3_600 + 5), "3d 4h");
        assert_eq!(human(40), "40s");
    }
}
