//! Reading a request: the `{vni}/{mac}` path, query parameters and JSON bodies,
//! each problem a 400 (413, 415) naming the field. The body rules are the
//! control API's (`control/http.rs`), kept here because `board` sits below it.
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::model::RecordKey;
use crate::store::VNI_MAX;
use crate::wire::MacAddr;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The record key of a `/v1/board/records/{vni}/{mac}` path.
pub fn record_key(vni: &str, mac: &str) -> Result<RecordKey, ApiError> {
    let digits = vni.strip_prefix('-').unwrap_or(vni);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("vni", format!("VNI {vni:?} is not a number")));
    }
    let number = vni.parse::<u32>().ok().filter(|v| (1..=VNI_MAX).contains(v));
    let Some(number) = number else {
        return Err(ApiError::bad_request("vni", format!("VNI {vni} is out of range 1..={VNI_MAX}")));
    };
    let mac: MacAddr = mac.parse().map_err(|e| ApiError::bad_request("mac", format!("MAC {mac:?}: {e}")))?;
    let key = RecordKey::new(number, mac);
    key.check().map_err(|invalid| ApiError::bad_request(invalid.field, invalid.problem))?;
    Ok(key)
}

/// Query parameters, percent-decoded; a name that is not in `known`, or given
/// twice, is refused.
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Query, ApiError> {
        let mut params = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name, "query")?;
            let value = decode(value, &name)?;
            if !known.contains(&name.as_str()) {
                let takes = if known.is_empty() { "no query parameters".to_string() } else { known.join(", ") };
                let message = format!("unknown query parameter {name:?}; this route takes {takes}");
                return Err(ApiError::bad_request(&name, message));
            }
            if params.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_request(&name, format!("query parameter {name} is given twice")));
            }
        }
        Ok(Query(params))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.text(name).ok_or_else(|| ApiError::bad_request(name, format!("query parameter {name} is missing")))
    }

    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|text| {
                text.parse().map_err(|_| {
                    ApiError::bad_request(name, format!("{name} {text:?} is not a number (0 to {})", u64::MAX))
                })
            })
            .transpose()
    }
}

fn decode(text: &str, field: &str) -> Result<String, ApiError> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::bad_request(field, format!("query parameter {field} is not UTF-8 once decoded")))
}

/// A JSON request body: `Content-Type: application/json` (else 415), at most
/// `BODY_LIMIT` bytes (else 413), a well-formed object (else 400, field "body")
/// with the right fields of the right types and no others (else 400 naming the field).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let essence = content_type.map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if essence.as_deref() != Some("application/json") {
            let got = content_type.map_or("none".to_string(), |v| format!("{v:?}"));
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("Content-Type"),
                format!("the body must be sent as Content-Type: application/json (got {got})"),
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("body"),
                format!("the body is larger than {BODY_LIMIT} bytes"),
            )
        };
        let bytes: Bytes = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(e) if is_length_limit(&e) => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("body", format!("the body could not be read: {e}"))),
        };
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Parses a body, naming the field at fault: the path serde was at for type and
/// value errors, the key itself for unknown and missing fields.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("body", "the body is empty; send a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| json_error(".", e))?;
    // Structs also deserialize from JSON arrays; only an object is a valid body.
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(ApiError::bad_request("body", format!("the body must be a JSON object, not {kind}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        json_error(&path, e.into_inner())
    })
}

fn json_error(path: &str, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let text = error.to_string();
    // serde_json ends its messages with " at line L column C": noise for one-line bodies.
    let message = text.rfind(" at line ").map_or(text.as_str(), |i| &text[..i]);
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("body", format!("the body is not valid JSON: {message}"))
        }
        Category::Data => {
            if let Some(name) = quoted_name(message, "unknown field `") {
                ApiError::bad_request(&name, message.replacen(", expected", "; expected", 1))
            } else if let Some(name) = quoted_name(message, "missing field `") {
                ApiError::bad_request(&name, message)
            } else {
                let field = if path == "." { "body" } else { path };
                ApiError::bad_request(field, format!("{field}: {message}"))
            }
        }
    }
}

/// The name between `prefix` and the next backtick.
fn quoted_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}
