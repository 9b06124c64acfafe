//! Schema versions of every event type, and the upcasters that bring old payloads up to date.
//!
//! Events already written are never rewritten: a reader gets the stored payload upcast to the
//! current version, one step at a time. Adding a field or renaming one means bumping the type's
//! version here and adding the step from the previous version.

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UpcastError {
    #[error("{event_type} has schema version {found}, newer than this build knows ({current})")]
    FromTheFuture { event_type: String, found: i16, current: i16 },
    #[error("{event_type} v{version} payload is malformed: {reason}")]
    Malformed { event_type: String, version: i16, reason: String },
}

/// The schema version written for a new event of this type.
pub fn current_version(event_type: &str) -> i16 {
    match event_type {
        "UserCreated" => 2,
        _ => 1,
    }
}

/// Brings `payload`, stored at `version`, up to [`current_version`].
pub fn upcast(event_type: &str, version: i16, mut payload: Value) -> Result<Value, UpcastError> {
    let current = current_version(event_type);
    if version > current {
        return Err(UpcastError::FromTheFuture { event_type: event_type.into(), found: version, current });
    }
    for from in version..current {
        payload = upcast_step(event_type, from, payload)?;
    }
    Ok(payload)
}

fn upcast_step(event_type: &str, from: i16, payload: Value) -> Result<Value, UpcastError> {
    let malformed =
        |reason: &str| UpcastError::Malformed { event_type: event_type.into(), version: from, reason: reason.into() };
    match (event_type, from) {
        // v1 (the 0.0 prototype) stored roles in lower case and the password under `password`;
        // v2 uses the API's upper-case role names and says what the field holds.
        ("UserCreated", 1) => {
            let Value::Object(mut fields) = payload else {
                return Err(malformed("not an object"));
            };
            let role = fields
                .remove("role")
                .and_then(|r| r.as_str().map(str::to_ascii_uppercase))
                .ok_or_else(|| malformed("missing role"))?;
            let password = fields.remove("password").ok_or_else(|| malformed("missing password"))?;
            fields.insert("role".into(), json!(role));
            fields.insert("password_hash".into(), password);
            Ok(Value::Object(fields))
        }
        _ => Err(malformed("no upcaster for this version")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_created_v1_is_upcast_to_v2() {
        let v1 = json!({"user_id": "0193a1b2-0000-7000-8000-000000000001", "username": "ada", "role": "operator",
                        "password": {"secret_id": "0193a1b2-0000-7000-8000-000000000002", "ciphertext": "AAAA"}});
        let v2 = upcast("UserCreated", 1, v1).unwrap();
        assert_eq!(v2["role"], "OPERATOR");
        assert_eq!(v2["password_hash"]["ciphertext"], "AAAA");
        assert!(v2.get("password").is_none());
    }

    #[test]
    fn current_versions_pass_through_and_future_ones_are_refused() {
        let payload = json!({"a": 1});
        assert_eq!(upcast("UserDisabled", 1, payload.clone()).unwrap(), payload);
        assert!(matches!(upcast("UserCreated", 3, payload), Err(UpcastError::FromTheFuture { found: 3, .. })));
    }
}
