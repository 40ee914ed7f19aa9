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
use switchyard_model::VNI_MAX;
use switchyard_wire::MacAddr;

/// Request bodies larger than this are refused with 413.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

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
            Err(e) if switchyard_service::json_body::is_length_limit(&e) => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("body", format!("the body could not be read: {e}"))),
        };
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body as `T`, or a 400 naming the field at fault (`json_body::parse_json`).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    switchyard_service::json_body::parse_json(bytes).map_err(|bad| ApiError::bad_request(&bad.field, bad.message))
}
