//! JSON request bodies of the REST services (the control API, the bulletin
//! board, the inter-cloud roles): a body is one JSON object, and a bad one is
//! refused naming the field at fault. Each service turns `BadBody` into its
//! own 400 reply.
use serde::de::DeserializeOwned;

/// Why a body was refused: the field at fault ("body" for the body as a whole).
#[derive(Debug, PartialEq, Eq)]
pub struct BadBody {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> BadBody {
    BadBody { field: field.to_string(), message: message.into() }
}

/// Parses a body, naming the field at fault: the path serde was at for type and
/// value errors, the key itself for unknown and missing fields.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BadBody> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("body", "the body is empty; send a JSON object"));
    }
    // Structs also deserialize from JSON arrays; only an object is a valid body.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| json_error(".", e))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(bad("body", format!("the body must be a JSON object, not {kind}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        json_error(&path, e.into_inner())
    })
}

/// Whether reading a body failed because it is larger than the limit.
pub fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn json_error(path: &str, error: serde_json::Error) -> BadBody {
    use serde_json::error::Category;
    let text = error.to_string();
    // serde_json ends its messages with " at line L column C": noise for one-line bodies.
    let message = text.rfind(" at line ").map_or(text.as_str(), |i| &text[..i]);
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            bad("body", format!("the body is not valid JSON: {message}"))
        }
        Category::Data => {
            if let Some(name) = quoted_name(message, "unknown field `") {
                bad(&name, message.replacen(", expected", "; expected", 1))
            } else if let Some(name) = quoted_name(message, "missing field `") {
                bad(&name, message)
            } else {
                let field = if path == "." { "body" } else { path };
                match message.strip_prefix("invalid type: ") {
                    Some(_) => {
                        let message = message.replace("expected i64", "expected an integer");
                        bad(field, format!("{field} has the wrong type: {message}"))
                    }
                    // A value of the right type that does not parse (an address, a MAC).
                    None => bad(field, format!("{field}: {message}")),
                }
            }
        }
    }
}

/// The name between `prefix` and the next backtick; an empty key is named as JSON spells it, `""`, so the
/// refusal still names a field.
fn quoted_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let name = &rest[..rest.find('`')?];
    Some(if name.is_empty() { "\"\"".to_string() } else { name.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only parsed
    struct Body {
        vni: i64,
    }

    #[test]
    fn an_unknown_empty_key_is_named() {
        // Found by the rest_bodies fuzz target (fuzz/regressions/rest_bodies/empty-key).
        let bad = parse_json::<Body>(br#"{"vni": 1, "": 2}"#).unwrap_err();
        assert_eq!(bad.field, r#""""#);
        assert!(bad.message.starts_with("unknown field ``"), "{}", bad.message);
        assert_eq!(parse_json::<Body>(br#"{"vnx": 1}"#).unwrap_err().field, "vnx");
    }
}
