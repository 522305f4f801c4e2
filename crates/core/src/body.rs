//! Reading JSON request bodies field by field, so every complaint names the
//! field it is about (`stock must be an integer`, `unknown field surprise`).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON object body whose fields are taken one by one.
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid("a JSON object body is required"));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
            Err(e) => Err(ApiError::invalid(format!(
                "the body is not valid JSON: {e}"
            ))),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, name: &str) -> Result<String, ApiError> {
        self.optional_string(name)?
            .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(format!("{name} must be a string"))),
        }
    }

    pub fn integer(&mut self, name: &str) -> Result<i64, ApiError> {
        self.optional_integer(name)?
            .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    pub fn optional_integer(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => integral(&n)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("{name} must be an integer in range"))),
            Some(_) => Err(ApiError::invalid(format!("{name} must be an integer"))),
        }
    }

    /// Refuses fields nobody asked for.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            Some(name) => Err(ApiError::invalid(format!("unknown field {name}"))),
            None => Ok(()),
        }
    }
}

/// The integer `n` is, if it is one: JSON does not tell `3` from `3.0`,
/// and some clients write whole numbers with a fraction. Fractions of
/// 2^53 and beyond are refused: a double there no longer names one integer.
fn integral(n: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f.abs() < EXACT).then_some(f as i64)
    })
}

/// A client-chosen token (an idempotency key, a webhook's event id): 1 to
/// 64 visible ASCII characters; `what` names it in the error.
pub(crate) fn visible_token(s: &str, what: &str) -> Result<String, ApiError> {
    if (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Ok(s.to_string())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be 1 to 64 visible ASCII characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ApiError) -> String {
        match e {
            ApiError::InvalidRequest(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn complaints_name_the_field() {
        let mut o = JsonObject::parse(br#"{"a": 1.5, "b": "x", "c": 7, "d": 1}"#).unwrap();
        assert!(message(o.integer("a").unwrap_err()).contains('a'));
        assert!(message(o.integer("b").unwrap_err()).contains('b'));
        assert_eq!(o.integer("c").unwrap(), 7);
        assert!(message(o.string("missing").unwrap_err()).contains("missing"));
        assert!(message(o.finish().unwrap_err()).contains('d'));
    }

    #[test]
    fn whole_numbers_count_as_integers_however_written() {
        let mut o = JsonObject::parse(br#"{"a": 170.0, "b": -2e3, "c": 1e300, "d": 0.5}"#).unwrap();
        assert_eq!(o.integer("a").unwrap(), 170);
        assert_eq!(o.integer("b").unwrap(), -2000);
        assert!(o.integer("c").is_err());
        assert!(o.integer("d").is_err());
    }

    #[test]
    fn only_objects_are_bodies() {
        for bad in [&b""[..], b"  ", b"[]", b"3", b"{", b"nul"] {
            assert!(JsonObject::parse(bad).is_err());
        }
    }
}
