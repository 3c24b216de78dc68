//! JSON Schema checks: phoenix's own schemas (shipped in `schemas/`) and the user's
//! `phoenix_lxc_configs.schema.json` when it sits beside the config.
//!
//! The user's schema is applied the way the original orchestrator meant it to be, i.e.
//! like `ajv validate --spec=draft7 -c ajv-formats --all-errors`: draft 7, `format`
//! keywords checked. Each error becomes a [`Problem`] located at the offending value (or,
//! for an unexpected property, at its key). This module knows schemas, not fleet rules.

use std::sync::{Arc, OnceLock};

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Validator};

use crate::fleet::config::is_secret_field;
use crate::fleet::diag::{Problem, SourceFile};
use crate::fleet::json;

pub const LXC_SCHEMA: &str = include_str!("../../schemas/phoenix_lxc_configs.schema.json");
pub const HYPERVISOR_SCHEMA: &str =
    include_str!("../../schemas/phoenix_hypervisor_config.schema.json");

fn compile(schema: &serde_json::Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

fn builtin(cell: &'static OnceLock<Validator>, text: &str) -> &'static Validator {
    cell.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(text).expect("shipped schema is valid JSON");
        compile(&schema).expect("shipped schema compiles")
    })
}

pub fn lxc_validator() -> &'static Validator {
    static CELL: OnceLock<Validator> = OnceLock::new();
    builtin(&CELL, LXC_SCHEMA)
}

pub fn hypervisor_validator() -> &'static Validator {
    static CELL: OnceLock<Validator> = OnceLock::new();
    builtin(&CELL, HYPERVISOR_SCHEMA)
}

/// Compiles a user's schema file. A schema that does not compile is itself a problem.
pub fn user_validator(file: &Arc<SourceFile>, schema: &json::Value) -> Result<Validator, Problem> {
    compile(&schema.to_plain()).map_err(|e| {
        Problem::error("schema::invalid-schema", file, schema.span, "")
            .message(format!("this JSON Schema does not compile: {e}"))
            .label("schema")
            .help("fix the schema, or remove it: phoenix's own schema still applies")
    })
}

/// Validates `value` (parsed from `file`) and turns every schema error into a problem.
/// `origin` names the schema in messages ("phoenix's schema", or the schema file's path).
pub fn check(
    validator: &Validator,
    code: &'static str,
    origin: &str,
    file: &Arc<SourceFile>,
    value: &json::Value,
    plain: &serde_json::Value,
) -> Vec<Problem> {
    validator
        .iter_errors(plain)
        .map(|err| {
            let pointer = err.instance_path().as_str().to_string();
            let (message, at_key, help) = describe(err.kind(), &err.to_string());
            let mut pointer_for_span = pointer.clone();
            if let Some(extra) = &at_key {
                pointer_for_span.push('/');
                pointer_for_span.push_str(&extra.replace('~', "~0").replace('/', "~1"));
            }
            let span = value.locate(&pointer_for_span, at_key.is_some());
            let problem = Problem::error(code, file, span, &pointer)
                .label(format!("rejected by {origin}"))
                .help(help);
            if holds_secret(plain, &pointer) {
                // Neither the value (echoed by most messages) nor the file's text around it.
                let message = match err.kind() {
                    ValidationErrorKind::AdditionalProperties { .. }
                    | ValidationErrorKind::Required { .. } => message,
                    _ => format!("value rejected by {origin} (not shown: it holds a secret)"),
                };
                problem.message(message).without_snippet()
            } else {
                problem.message(message)
            }
        })
        .collect()
}

/// The value at `pointer` is, or contains, a field that must never be printed.
fn holds_secret(plain: &serde_json::Value, pointer: &str) -> bool {
    fn contains(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.iter().any(|(k, v)| is_secret_field(k) || contains(v))
            }
            serde_json::Value::Array(items) => items.iter().any(contains),
            _ => false,
        }
    }
    pointer.split('/').any(is_secret_field) || plain.pointer(pointer).is_some_and(contains)
}

/// A sentence for each kind of schema error, whether to point at a key, and a help line.
fn describe(kind: &ValidationErrorKind, fallback: &str) -> (String, Option<String>, String) {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalProperties { unexpected } => (
            format!(
                "{} {} {} not allowed here",
                if unexpected.len() == 1 {
                    "property"
                } else {
                    "properties"
                },
                unexpected
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if unexpected.len() == 1 { "is" } else { "are" }
            ),
            unexpected.first().cloned(),
            "remove it, or check its spelling against the schema".into(),
        ),
        K::Required { property } => (
            format!("required property {property} is missing"),
            None,
            format!("add {property} to this object"),
        ),
        K::Type { .. } => (fallback.to_string(), None, "change the value's type".into()),
        K::Enum { options } => (fallback.to_string(), None, format!("use one of {options}")),
        K::Pattern { pattern } => (
            fallback.to_string(),
            None,
            format!("the value must match the regular expression {pattern}"),
        ),
        K::Format { format } => (
            fallback.to_string(),
            None,
            format!("write a valid `{format}`"),
        ),
        K::Minimum { .. } | K::Maximum { .. } => (
            fallback.to_string(),
            None,
            "use a value inside the allowed range".into(),
        ),
        _ => (
            fallback.to_string(),
            None,
            "see the schema for what is allowed".into(),
        ),
    }
}
