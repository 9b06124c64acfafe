//! The canonical encoding that event and seal hashes cover.
//!
//! It must give the same bytes for a payload before it is stored and after PostgreSQL's JSONB has
//! round-tripped it. JSONB sorts keys its own way and keeps numbers as `numeric`, so `1e16`
//! comes back as `10000000000000000` and `-0.0` as `0.0`. The encoding therefore sorts object
//! keys by their UTF-8 bytes, writes every integral number that fits 64 bits as an integer, and
//! every other number in the shortest form that reads back as the same `f64`.

use std::fmt::Write as _;

use serde_json::Value;

pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            out.push('{');
            // serde_json's map is a BTreeMap, already in key order, unless a dependency turns on
            // its `preserve_order` feature: sort only then.
            if fields.keys().zip(fields.keys().skip(1)).all(|(a, b)| a < b) {
                write_fields(fields.iter(), out);
            } else {
                let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
                sorted.sort_unstable_by_key(|(k, _)| *k);
                write_fields(sorted.into_iter(), out);
            }
            out.push('}');
        }
    }
}

fn write_fields<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    for (i, (key, value)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_canonical(value, out);
    }
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // Whole numbers that fit 64 bits come back from JSONB as plain digits, which serde_json
        // reads as i64 (below 2^63 in magnitude) or u64 (from 2^63 up to 2^64): write them so.
        if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 {
            let _ = write!(out, "{}", f as i64);
        } else if f.fract() == 0.0 && f > 0.0 && f < 1.844_674_407_370_955_2e19 {
            let _ = write!(out, "{}", f as u64);
        } else {
            // Rust's Display for f64 is the shortest representation that reads back exactly.
            let _ = write!(out, "{f:e}");
        }
    }
}

pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Runs that need no escape are copied whole; only '"', '\\' and control characters are
    // escaped (all ASCII, so a run never ends inside a multi-byte character).
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            out.push_str(&s[run..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b => {
                    let _ = write!(out, "\\u{b:04x}");
                }
            }
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Whether canonical text holds a NUL character (written `\u0000`), which JSONB cannot store.
pub fn contains_nul(canonical: &str) -> bool {
    let bytes = canonical.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'\\') {
        let escape = i + at;
        if bytes[escape + 1..].starts_with(b"u0000") {
            return true;
        }
        // Past the escaped character, so that `\\u0000` (a backslash, then text) is no NUL.
        i = escape + 2;
        if i >= bytes.len() {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn canonical(v: &Value) -> String {
        let mut s = String::new();
        write_canonical(v, &mut s);
        s
    }

    #[test]
    fn key_order_and_number_spelling_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1e16, "a": [1.5, -0.0, "é\n"], "aa": 3.0}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"aa": 3, "a": [1.50, 0, "\u00e9\u000a"], "b": 10000000000000000}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":[1.5e0,0,"é\u000a"],"aa":3,"b":10000000000000000}"#);
    }

    #[test]
    fn whole_floats_up_to_2_pow_64_encode_as_the_integers_jsonb_returns() {
        let float: Value = serde_json::from_str("[1e19, 1.2e19, -1e19, 1e20]").unwrap();
        let digits: Value = serde_json::from_str(
            "[10000000000000000000, 12000000000000000000, -10000000000000000000, 100000000000000000000]",
        )
        .unwrap();
        assert_eq!(canonical(&float), canonical(&digits));
    }

    #[test]
    fn different_values_encode_differently() {
        assert_ne!(canonical(&json!({"a": "1"})), canonical(&json!({"a": 1})));
        assert_ne!(canonical(&json!({"a": 0.1})), canonical(&json!({"a": 0.10000000000000002})));
    }

    #[test]
    fn a_nul_is_found_in_the_text_and_an_escaped_backslash_before_u0000_is_not_one() {
        assert!(contains_nul(&canonical(&json!({"a": ["x", "y\u{0}z"]}))));
        assert!(contains_nul(&canonical(&json!({"k\u{0}": 1}))));
        assert!(!contains_nul(&canonical(&json!({"a": "\\u0000"}))));
        assert!(!contains_nul(&canonical(&json!({"a": "ends with \\"}))));
        assert!(!contains_nul(&canonical(&json!({"a": "\u{1}\t\"quoted\""}))));
    }
}
