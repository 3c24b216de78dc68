//! Canonical JSON: the byte form a hash is taken of.
//!
//! Object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings escaped
//! minimally (as `serde_json` does), numbers normalised: an integral value is written as an
//! integer whatever its spelling (`1`, `1.0`, `1e0`), other numbers in their shortest
//! round-trip form. Re-indenting or re-ordering a config therefore never changes a hash.

use std::fmt::Write;

use serde_json::Value;

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // Writing into a String cannot fail.
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    let _ = write!(out, "{}", f as i64);
                } else {
                    out.push_str(
                        &serde_json::Number::from_f64(f)
                            .map_or_else(|| "null".to_string(), |n| n.to_string()),
                    );
                }
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here, whatever order the map keeps (serde_json's `preserve_order`).
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string escaped exactly as `serde_json` writes it: `"` and `\\`, the short escapes
/// `\b \f \n \r \t`, other control characters as `\u00xx`, everything else as is.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_compact_normalised() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1.0, 1e2, 0.5], "a": {"z": "\u00e9\n", "y": null} }"#)
                .unwrap();
        assert_eq!(
            to_string(&v),
            r#"{"a":{"y":null,"z":"é\n"},"b":[1,100,0.5]}"#
        );
        assert_eq!(to_string(&json!(-0.0)), "0");
        assert_eq!(to_string(&json!(u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        all.push_str("é€😀\u{7f}\u{2028}");
        for s in [all.as_str(), "", "plain", "\"", "a\\b", "\u{0}x\u{1f}"] {
            assert_eq!(
                to_string(&json!(s)),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
            assert_eq!(
                to_string(&json!({ s: 1 })),
                format!("{{{}:1}}", serde_json::to_string(s).unwrap())
            );
        }
    }
}
