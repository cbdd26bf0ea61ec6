//! MQTT topic filters (with `+` and `#`) and topic names, validated once, and
//! the matching rule of MQTT 3.1.1 §4.7. Knows no broker.

use std::fmt;

/// Longest topic the MQTT protocol can carry, in bytes.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// A topic filter a device's data is read from: `shellies/em3/emeter/+/power`,
/// `zigbee2mqtt/#`, or a plain topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(String);

/// A topic a message is published on: no wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

fn check_common(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a topic must not be empty".into());
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "a topic is at most {MAX_TOPIC_BYTES} bytes, this one has {}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err("a topic must not contain a NUL character".into());
    }
    Ok(())
}

impl TopicFilter {
    /// Validates a filter: `+` and `#` only as whole levels, `#` only last.
    pub fn parse(s: &str) -> Result<TopicFilter, String> {
        check_common(s)?;
        let levels: Vec<&str> = s.split('/').collect();
        let last = levels.len().saturating_sub(1);
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i != last) {
                return Err(format!(
                    "'{s}': '#' must be a whole level and the last one (e.g. 'zigbee2mqtt/#')"
                ));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!(
                    "'{s}': '+' must be a whole level (e.g. 'shellies/+/online')"
                ));
            }
        }
        Ok(TopicFilter(s.to_string()))
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` when the filter has a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.0.split('/').any(|l| l == "+" || l == "#")
    }

    /// Whether a message on `topic` is delivered to this filter
    /// (MQTT 3.1.1 §4.7: a filter starting with a wildcard does not match
    /// topics starting with `$`).
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && (self.0.starts_with('+') || self.0.starts_with('#')) {
            return false;
        }
        let mut filter = self.0.split('/');
        let mut levels = topic.split('/');
        loop {
            match (filter.next(), levels.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl TopicName {
    /// Validates a topic to publish on: not empty, no wildcards.
    pub fn parse(s: &str) -> Result<TopicName, String> {
        check_common(s)?;
        if s.contains('+') || s.contains('#') {
            return Err(format!(
                "'{s}': a topic to publish on cannot contain '+' or '#'"
            ));
        }
        Ok(TopicName(s.to_string()))
    }

    /// The topic as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(filter: &str, topic: &str) -> bool {
        TopicFilter::parse(filter).unwrap().matches(topic)
    }

    #[test]
    fn wildcards_as_mqtt_defines_them() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(!matches("a/+/c", "a/x/y/c"));
        assert!(matches("a/+", "a/"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/broker", "$SYS/broker"));
        assert!(matches("$SYS/#", "$SYS/broker"));
        assert!(matches(
            "shellies/+/emeter/0/power",
            "shellies/shellyem3-1/emeter/0/power"
        ));
    }

    #[test]
    fn misplaced_wildcards_are_refused_with_an_example() {
        for bad in ["a/#/b", "a/b#", "a+/b", "", "a\0b"] {
            assert!(TopicFilter::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TopicName::parse("solar/1/cmd/+").is_err());
        assert!(TopicName::parse("solar/1/cmd/limit").is_ok());
    }

    proptest! {
        #[test]
        fn a_plain_topic_is_a_filter_matching_exactly_itself(
            levels in proptest::collection::vec("[a-z0-9:_-]{1,6}", 1..5),
            other in "[a-z0-9/]{1,12}",
        ) {
            let topic = levels.join("/");
            let f = TopicFilter::parse(&topic).unwrap();
            prop_assert!(f.matches(&topic));
            prop_assert_eq!(f.matches(&other), other == topic);
        }

        #[test]
        fn filters_never_panic(filter in "[a-z+#/$]{0,12}", topic in "[a-z+#/$]{0,12}") {
            if let Ok(f) = TopicFilter::parse(&filter) {
                let _ = f.matches(&topic);
            }
        }
    }
}
