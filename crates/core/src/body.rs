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
            Some(Value::Number(n)) => n
                .as_i64()
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
    fn only_objects_are_bodies() {
        for bad in [&b""[..], b"  ", b"[]", b"3", b"{", b"nul"] {
            assert!(JsonObject::parse(bad).is_err());
        }
    }
}
