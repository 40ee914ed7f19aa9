//! The REST request bodies (control API, bulletin board, inter-cloud roles): the bytes through the
//! parser every JSON route uses (`control::http::parse_json` / `json_body::parse_json`) into each body type
//! a route accepts. A refusal names a field; a body that parsed serializes and parses back to itself.
use serde::de::DeserializeOwned;
use serde::Serialize;

use switchyard::board::{LockRequest, Update};
use switchyard::control::http::parse_json;
use switchyard::control::{
    AddressMigrationNotify, EndpointCreate, MigrationEventBody, NetworkCreate, NetworkReplace, PortBind, RemoteCreate,
    StorageImageClone, StorageImageCreate, StorageImageGrow, StorageImageReadOnly, StorageUserCreate, StorageUserIps,
    StorageUserQuota, UpgradeStart,
};
use switchyard::intercloud::model::CloudRegistration;
use switchyard::intercloud::Announce;
use switchyard::json_body;

/// Fuzz body `rest_bodies`: the same bytes as every body type (limited as the server limits them).
pub fn rest_bodies(data: &[u8]) {
    if data.len() > switchyard::control::http::BODY_LIMIT {
        return;
    }
    control::<NetworkCreate>(data);
    control::<NetworkReplace>(data);
    control::<EndpointCreate>(data);
    control::<RemoteCreate>(data);
    control::<PortBind>(data);
    control::<AddressMigrationNotify>(data);
    control::<MigrationEventBody>(data);
    control::<StorageUserCreate>(data);
    control::<StorageUserIps>(data);
    control::<StorageUserQuota>(data);
    control::<StorageImageCreate>(data);
    control::<StorageImageGrow>(data);
    control::<StorageImageClone>(data);
    control::<StorageImageReadOnly>(data);
    control::<UpgradeStart>(data);
    other::<Update>(data);
    other::<LockRequest>(data);
    other::<Announce>(data);
    other::<CloudRegistration>(data);
}

fn control<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(body) = parse_json::<T>(data) {
        round_trip(&body);
    }
}

fn other<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    match json_body::parse_json::<T>(data) {
        Ok(body) => round_trip(&body),
        Err(bad) => assert!(!bad.field.is_empty(), "a refusal names the field at fault"),
    }
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &T) {
    let json = serde_json::to_vec(body).expect("a parsed body serializes");
    let again = json_body::parse_json::<T>(&json).expect("a serialized body parses");
    assert_eq!(&again, body, "body parse(serialize(body))");
}
