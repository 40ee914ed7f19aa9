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

fn parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "vni" => (json!({"type": "integer", "minimum": 1, "maximum": 16_777_215}), "VXLAN network identifier"),
        "mac" => (json!({"type": "string", "example": "02:00:00:00:00:01"}), "MAC address"),
        _ => (json!({"type": "string"}), "port name from the [[port]] list"),
    };
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
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
        "post": operation("Create a network", &[], Some(schema("NetworkCreate")), ("201", Some(schema("Network"))), &["409"]),
    });
    let net = json!({
        "get": operation("Show a network", &["vni"], None, ("200", Some(schema("Network"))), &["400", "404"]),
        "put": operation("Replace a network's name and flood list", &["vni"], Some(schema("NetworkReplace")),
            ("200", Some(schema("Network"))), &["404", "409"]),
        "delete": operation("Delete a network (refused while endpoints, remotes or ports use it)", &["vni"], None,
            ("204", None), &["400", "404", "409"]),
    });
    let eps = json!({
        "get": operation("List VM endpoints", &[], None, ("200", Some(list_of("VmEndpoint"))), &[]),
        "post": operation("Add a VM endpoint", &[], Some(schema("EndpointCreate")), ("201", Some(schema("VmEndpoint"))), &["409"]),
    });
    let ep = json!({
        "get": operation("Show a VM endpoint", &["vni", "mac"], None, ("200", Some(schema("VmEndpoint"))), &["400", "404"]),
        "delete": operation("Delete a VM endpoint", &["vni", "mac"], None, ("204", None), &["400", "404"]),
    });
    let rems = json!({
        "get": operation("List remote endpoints", &[], None, ("200", Some(list_of("RemoteEndpoint"))), &[]),
        "post": operation("Add a remote endpoint", &[], Some(schema("RemoteCreate")), ("201", Some(schema("RemoteEndpoint"))), &["409"]),
    });
    let rem = json!({
        "get": operation("Show a remote endpoint", &["vni", "mac"], None, ("200", Some(schema("RemoteEndpoint"))), &["400", "404"]),
        "delete": operation("Delete a remote endpoint", &["vni", "mac"], None, ("204", None), &["400", "404"]),
    });
    let ports = json!({"get": operation("List ports with their network binding", &[], None, ("200", Some(list_of("PortStatus"))), &[])});
    let port = json!({"get": operation("Show a port", &["name"], None, ("200", Some(schema("PortStatus"))), &["404"])});
    let port_net = json!({
        "put": operation("Bind a VM-role port to a network", &["name"], Some(schema("PortBind")),
            ("200", Some(schema("PortNetwork"))), &["404"]),
        "delete": operation("Unbind a port from its network", &["name"], None, ("204", None), &["404"]),
    });
    let free_json = json!({"type": "object"});
    let read = |summary: &str, body: Value| json!({"get": operation(summary, &[], None, ("200", Some(body)), &[])});

    json!({
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
                "RemoteEndpoint": {"type": "object", "required": ["vni", "mac", "ip", "vtep"], "properties": {
                    "vni": vni, "mac": mac, "ip": opt_ipv4, "vtep": ipv4}},
                "RemoteCreate": {"type": "object", "additionalProperties": false, "required": ["vni", "mac", "vtep"],
                    "properties": {"vni": vni, "mac": mac, "ip": opt_ipv4, "vtep": ipv4}},
                "PortStatus": {"type": "object",
                    "required": ["name", "role", "driver", "mac", "vni"],
                    "properties": {
                        "name": {"type": "string"}, "role": {"enum": ["vm", "uplink"]}, "driver": {"type": "string"},
                        "mac": mac, "vni": {"type": ["integer", "null"]},
                        "rx_packets": counter, "rx_bytes": counter, "tx_packets": counter, "tx_bytes": counter,
                        "rx_dropped": counter, "tx_dropped": counter}},
                "PortBind": {"type": "object", "additionalProperties": false, "required": ["vni"], "properties": {"vni": vni}},
                "PortNetwork": {"type": "object", "required": ["port", "vni"], "properties": {
                    "port": {"type": "string"}, "vni": vni}},
                "ConfigSnapshot": {"type": "object",
                    "required": ["generation", "networks", "endpoints", "remotes", "ports"],
                    "properties": {
                        "generation": {"type": "integer", "minimum": 0,
                            "description": "bumped by every committed change"},
                        "networks": list_of("Network"), "endpoints": list_of("VmEndpoint"),
                        "remotes": list_of("RemoteEndpoint"), "ports": list_of("PortNetwork")}}
            },
            "responses": {
                "E400": error_response("malformed JSON, unknown field, or an invalid value (field names it)"),
                "E404": error_response("the id in the path does not exist"),
                "E409": error_response("conflicts with the configuration: duplicate, or still referenced"),
                "E413": error_response("the body is larger than 64 KiB"),
                "E415": error_response("the body is not Content-Type: application/json"),
                "E500": error_response("the config database failed; nothing was changed")
            }
        }
    })
}
