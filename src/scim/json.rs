//! Parsing a request body into JSON, with the two checks `serde_json::from_slice` cannot
//! make on its own:
//!
//! - **One spelling per attribute.** SCIM attribute names are case-insensitive (RFC 7643
//!   §2.1). An object that holds one name twice (`"userName"` twice, or `"userName"` and
//!   `"USERNAME"`) is ambiguous, and `serde_json` would keep the last one in silence: here it
//!   is refused, naming the attribute.
//! - **A bounded number of values.** A body of `[[0],[0],…]` grows about eleven times as a
//!   `serde_json::Value`. The parse counts every value and stops past
//!   [`max_values`]`(len)`, so that no body expands past a fixed multiple of its size.
//!
//! It is `serde_json`'s parser underneath (the syntax, the UTF-8 and the nesting limit are
//! its own); only the building of the `Value` is done here, by a `DeserializeSeed`.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Not JSON (serde_json's message, with the line and column).
    Syntax(String),
    /// One object names an attribute twice, in any case.
    Duplicate(String),
    /// More values than [`max_values`] allows for the body's length.
    TooManyValues(usize),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Syntax(e) => write!(f, "the body is not valid JSON: {e}"),
            BodyError::Duplicate(k) => write!(
                f,
                "the attribute {k:?} is given twice in one object (attribute names are \
                 case-insensitive, so the two are ambiguous)"
            ),
            BodyError::TooManyValues(n) => write!(
                f,
                "the body holds more than {n} JSON values, the most a body of its size may hold"
            ),
        }
    }
}

/// The most JSON values (objects, arrays, strings, numbers, booleans, nulls) a body of `len`
/// bytes may hold: one for every 8 bytes, plus 1,024. Real clients' bodies hold one value
/// for every 10 to 30 bytes; a `Value` takes 32 bytes plus its share of a container.
pub fn max_values(len: usize) -> usize {
    len / 8 + 1024
}

/// Parses `bytes` as one JSON value under the two checks of this module.
pub fn parse(bytes: &[u8]) -> Result<Value, BodyError> {
    let limit = max_values(bytes.len());
    let budget = Cell::new(limit);
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Seed {
        limit,
        budget: &budget,
        why: &why,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => Err(why
            .take()
            .unwrap_or_else(|| BodyError::Syntax(e.to_string()))),
    }
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    /// The most values the body may hold, and what is left of it.
    limit: usize,
    budget: &'a Cell<usize>,
    why: &'a Cell<Option<BodyError>>,
}

impl Seed<'_> {
    /// Counts one value; an error once the budget is spent.
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(self.fail(BodyError::TooManyValues(self.limit))),
        }
    }

    fn fail<E: serde::de::Error>(&self, why: BodyError) -> E {
        let msg = why.to_string();
        self.why.set(Some(why));
        E::custom(msg)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut out = Map::new();
        // The names seen, by their caseless key (a set, so that an object of many keys costs
        // no more than its size).
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(crate::member::caseless_key(&key).into_owned()) {
                return Err(self.fail(BodyError::Duplicate(key)));
            }
            let v = map.next_value_seed(self)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_parses_as_serde_json_parses_it() {
        let body = br#"{"userName":"a@example.com","emails":[{"value":"a@example.com","primary":true}],"n":-1,"f":1.5,"u":18446744073709551615,"z":null}"#;
        assert_eq!(
            parse(body).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
    }

    #[test]
    fn one_name_twice_in_one_object_is_refused_in_any_case_and_at_any_depth() {
        for body in [
            r#"{"userName":"a@example.com","userName":"b@example.com"}"#,
            r#"{"userName":"a@example.com","USERNAME":"b@example.com"}"#,
            r#"{"name":{"givenName":"A","GivenName":"B"}}"#,
            r#"{"Operations":[{"op":"add","OP":"remove"}]}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(BodyError::Duplicate(_))),
                "{body}"
            );
        }
        // The same name in two objects is no duplicate.
        assert!(parse(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn a_body_of_tiny_values_is_refused_past_its_budget_and_syntax_errors_stay_serde_json_s() {
        let n = 300_000;
        let mut body = String::from("[");
        for i in 0..n {
            body.push_str(if i == 0 { "[0]" } else { ",[0]" });
        }
        body.push(']');
        let limit = max_values(body.len());
        assert!(2 * n > limit);
        assert_eq!(parse(body.as_bytes()), Err(BodyError::TooManyValues(limit)));
        // Under the budget, the same shape parses.
        assert!(parse(b"[[0],[0],[0]]").is_ok());
        match parse(b"{\"a\":") {
            Err(BodyError::Syntax(e)) => assert!(e.contains("line 1"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(b"{} x"), Err(BodyError::Syntax(_))));
    }
}
