//! Canonical JSON: the byte form a hash is taken of.
//!
//! Object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings escaped
//! minimally (as `serde_json` does), numbers normalised: an integral value is written as an
//! integer whatever its spelling (`1`, `1.0`, `1e0`), other numbers in their shortest
//! round-trip form. Re-indenting or re-ordering a config therefore never changes a hash.

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
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    out.push_str(&(f as i64).to_string());
                } else {
                    out.push_str(
                        &serde_json::Number::from_f64(f)
                            .map_or_else(|| "null".to_string(), |n| n.to_string()),
                    );
                }
            }
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
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
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                write(&map[k], out);
            }
            out.push('}');
        }
    }
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
}
