//! The OpenAPI 3.1 description of the API, served at `/openapi.json`. Written by
//! hand next to the router; a test checks both list the same routes.
use serde_json::{json, Map, Value};

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(name: &str) -> Value {
    json!({"type": "array", "items": schema(name)})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// One operation: summary, path parameters, optional request body schema, the
/// success status and body, and the error statuses it can return.
fn operation(summary: &str, params: &[&str], body: Option<Value>, ok: (&str, Option<Value>), errors: &[&str]) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(summary));
    if !params.is_empty() {
        let params: Vec<Value> = params.iter().map(|p| parameter(p)).collect();
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = body {
        op.insert("requestBody".into(), json!({"required": true, "content": json_content(body)}));
    }
    let mut responses = Map::new();
    let (status, ok_body) = ok;
    let mut success = json!({"description": "success"});
    if let Some(ok_body) = ok_body {
        success["content"] = json_content(ok_body);
    }
    responses.insert(status.into(), success);
    let mut all_errors: Vec<&str> = errors.to_vec();
    if op.contains_key("requestBody") {
        all_errors.extend(["400", "413", "415"]);
    }
    all_errors.push("500");
    all_errors.sort_unstable();
    all_errors.dedup();
    for code in all_errors {
        responses.insert(code.into(), json!({"$ref": format!("#/components/responses/E{code}")}));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// A change request's operation: while an upgrade runs it is queued and answered 202.
fn queueable(mut op: Value) -> Value {
    op["responses"]["202"] = json!({
        "description": "an upgrade is running: the request was checked as far as it can be without the \
            configuration, persisted, and will be applied in arrival order when the upgrade ends",
        "headers": {"Location": {"description": "/v1/requests/{id}", "schema": {"type": "string"}}},
        "content": json_content(schema("Queued"))
    });
    op
}

fn parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "vni" => (json!({"type": "integer", "minimum": 1, "maximum": 16_777_215}), "VXLAN network identifier"),
        "mac" => (json!({"type": "string", "example": "02:00:00:00:00:01"}), "MAC address"),
        "id" => (json!({"type": "integer", "minimum": 1}), "request id from a 202 reply"),
        "primary_ip" => (json!({"type": "string", "format": "ipv4", "example": "10.1.0.5"}), "the VM's primary IPv4 address"),
        _ => (json!({"type": "string"}), "port name from the [[port]] list"),
    };
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

/// A storage operation: its `{name}` is a storage user's or image's name, and
/// 409 is always possible (no `[storage]`, or an upgrade runs).
fn storage_op(summary: &str, what: &str, body: Option<Value>, ok: (&str, Option<Value>), errors: &[&str]) -> Value {
    let params: &[&str] = if what.is_empty() { &[] } else { &["name"] };
    let mut errors = errors.to_vec();
    errors.push("409");
    let mut op = operation(summary, params, body, ok, &errors);
    if !what.is_empty() {
        op["parameters"][0]["description"] = json!(format!("the {what}'s name"));
        op["parameters"][0]["schema"] = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"});
    }
    op
}

/// An operation on one unknown file of the images directory (`{file}`: its
/// name, or an image id for `<id>.img`).
fn orphan_op(summary: &str, body: Option<Value>, ok: (&str, Option<Value>)) -> Value {
    let mut op = operation(summary, &["file"], body, ok, &["404", "409"]);
    op["parameters"][0]["description"] = json!("the file's name in storage.images, or an image id for <id>.img");
    op["parameters"][0]["schema"] = json!({"type": "string"});
    op
}

/// Named parts of the document: (path or schema name, its JSON).
type Named = Vec<(&'static str, Value)>;

/// The storage routes and their schemas (docs/storage-management.md).
fn storage_paths() -> (Named, Named) {
    let name = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"});
    let bytes = json!({"type": "integer", "minimum": 0});
    let size = json!({"type": "integer", "minimum": 512, "multipleOf": 512, "maximum": 1_u64 << 50});
    let ips = json!({"type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"type": "string", "format": "ipv4"}, "description": "the addresses the user's packets may come from"});
    let user = "storage user";
    let image = "storage image";
    let paths = vec![
        ("/v1/storage/users", json!({
            "get": storage_op("List storage users (never with their secrets)", "", None, ("200", Some(list_of("StorageUser"))), &[]),
            "post": storage_op("Create a storage user: the server assigns its id and a 32-byte secret, returned this once",
                "", Some(schema("StorageUserCreate")), ("201", Some(schema("StorageUserWithSecret"))), &[]),
        })),
        ("/v1/storage/users/{name}", json!({
            "get": storage_op("Show a storage user", user, None, ("200", Some(schema("StorageUser"))), &["404"]),
            "delete": storage_op("Delete a storage user (refused while it owns images)", user, None, ("204", None), &["404"]),
        })),
        ("/v1/storage/users/{name}/ips", json!({
            "put": storage_op("Replace a storage user's addresses", user, Some(schema("StorageUserIps")),
                ("200", Some(schema("StorageUser"))), &["404"]),
        })),
        ("/v1/storage/users/{name}/quota", json!({
            "put": storage_op("Change a storage user's quota (not below what its images take)", user,
                Some(schema("StorageUserQuota")), ("200", Some(schema("StorageUser"))), &["404"]),
        })),
        ("/v1/storage/users/{name}/secret", json!({
            "post": storage_op("Rotate a storage user's secret: the new one is returned this once", user, None,
                ("200", Some(schema("StorageUserWithSecret"))), &["404"]),
        })),
        ("/v1/storage/images", json!({
            "get": storage_op("List storage images with their usage and attachment", "", None,
                ("200", Some(list_of("StorageImage"))), &[]),
            "post": storage_op("Create a sparse image of size bytes, or import a copy of a file on the switch's host",
                "", Some(schema("StorageImageCreate")), ("201", Some(schema("StorageImage"))), &[]),
        })),
        ("/v1/storage/images/{name}", json!({
            "get": storage_op("Show a storage image", image, None, ("200", Some(schema("StorageImage"))), &["404"]),
            "delete": storage_op("Delete a storage image and its file (refused while attached)", image, None,
                ("204", None), &["404"]),
        })),
        ("/v1/storage/images/{name}/grow", json!({
            "post": storage_op("Grow a storage image (never shrinks)", image, Some(schema("StorageImageGrow")),
                ("200", Some(schema("StorageImage"))), &["404"]),
        })),
        ("/v1/storage/images/{name}/clone", json!({
            "post": storage_op("Copy a storage image to a new, writable one", image, Some(schema("StorageImageClone")),
                ("201", Some(schema("StorageImage"))), &["404"]),
        })),
        ("/v1/storage/images/{name}/read-only", json!({
            "put": storage_op("Set or clear a storage image's read-only flag", image, Some(schema("StorageImageReadOnly")),
                ("200", Some(schema("StorageImage"))), &["404"]),
        })),
        ("/v1/storage/orphans", json!({
            "get": storage_op("List unknown files of the images directory: image files no image of this config \
                database accounts for; they are never removed at start", "", None,
                ("200", Some(list_of("StorageOrphan"))), &[]),
        })),
        ("/v1/storage/orphans/{file}", json!({
            "delete": orphan_op("Remove an unknown file of the images directory", None, ("204", None)),
        })),
        ("/v1/storage/orphans/{file}/adopt", json!({
            "post": orphan_op("Make an unknown file an image (its size rounded up to 512 bytes; it keeps its id when \
                this database never gave that id out)", Some(schema("StorageOrphanAdopt")),
                ("201", Some(schema("StorageImage")))),
        })),
    ];
    let user_schema = json!({"type": "object", "required": ["name", "id", "ips", "quota_bytes", "used_bytes", "images"],
        "properties": {"name": name, "id": {"type": "integer", "minimum": 1, "description": "assigned, never reused"},
            "ips": ips, "quota_bytes": bytes,
            "used_bytes": {"type": "integer", "minimum": 0, "description": "the sum of the sizes of the user's images"},
            "images": {"type": "array", "items": {"type": "string"}}}});
    let mut with_secret = user_schema.clone();
    with_secret["required"].as_array_mut().into_iter().for_each(|r| r.push(json!("secret")));
    with_secret["properties"]["secret"] = json!({"type": "string", "pattern": "^[0-9a-f]{64}$",
        "description": "the 32-byte key of the protocol's keyed MAC, as hex; shown only in this reply"});
    let schemas = vec![
        ("StorageUser", user_schema),
        ("StorageUserWithSecret", with_secret),
        ("StorageUserCreate", json!({"type": "object", "additionalProperties": false,
            "required": ["name", "ips", "quota_bytes"], "properties": {"name": name, "ips": ips, "quota_bytes": bytes}})),
        ("StorageUserIps", json!({"type": "object", "additionalProperties": false, "required": ["ips"],
            "properties": {"ips": ips}})),
        ("StorageUserQuota", json!({"type": "object", "additionalProperties": false, "required": ["quota_bytes"],
            "properties": {"quota_bytes": bytes}})),
        ("StorageImage", json!({"type": "object",
            "required": ["name", "id", "owner", "size", "read_only", "file", "usage", "attached", "last_used_unix_ms"],
            "properties": {"name": name, "id": {"type": "integer", "minimum": 1}, "owner": name, "size": size,
                "read_only": {"type": "boolean"}, "file": {"type": "string", "description": "<storage.images>/<id>.img"},
                "usage": {"type": ["integer", "null"], "description": "bytes the file occupies (st_blocks x 512); null when it is missing"},
                "attached": {"type": "boolean", "description": "a client used it within storage.attach_lease_ms"},
                "last_used_unix_ms": {"type": ["integer", "null"]}}})),
        ("StorageImageCreate", json!({"type": "object", "additionalProperties": false, "required": ["name", "owner"],
            "description": "exactly one of size and import_from",
            "properties": {"name": name, "owner": name, "size": size,
                "import_from": {"type": "string", "description": "path of a regular file relative to storage.import_dir \
                    (no \"..\", no absolute path, no symbolic link); the image is its size rounded up to 512 bytes; \
                    refused (400) when storage.import_dir is not set"},
                "read_only": {"type": "boolean", "default": false}}})),
        ("StorageImageGrow", json!({"type": "object", "additionalProperties": false, "required": ["size"],
            "properties": {"size": size}})),
        ("StorageImageClone", json!({"type": "object", "additionalProperties": false, "required": ["name"],
            "properties": {"name": name, "owner": {"type": ["string", "null"], "description": "default: the image's owner"}}})),
        ("StorageImageReadOnly", json!({"type": "object", "additionalProperties": false, "required": ["read_only"],
            "properties": {"read_only": {"type": "boolean"}}})),
        ("StorageOrphan", json!({"type": "object", "required": ["file", "path", "bytes", "usage"],
            "properties": {"file": {"type": "string", "description": "its name in storage.images (7.img, 9.img.creating)"},
                "path": {"type": "string"}, "bytes": bytes,
                "usage": {"type": "integer", "minimum": 0, "description": "bytes it occupies (st_blocks x 512)"}}})),
        ("StorageOrphanAdopt", json!({"type": "object", "additionalProperties": false, "required": ["name", "owner"],
            "properties": {"name": name, "owner": name, "read_only": {"type": "boolean", "default": false}}})),
    ];
    (paths, schemas)
}

pub fn document() -> Value {
    let vni = json!({"type": "integer", "minimum": 1, "maximum": 16_777_215});
    let mac =
        json!({"type": "string", "pattern": "^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$", "example": "02:00:00:00:01:01"});
    let ipv4 = json!({"type": "string", "format": "ipv4", "example": "192.0.2.2"});
    let opt_ipv4 = json!({"type": ["string", "null"], "format": "ipv4"});
    let name = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"});
    let flood = json!({"type": "array", "items": ipv4, "uniqueItems": true,
        "description": "remote VTEPs that get broadcast, unknown-unicast and multicast frames"});
    let counter = json!({"type": "integer", "minimum": 0});
    let error_response =
        |description: &str| json!({"description": description, "content": json_content(schema("Error"))});

    let nets = json!({
        "get": operation("List networks", &[], None, ("200", Some(list_of("Network"))), &[]),
        "post": queueable(operation("Create a network", &[], Some(schema("NetworkCreate")), ("201", Some(schema("Network"))), &["409"])),
    });
    let net = json!({
        "get": operation("Show a network", &["vni"], None, ("200", Some(schema("Network"))), &["400", "404"]),
        "put": queueable(operation("Replace a network's name and flood list", &["vni"], Some(schema("NetworkReplace")),
            ("200", Some(schema("Network"))), &["404", "409"])),
        "delete": queueable(operation("Delete a network (refused while endpoints, remotes or ports use it)", &["vni"], None,
            ("204", None), &["400", "404", "409"])),
    });
    let eps = json!({
        "get": operation("List VM endpoints", &[], None, ("200", Some(list_of("VmEndpoint"))), &[]),
        "post": queueable(operation("Add a VM endpoint", &[], Some(schema("EndpointCreate")), ("201", Some(schema("VmEndpoint"))), &["409"])),
    });
    let ep = json!({
        "get": operation("Show a VM endpoint", &["vni", "mac"], None, ("200", Some(schema("VmEndpoint"))), &["400", "404"]),
        "delete": queueable(operation("Delete a VM endpoint", &["vni", "mac"], None, ("204", None), &["400", "404"])),
    });
    let rems = json!({
        "get": operation("List remote endpoints", &[], None, ("200", Some(list_of("RemoteEndpoint"))), &[]),
        "post": queueable(operation("Add a remote endpoint", &[], Some(schema("RemoteCreate")), ("201", Some(schema("RemoteEndpoint"))), &["409"])),
    });
    let rem = json!({
        "get": operation("Show a remote endpoint", &["vni", "mac"], None, ("200", Some(schema("RemoteEndpoint"))), &["400", "404"]),
        "delete": queueable(operation("Delete a remote endpoint", &["vni", "mac"], None, ("204", None), &["400", "404"])),
    });
    let ports = json!({"get": operation("List ports with their network binding", &[], None, ("200", Some(list_of("PortStatus"))), &[])});
    let port = json!({"get": operation("Show a port", &["name"], None, ("200", Some(schema("PortStatus"))), &["404"])});
    let port_net = json!({
        "put": queueable(operation("Bind a VM-role port to a network", &["name"], Some(schema("PortBind")),
            ("200", Some(schema("PortNetwork"))), &["404", "409"])),
        "delete": queueable(operation("Unbind a port from its network", &["name"], None, ("204", None), &["404"])),
    });
    let upgrade = json!({
        "get": operation("The units bound now, the upgrade running (if any) and the finished ones", &[], None,
            ("200", Some(schema("UpgradeStatus"))), &["409"]),
        "post": operation("Upgrade the switching unit to the one in a shared library, hitlessly, through an \
            intermediate unit; answers when it is over. Config requests sent meanwhile are answered 202 and applied \
            afterwards, in order", &[], Some(schema("UpgradeStart")), ("200", Some(schema("UpgradeRecord"))),
            &["409", "422"]),
    });
    let mut notify = queueable(operation(
        "Notify an address migration (the network control system): creates the entry of (vni, primary_ip), or \
         replaces it (200). Without post_migration_ip the primary IP is only registered for the port, and the VM's \
         report sets it",
        &[],
        Some(schema("AddressMigrationNotify")),
        ("201", Some(schema("AddressMigration"))),
        &["409"],
    ));
    notify["responses"]["200"] = json!({"description": "an existing entry was replaced (or already was so)",
        "content": json_content(schema("AddressMigration"))});
    let address_migrations_path = json!({
        "get": operation("List address migrations", &[], None, ("200", Some(list_of("AddressMigration"))), &[]),
        "post": notify,
    });
    let address_migration_path = json!({
        "get": operation("Show an address migration", &["vni", "primary_ip"], None, ("200", Some(schema("AddressMigration"))),
            &["400", "404"]),
        "delete": queueable(operation("Remove an address migration", &["vni", "primary_ip"], None, ("204", None),
            &["400", "404"])),
    });
    let reports = json!({"get": operation("The last 100 VM reports of address migrations and what became of them", &[],
        None, ("200", Some(list_of("AddressReport"))), &[])});
    let request = json!({"get": operation("What became of a change request queued during an upgrade", &["id"], None,
        ("200", Some(schema("RequestStatus"))), &["400", "404"])});
    let migrations = json!({
        "get": operation("The migration information table: VMs migrating to or from this host, and recently finished ones",
            &[], None, ("200", Some(list_of("Migration"))), &[]),
        "post": operation("An event of a VM monitor hook. A repeated or late event changes nothing and is \
            answered 200 with outcome duplicate or stale", &[], Some(schema("MigrationEvent")),
            ("200", Some(schema("MigrationReply"))), &["404", "409"]),
    });
    let migration = json!({"get": operation("Show one migration", &["vni", "mac"], None,
        ("200", Some(schema("Migration"))), &["400", "404"])});
    let migration_event = json!({"type": "object", "additionalProperties": false, "required": ["event", "vni", "mac"],
                    "properties": {"event": {"enum": ["start", "paused", "resumed", "completed", "aborted"]},
                        "vni": vni, "mac": mac, "ip": opt_ipv4,
                        "source": {"type": ["string", "null"], "format": "ipv4", "description": "source host's VTEP (start)"},
                        "destination": {"type": ["string", "null"], "format": "ipv4", "description": "destination host's VTEP (start)"},
                        "port": {"type": ["string", "null"], "description": "the VM port at the destination"}}});
    let migration_schema = json!({"type": "object",
                    "required": ["vm", "ip", "source", "destination", "role", "phase", "port", "history"],
                    "properties": {
                        "vm": {"type": "object", "properties": {"vni": vni, "mac": mac}},
                        "ip": opt_ipv4, "source": ipv4, "destination": ipv4,
                        "role": {"enum": ["source", "destination"]},
                        "phase": {"enum": ["started", "paused", "resumed", "completed", "aborted"]},
                        "port": {"type": ["string", "null"]},
                        "history": {"type": "array", "description": "[phase, microseconds since the Unix epoch] pairs",
                            "items": {"type": "array"}}}});
    let migration_reply = json!({"type": "object", "required": ["outcome", "migration"], "properties": {
                    "outcome": {"enum": ["moved", "duplicate", "stale"]}, "migration": schema("Migration")}});
    let remote_endpoint = json!({"type": "object", "required": ["vni", "mac", "ip", "vtep"], "properties": {
                    "vni": vni, "mac": mac, "ip": opt_ipv4, "vtep": ipv4,
                    "source": {"enum": ["board", "migration"], "description":
                        "absent for the operator's entries; board: follows the bulletin board; migration: a migrating \
                        VM, whose frames arriving over a tunnel are relayed"}}});
    let address_migration = json!({"type": "object",
        "required": ["vni", "primary_ip", "post_migration_ip", "port", "source"],
        "properties": {
            "vni": vni, "primary_ip": ipv4,
            "post_migration_ip": {"type": ["string", "null"], "format": "ipv4",
                "description": "null: registered only, waiting for the VM's report"},
            "port": {"type": "string", "description": "the VM's vm-role port"},
            "source": {"enum": ["notification", "vm_report"], "description": "who set the post-migration IP"}}});
    let address_migration_notify = json!({"type": "object", "additionalProperties": false,
        "required": ["vni", "primary_ip", "port"],
        "properties": {"vni": vni, "primary_ip": ipv4, "post_migration_ip": opt_ipv4,
            "port": {"type": "string", "description": "a vm-role port"}}});
    let address_report = json!({"type": "object",
        "required": ["unix_us", "port", "source_mac", "source_ip", "request_id", "primary_ip", "post_migration_ip",
            "status", "outcome", "generation", "error"],
        "properties": {
            "unix_us": {"type": "integer"}, "port": {"type": "string"}, "source_mac": mac,
            "source_ip": ipv4, "request_id": {"type": "integer"}, "primary_ip": ipv4, "post_migration_ip": ipv4,
            "status": {"type": "string", "description": "what the VM was answered (docs/address-migration.md)"},
            "outcome": {"enum": ["applied", "in_effect", "refused"]},
            "generation": {"type": ["integer", "null"], "description": "applied: the generation it made"},
            "error": {"type": ["string", "null"], "description": "refused: why"}}});
    let tunnel = json!({"type": "object",
        "required": ["vtep", "state", "since_ms", "next_hop", "next_hop_mac", "in_advance", "packets_queued",
            "packets_released", "packets_dropped", "timeouts"],
        "properties": {
            "vtep": ipv4,
            "state": {"enum": ["resolving", "up", "failed"], "description": "resolving: the next hop's MAC is asked \
                for; up: known; failed: a queue waited the whole resolve timeout (docs/tunnels.md)"},
            "since_ms": {"type": "integer", "description": "when it entered state, milliseconds since the Unix epoch"},
            "next_hop": opt_ipv4.clone(), "next_hop_mac": {"type": ["string", "null"]},
            "in_advance": {"type": "boolean", "description": "brought up by the configuration, not by traffic"},
            "packets_queued": {"type": "integer"}, "packets_released": {"type": "integer"},
            "packets_dropped": {"type": "integer"}, "timeouts": {"type": "integer"}}});
    let free_json = json!({"type": "object"});
    let read = |summary: &str, body: Value| json!({"get": operation(summary, &[], None, ("200", Some(body)), &[])});

    // Built in two parts: one json! of everything would exceed the macro recursion limit.
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Configuration of a switchyard instance. Every change is validated, committed to the \
                config database, then applied to the data plane; a refused request changes nothing. Errors are \
                {\"error\": \"one sentence\", \"field\": \"the JSON field or path parameter at fault\"}."
        },
        "paths": {
            "/v1/networks": nets,
            "/v1/networks/{vni}": net,
            "/v1/endpoints": eps,
            "/v1/endpoints/{vni}/{mac}": ep,
            "/v1/remotes": rems,
            "/v1/remotes/{vni}/{mac}": rem,
            "/v1/ports": ports,
            "/v1/ports/{name}": port,
            "/v1/ports/{name}/network": port_net,
            "/v1/config": read("The whole configuration as committed, with its generation", schema("ConfigSnapshot")),
            "/v1/unit": read("Active switching unit(s)", free_json.clone()),
            "/v1/stats": read("Counters per port, per worker and per drop reason", free_json.clone()),
            "/v1/learned": read("Learned MAC entries and resolved neighbours", free_json),
            "/v1/requests/{id}": request,
            "/v1/migrations": migrations,
            "/v1/migrations/{vni}/{mac}": migration,
            "/v1/upgrade": upgrade.clone(),
            "/upgrade": upgrade,
            "/metrics": {"get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": json_content(json!({"type": "object"}))}}
            }}
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error", "field"], "properties": {
                    "error": {"type": "string", "description": "one sentence"},
                    "field": {"type": ["string", "null"], "description":
                        "the JSON field or path parameter at fault; \"body\" for a body that is not JSON; null when no field is"}
                }},
                "Network": {"type": "object", "required": ["vni", "name", "flood_vteps"], "properties": {
                    "vni": vni, "name": name, "flood_vteps": flood}},
                "NetworkCreate": {"type": "object", "additionalProperties": false, "required": ["vni", "name"],
                    "properties": {"vni": vni, "name": name, "flood_vteps": flood}},
                "NetworkReplace": {"type": "object", "additionalProperties": false, "required": ["name"],
                    "properties": {"vni": vni, "name": name, "flood_vteps": flood}},
                "VmEndpoint": {"type": "object", "required": ["vni", "mac", "ip", "port"], "properties": {
                    "vni": vni, "mac": mac, "ip": opt_ipv4, "port": {"type": "string"}}},
                "EndpointCreate": {"type": "object", "additionalProperties": false, "required": ["vni", "mac", "port"],
                    "properties": {"vni": vni, "mac": mac, "ip": opt_ipv4,
                        "port": {"type": "string", "description": "a vm-role port"}}},
                "RemoteEndpoint": remote_endpoint,
                "MigrationEvent": migration_event,
                "Migration": migration_schema,
                "MigrationReply": migration_reply,
                "RemoteCreate": {"type": "object", "additionalProperties": false, "required": ["vni", "mac", "vtep"],
                    "properties": {"vni": vni, "mac": mac, "ip": opt_ipv4, "vtep": ipv4}},
                "PortStatus": {"type": "object",
                    "required": ["name", "role", "driver", "mac", "vni"],
                    "properties": {
                        "name": {"type": "string"}, "role": {"enum": ["vm", "uplink"]}, "driver": {"type": "string"},
                        "mac": mac, "vni": {"type": ["integer", "null"]},
                        "rx_packets": counter, "rx_bytes": counter, "tx_packets": counter, "tx_bytes": counter,
                        "rx_dropped": counter, "tx_dropped": counter, "rx_relayed": counter}},
                "PortBind": {"type": "object", "additionalProperties": false, "required": ["vni"], "properties": {"vni": vni}},
                "PortNetwork": {"type": "object", "required": ["port", "vni"], "properties": {
                    "port": {"type": "string"}, "vni": vni}},
                "ConfigSnapshot": {"type": "object",
                    "required": ["generation", "networks", "endpoints", "remotes", "ports"],
                    "properties": {
                        "generation": {"type": "integer", "minimum": 0,
                            "description": "bumped by every committed change"},
                        "networks": list_of("Network"), "endpoints": list_of("VmEndpoint"),
                        "remotes": list_of("RemoteEndpoint"), "ports": list_of("PortNetwork")}},
                "Queued": {"type": "object", "required": ["request_id", "state", "status"], "properties": {
                    "request_id": {"type": "integer", "minimum": 1},
                    "state": {"const": "queued"},
                    "status": {"type": "string", "example": "/v1/requests/7", "description": "where to ask what became of it"}}},
                "RequestStatus": {"type": "object",
                    "required": ["id", "state", "method", "path", "queued_unix_us", "finished_unix_us", "status",
                        "generation", "reply", "error", "field"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "state": {"enum": ["queued", "applied", "failed"]},
                        "method": {"enum": ["POST", "PUT", "DELETE"]},
                        "path": {"type": "string", "example": "/v1/networks"},
                        "queued_unix_us": {"type": "integer"},
                        "finished_unix_us": {"type": ["integer", "null"]},
                        "status": {"type": ["integer", "null"],
                            "description": "the status it would have had if applied at once (201, 200, 204, or the error's)"},
                        "generation": {"type": ["integer", "null"], "description": "applied: the generation after it"},
                        "reply": {"description": "applied: the body it would have been answered with (null for a delete)"},
                        "error": {"type": ["string", "null"], "description": "failed: why; it changed nothing"},
                        "field": {"type": ["string", "null"], "description": "failed: the field at fault"}}},
                "UpgradeStart": {"type": "object", "additionalProperties": false, "required": ["library"],
                    "properties": {"library": {"type": "string", "example": "vrouter-v2.so",
                        "description": "the new unit's shared library: a file name in the unit directory ([upgrade] library_dir), \
                            or the absolute path of a file directly in it; the directory and the file must be owned by root \
                            and not writable by group or others (docs/unit-abi.md)"}}},
                "UnitDescription": {"type": "object", "required": ["id", "version", "library"], "properties": {
                    "id": {"type": "string", "example": "vrouter"}, "version": {"type": "string"},
                    "library": {"type": ["string", "null"], "description": "null for a unit built into switchyard"}}},
                "StepRecord": {"type": "object",
                    "required": ["step", "name", "started_unix_us", "duration_us", "detail", "ok"],
                    "properties": {
                        "step": {"type": "integer", "minimum": 0, "maximum": 8, "description": "1..8; 0 for a rollback action"},
                        "name": {"type": "string"}, "started_unix_us": {"type": "integer"},
                        "duration_us": {"type": "integer"}, "detail": {"type": "string"}, "ok": {"type": "boolean"}}},
                "UpgradeRecord": {"type": "object",
                    "required": ["id", "library", "from", "to", "outcome", "error", "started_unix_us", "duration_us",
                        "steps", "queued_applied", "queued_failed"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 1}, "library": {"type": "string"},
                        "from": schema("UnitDescription"),
                        "to": {"oneOf": [schema("UnitDescription"), {"type": "null"}]},
                        "outcome": {"enum": ["running", "upgraded", "rolled_back"]},
                        "error": {"type": ["string", "null"]},
                        "started_unix_us": {"type": "integer"}, "duration_us": {"type": "integer"},
                        "steps": list_of("StepRecord"),
                        "queued_applied": {"type": "integer", "minimum": 0},
                        "queued_failed": {"type": "integer", "minimum": 0}}},
                "UpgradeStatus": {"type": "object", "required": ["vm", "uplink", "running", "history"], "properties": {
                    "vm": schema("UnitDescription"), "uplink": schema("UnitDescription"),
                    "running": {"oneOf": [schema("UpgradeRecord"), {"type": "null"}]},
                    "history": list_of("UpgradeRecord")}},
                "UpgradeFailed": {"type": "object", "required": ["error", "field", "record"], "properties": {
                    "error": {"type": "string"}, "field": {"type": "null"}, "record": schema("UpgradeRecord")}}
            },
            "responses": {
                "E400": error_response("malformed JSON, unknown field, or an invalid value (field names it)"),
                "E404": error_response("the id in the path does not exist"),
                "E409": error_response("conflicts with the configuration (duplicate, or still referenced), or an \
                    upgrade is already running, or the switch has no switching unit to upgrade; for storage: a quota \
                    exceeded, an attached image, no [storage] in the switch's config, or an upgrade running"),
                "E413": error_response("the body is larger than 64 KiB"),
                "E415": error_response("the body is not Content-Type: application/json"),
                "E422": {"description": "the upgrade ran but the new unit was refused: it rolled back, and the \
                    previous unit (or the embedded vRouter) forwards again", "content": json_content(schema("UpgradeFailed"))},
                "E500": error_response("the config database failed; nothing was changed")
            }
        }
    });
    let paths = &mut document["paths"];
    paths["/v1/address-migrations"] = address_migrations_path;
    paths["/v1/address-migrations/reports"] = reports;
    paths["/v1/address-migrations/{vni}/{primary_ip}"] = address_migration_path;
    paths["/v1/tunnels"] = read("Tunnels to remote VTEPs: state, next hop and counters", list_of("Tunnel"));
    let schemas = &mut document["components"]["schemas"];
    schemas["AddressMigration"] = address_migration;
    schemas["AddressMigrationNotify"] = address_migration_notify;
    schemas["AddressReport"] = address_report;
    schemas["Tunnel"] = tunnel;
    schemas["ConfigSnapshot"]["properties"]["address_migrations"] = list_of("AddressMigration");
    schemas["ConfigSnapshot"]["properties"]["storage"] = json!({"type": "object",
        "description": "storage users (without secrets) and images, and the last ids given out",
        "properties": {"users": {"type": "array"}, "images": {"type": "array"},
            "last_user_id": {"type": "integer"}, "last_image_id": {"type": "integer"}}});
    let (storage_paths, storage_schemas) = storage_paths();
    for (path, item) in storage_paths {
        document["paths"][path] = item;
    }
    for (name, schema) in storage_schemas {
        document["components"]["schemas"][name] = schema;
    }
    document
}
