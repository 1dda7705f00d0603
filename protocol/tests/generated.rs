//! The JSON Schema and TypeScript definitions of the protocol are generated
//! from its Rust types and committed (`protocol/schema/`, `protocol/typescript/`).
//! This test fails when they are stale; regenerate them with
//!
//! ```text
//! UPDATE_PROTOCOL_FILES=1 cargo test -p runner-protocol --test generated
//! ```

use runner_protocol::{ClientMessage, Event, ServerMessage};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const UPDATE_VAR: &str = "UPDATE_PROTOCOL_FILES";

fn root_schema<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// Every generated file: path relative to `protocol/`, and contents.
fn generated_files() -> Vec<(&'static str, String)> {
    let client = root_schema::<ClientMessage>();
    let server = root_schema::<ServerMessage>();
    let event = root_schema::<Event>();
    let pretty =
        |schema: &Schema| serde_json::to_string_pretty(schema).expect("schema is JSON") + "\n";
    let typescript = typescript(&[client.as_value(), server.as_value()]);
    vec![
        ("schema/client_message.json", pretty(&client)),
        ("schema/server_message.json", pretty(&server)),
        ("schema/event.json", pretty(&event)),
        ("typescript/protocol.d.ts", typescript),
    ]
}

#[test]
fn the_committed_schema_and_typescript_files_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os(UPDATE_VAR).is_some();
    let mut stale: Vec<PathBuf> = Vec::new();
    for (relative, contents) in generated_files() {
        let path = root.join(relative);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(contents.as_str()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        } else {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "these generated files are stale or missing: {}\nregenerate them with `{UPDATE_VAR}=1 cargo test -p runner-protocol --test generated` and commit them",
        stale
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn the_typescript_names_every_message_type() {
    let ts = &generated_files()[3].1;
    for name in runner_protocol::CLIENT_MESSAGE_TYPES.iter().chain(&[
        "run_status",
        "node_status",
        "lagged",
        "state",
    ]) {
        assert!(
            ts.contains(&format!("type: \"{name}\"")),
            "no `{name}` in the TypeScript definitions"
        );
    }
}

// ---------------------------------------------------------------------------
// A small JSON Schema → TypeScript translation, for the subset schemars emits.

/// One `.d.ts` with every definition of `roots` (their `$defs` merged) and
/// the roots themselves under their titles.
fn typescript(roots: &[&Value]) -> String {
    let mut defs: Map<String, Value> = Map::new();
    for root in roots {
        if let Some(Value::Object(more)) = root.get("$defs") {
            for (name, schema) in more {
                defs.insert(name.clone(), schema.clone());
            }
        }
        let title = root["title"]
            .as_str()
            .expect("root schema has a title")
            .to_string();
        let mut schema = root.as_object().unwrap().clone();
        schema.remove("$defs");
        schema.remove("$schema");
        schema.remove("title");
        defs.insert(title, Value::Object(schema));
    }
    let mut names: Vec<&String> = defs.keys().collect();
    names.sort();
    let mut out = String::from(
        "// Generated from the Rust types of the `runner-protocol` crate; do not edit.\n\
         // Regenerate: UPDATE_PROTOCOL_FILES=1 cargo test -p runner-protocol --test generated\n",
    );
    for name in names {
        let schema = &defs[name];
        out.push('\n');
        doc_comment(&mut out, schema, "");
        let is_plain_object = schema.get("properties").is_some()
            && schema.get("oneOf").is_none()
            && schema.get("anyOf").is_none();
        if is_plain_object {
            let _ = writeln!(out, "export interface {name} {}", object_body(schema, ""));
        } else {
            let _ = writeln!(out, "export type {name} = {};", ts_type(schema, ""));
        }
    }
    out
}

fn doc_comment(out: &mut String, schema: &Value, indent: &str) {
    if let Some(text) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{indent}/**");
        for line in text.lines() {
            let _ = writeln!(out, "{indent} * {}", line.trim_end().replace("*/", "*\\/"));
        }
        let _ = writeln!(out, "{indent} */");
    }
}

fn object_body(schema: &Value, indent: &str) -> String {
    let inner = format!("{indent}  ");
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::from("{\n");
    if let Some(Value::Object(properties)) = schema.get("properties") {
        // The tag (`type`, `kind`) first, then `id`, then the rest by name.
        let mut keys: Vec<&String> = properties.keys().collect();
        keys.sort_by_key(|k| {
            (
                properties[k.as_str()].get("const").is_none(),
                k.as_str() != "id",
            )
        });
        for key in keys {
            let property = &properties[key];
            doc_comment(&mut out, property, &inner);
            let optional = if required.contains(&key.as_str()) {
                ""
            } else {
                "?"
            };
            let _ = writeln!(
                out,
                "{inner}{key}{optional}: {};",
                ts_type(property, &inner)
            );
        }
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        let _ = writeln!(
            out,
            "{inner}[key: string]: {};",
            ts_type(additional, &inner)
        );
    }
    out.push_str(indent);
    out.push('}');
    out
}

fn ts_type(schema: &Value, indent: &str) -> String {
    let schema = match schema {
        Value::Bool(true) => return "unknown".into(),
        Value::Bool(false) => return "never".into(),
        Value::Object(_) => schema,
        other => panic!("unexpected schema {other}"),
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap().to_string();
    }
    if let Some(constant) = schema.get("const") {
        return constant.to_string();
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let union = |key: &str| -> Option<String> {
        schema.get(key).and_then(Value::as_array).map(|variants| {
            let nested = format!("{indent}  ");
            let parts: Vec<String> = variants.iter().map(|v| ts_type(v, &nested)).collect();
            let separator = if parts.iter().any(|p| p.contains('\n')) {
                format!("\n{indent}  | ")
            } else {
                " | ".into()
            };
            parts.join(&separator)
        })
    };
    let one_of = union("oneOf").or_else(|| union("anyOf"));
    if schema.get("properties").is_some() {
        let base = object_body(schema, indent);
        return match one_of {
            Some(variants) => format!("{base} & (\n{indent}  | {variants}\n{indent})"),
            None => base,
        };
    }
    if let Some(variants) = one_of {
        return variants;
    }
    match schema.get("type") {
        Some(Value::String(name)) => scalar(name, schema, indent),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| scalar(n.as_str().expect("type name"), schema, indent))
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "unknown".into(),
    }
}

fn scalar(name: &str, schema: &Value, indent: &str) -> String {
    match name {
        "string" => "string".into(),
        "integer" | "number" => "number".into(),
        "boolean" => "boolean".into(),
        "null" => "null".into(),
        "array" => {
            let item = schema
                .get("items")
                .map_or("unknown".to_string(), |i| ts_type(i, indent));
            if item.contains(' ') {
                format!("Array<{item}>")
            } else {
                format!("{item}[]")
            }
        }
        "object" => match schema.get("additionalProperties") {
            Some(additional) if additional.is_object() => {
                format!("Record<string, {}>", ts_type(additional, indent))
            }
            _ => "Record<string, unknown>".into(),
        },
        other => panic!("unexpected JSON type `{other}`"),
    }
}
