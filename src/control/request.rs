//! Every change the API accepts, as one value: what `Control::execute` applies,
//! whether it arrives live or is replayed from the queue of an upgrade, and what
//! that queue persists (as JSON) in the config database.
use serde::{Deserialize, Serialize};

use super::core::{AddressMigrationNotify, EndpointCreate, NetworkCreate, NetworkReplace, PortBind, RemoteCreate};

/// One change request. Path parameters are kept as sent (decoded from the path)
/// and checked like the bodies when the request is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConfigRequest {
    /// `POST /v1/networks`
    CreateNetwork(NetworkCreate),
    /// `PUT /v1/networks/{vni}`
    ReplaceNetwork { vni: String, body: NetworkReplace },
    /// `DELETE /v1/networks/{vni}`
    DeleteNetwork { vni: String },
    /// `POST /v1/endpoints`
    AddEndpoint(EndpointCreate),
    /// `DELETE /v1/endpoints/{vni}/{mac}`
    DeleteEndpoint { vni: String, mac: String },
    /// `POST /v1/remotes`
    AddRemote(RemoteCreate),
    /// `DELETE /v1/remotes/{vni}/{mac}`
    DeleteRemote { vni: String, mac: String },
    /// `PUT /v1/ports/{name}/network`
    BindPort { name: String, body: PortBind },
    /// `DELETE /v1/ports/{name}/network`
    UnbindPort { name: String },
    /// `POST /v1/address-migrations`
    NotifyAddressMigration(AddressMigrationNotify),
    /// `DELETE /v1/address-migrations/{vni}/{primary_ip}`
    DeleteAddressMigration { vni: String, primary_ip: String },
}

impl ConfigRequest {
    /// The HTTP method of the route that takes this request.
    pub fn method(&self) -> &'static str {
        match self {
            ConfigRequest::CreateNetwork(_)
            | ConfigRequest::AddEndpoint(_)
            | ConfigRequest::AddRemote(_)
            | ConfigRequest::NotifyAddressMigration(_) => "POST",
            ConfigRequest::ReplaceNetwork { .. } | ConfigRequest::BindPort { .. } => "PUT",
            ConfigRequest::DeleteNetwork { .. }
            | ConfigRequest::DeleteEndpoint { .. }
            | ConfigRequest::DeleteRemote { .. }
            | ConfigRequest::UnbindPort { .. }
            | ConfigRequest::DeleteAddressMigration { .. } => "DELETE",
        }
    }

    /// The path the request was sent to (ids percent-encoded where needed).
    pub fn path(&self) -> String {
        match self {
            ConfigRequest::CreateNetwork(_) => "/v1/networks".into(),
            ConfigRequest::ReplaceNetwork { vni, .. } | ConfigRequest::DeleteNetwork { vni } => {
                format!("/v1/networks/{}", segment(vni))
            }
            ConfigRequest::AddEndpoint(_) => "/v1/endpoints".into(),
            ConfigRequest::DeleteEndpoint { vni, mac } => format!("/v1/endpoints/{}/{}", segment(vni), segment(mac)),
            ConfigRequest::AddRemote(_) => "/v1/remotes".into(),
            ConfigRequest::DeleteRemote { vni, mac } => format!("/v1/remotes/{}/{}", segment(vni), segment(mac)),
            ConfigRequest::BindPort { name, .. } | ConfigRequest::UnbindPort { name } => {
                format!("/v1/ports/{}/network", segment(name))
            }
            ConfigRequest::NotifyAddressMigration(_) => "/v1/address-migrations".into(),
            ConfigRequest::DeleteAddressMigration { vni, primary_ip } => {
                format!("/v1/address-migrations/{}/{}", segment(vni), segment(primary_ip))
            }
        }
    }

    /// The status a successful request is answered with: 201 for a create, 200
    /// for a replace or bind (with the record), 204 for a delete (no body). An
    /// address migration notification answers 200 instead when it replaced one.
    pub fn success_status(&self) -> u16 {
        match self.method() {
            "POST" => 201,
            "PUT" => 200,
            _ => 204,
        }
    }
}

/// A user-given id as a path segment, percent-encoding anything unusual.
pub(super) fn segment(text: &str) -> String {
    let mut encoded = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}
