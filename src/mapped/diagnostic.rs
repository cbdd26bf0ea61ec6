//! What is wrong with a declaration or preset, said once, with where it was
//! written (`file:line:column`) and which device it concerns. Knows no
//! declaration keys.

use std::fmt;

use super::tree::At;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, nothing was left out (a user preset replacing a
    /// built-in one, a topic declaration shadowed by a file).
    Warning,
    /// Something was left out: a device, a preset or a whole file.
    Error,
}

/// One finding, ready to print: `file:line:column: device 'x': message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `file:line:column`, `file`, or a topic.
    pub place: String,
    /// The device concerned, if any.
    pub device: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error at `at`.
    pub fn error(at: &At, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            place: at.to_string(),
            device: None,
            message: message.into(),
        }
    }

    /// A warning at `at`.
    pub fn warning(at: &At, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(at, message)
        }
    }

    /// The same finding, about device `id`.
    pub fn for_device(mut self, id: &str) -> Diagnostic {
        if self.device.is_none() && !id.is_empty() {
            self.device = Some(id.to_string());
        }
        self
    }

    /// `true` for an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.place.is_empty() {
            write!(f, "{}: ", self.place)?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(device) = &self.device {
            write!(f, "device '{device}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// `" (did you mean 'x'?)"` when one of `known` is a likely typo of `word`,
/// else `""`. Typos must never pass silently, and a hint makes them quick to fix.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!(" (did you mean '{k}'?)"),
        None => String::new(),
    }
}

/// Levenshtein distance over characters, ignoring ASCII case.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let delete = previous.get(j + 1).copied().unwrap_or(0) + 1;
            let insert = current.get(j).copied().unwrap_or(0) + 1;
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["stale_after", "on_stale", "service"];
        assert_eq!(
            did_you_mean("stale_afer", keys),
            " (did you mean 'stale_after'?)"
        );
        assert_eq!(did_you_mean("Service", keys), " (did you mean 'service'?)");
        assert_eq!(did_you_mean("colour", keys), "");
    }

    #[test]
    fn displays_place_device_and_message() {
        let d = Diagnostic {
            severity: Severity::Error,
            place: "devices.toml:3:1".into(),
            device: Some("grid".into()),
            message: "unknown key 'x'".into(),
        };
        assert_eq!(
            d.to_string(),
            "devices.toml:3:1: device 'grid': unknown key 'x'"
        );
    }
}
