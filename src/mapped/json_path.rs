//! Where a value sits inside a device's payload: dotted keys with `[n]`
//! indices and quoted keys where needed (`ENERGY.Power[0]`,
//! `params."em:0".a_act_power`), or `$` for the whole payload. Compiled once at
//! load; evaluation never fails, it finds a value or nothing.
//!
//! ```
//! use dbus_mqtt_devices::mapped::JsonPath;
//! let p: JsonPath = r#"params."em:0".a_act_power"#.parse().unwrap();
//! let payload = serde_json::json!({"params": {"em:0": {"a_act_power": 342.8}}});
//! assert_eq!(p.find(&payload), Some(&serde_json::json!(342.8)));
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A compiled path; `$` (no segments) is the whole payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

/// One step into a payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of an object.
    Key(String),
    /// An element of an array, from 0.
    Index(usize),
}

impl JsonPath {
    /// The whole payload (`$`).
    pub fn whole() -> JsonPath {
        JsonPath {
            segments: Vec::new(),
        }
    }

    /// `true` for `$`.
    pub fn is_whole(&self) -> bool {
        self.segments.is_empty()
    }

    #[cfg(any(test, feature = "internals"))]
    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, or `None` when any step is missing.
    pub fn find<'a>(&self, payload: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(payload, |value, segment| match segment {
                Segment::Key(k) => value.as_object()?.get(k),
                Segment::Index(i) => value.as_array()?.get(*i),
            })
    }
}

impl FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<JsonPath, String> {
        let fail = |why: &str| {
            Err(format!(
                "'{s}' is not a JSON path: {why} (write e.g. ENERGY.Power, ENERGY.Power[0], params.\"em:0\".a_act_power or $)"
            ))
        };
        let mut chars = s.chars().peekable();
        let mut segments = Vec::new();
        // `$` alone, or `$` followed by `.key` / `[n]`.
        if chars.peek() == Some(&'$') {
            chars.next();
            if chars.peek().is_none() {
                return Ok(JsonPath::whole());
            }
            if !matches!(chars.peek(), Some('.') | Some('[')) {
                return fail("'$' must stand alone or be followed by '.' or '['");
            }
        }
        if chars.peek().is_none() {
            return fail("it is empty");
        }
        // `expect_key`: a key must come next (start, or after a dot).
        let mut expect_key = chars.peek() != Some(&'.') && chars.peek() != Some(&'[');
        loop {
            match chars.peek().copied() {
                None => {
                    if expect_key {
                        return fail("it ends with '.'");
                    }
                    break;
                }
                Some('.') if !expect_key => {
                    chars.next();
                    expect_key = true;
                }
                Some('[') if !expect_key || segments.is_empty() => {
                    chars.next();
                    let mut digits = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        digits.push(c);
                    }
                    match digits.parse::<usize>() {
                        Ok(i) if closed && !digits.starts_with('+') => {
                            segments.push(Segment::Index(i))
                        }
                        _ => return fail("an index is a whole number in brackets, like [0]"),
                    }
                    expect_key = false;
                }
                Some('"') if expect_key => {
                    chars.next();
                    let mut key = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some(e @ ('"' | '\\')) => key.push(e),
                                _ => return fail("inside quotes only \\\" and \\\\ are escapes"),
                            },
                            c => key.push(c),
                        }
                    }
                    if !closed {
                        return fail("a quote is not closed");
                    }
                    segments.push(Segment::Key(key));
                    expect_key = false;
                }
                Some(_) if expect_key => {
                    let mut key = String::new();
                    while let Some(&c) = chars.peek() {
                        if matches!(c, '.' | '[' | ']' | '"') {
                            break;
                        }
                        key.push(c);
                        chars.next();
                    }
                    if key.is_empty() {
                        return fail("a key is missing");
                    }
                    segments.push(Segment::Key(key));
                    expect_key = false;
                }
                Some(c) => return fail(&format!("unexpected '{c}'")),
            }
        }
        Ok(JsonPath { segments })
    }
}

/// The canonical text: keys quoted only when they need it.
impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("$");
        }
        if matches!(self.segments.first(), Some(Segment::Index(_))) {
            f.write_str("$")?;
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !(i == 0 && k.starts_with('$'));
                    if bare {
                        f.write_str(k)?;
                    } else {
                        f.write_str("\"")?;
                        for c in k.chars() {
                            if c == '"' || c == '\\' {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(s: &str) -> JsonPath {
        s.parse().unwrap()
    }

    #[test]
    fn paths_from_the_spec_find_their_values() {
        let tasmota = json!({"ENERGY": {"Power": [52, 5], "Total": 514.153}});
        assert_eq!(path("ENERGY.Total").find(&tasmota), Some(&json!(514.153)));
        assert_eq!(path("ENERGY.Power[0]").find(&tasmota), Some(&json!(52)));
        assert_eq!(path("ENERGY.Power[1]").find(&tasmota), Some(&json!(5)));
        assert_eq!(path("ENERGY.Power[2]").find(&tasmota), None);
        let rpc = json!({"params": {"em:0": {"a_act_power": 1.5}}});
        assert_eq!(
            path(r#"params."em:0".a_act_power"#).find(&rpc),
            Some(&json!(1.5))
        );
        assert_eq!(path("$").find(&json!(3)), Some(&json!(3)));
        assert_eq!(path("$.ENERGY.Total").find(&tasmota), Some(&json!(514.153)));
        assert_eq!(path("$[1]").find(&json!([1, 2])), Some(&json!(2)));
        assert_eq!(path("a.b").find(&json!({"a": 1})), None);
    }

    #[test]
    fn bad_paths_are_refused_with_examples() {
        for bad in [
            "", ".", "a.", "a..b", "a[x]", "a[-1]", "a[1", "\"open", "a\"b\"", "$x", "a]",
        ] {
            let e = bad.parse::<JsonPath>().unwrap_err();
            assert!(e.contains("ENERGY.Power"), "{bad}: {e}");
        }
    }

    #[test]
    fn canonical_text_quotes_only_where_needed() {
        assert_eq!(path(r#"params."em:0".x"#).to_string(), r#"params."em:0".x"#);
        assert_eq!(path(r#""ENERGY".Power"#).to_string(), "ENERGY.Power");
        assert_eq!(path("$.a[0]").to_string(), "a[0]");
        assert_eq!(path("$[0].a").to_string(), "$[0].a");
        assert_eq!(path("$").to_string(), "$");
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            any::<String>().prop_map(Segment::Key),
            (0usize..100).prop_map(Segment::Index),
        ]
    }

    proptest! {
        #[test]
        fn text_round_trips(segments in proptest::collection::vec(segment(), 0..5)) {
            let p = JsonPath { segments };
            let again: JsonPath = p.to_string().parse().unwrap();
            prop_assert_eq!(again, p);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<JsonPath>();
        }
    }
}
