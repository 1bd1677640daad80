//! Pure translation between the engine's JSON (API 1.41 field names) and the model.
//! Working on JSON keeps Lifeboat independent of the client library's type names.

use std::collections::BTreeMap;

use lifeboat_model::{
    ComposeInfo, ContainerConfig, Healthcheck, MountKind, MountSpec, NetworkAttachment,
    PortBinding, RestartPolicy,
};
use serde_json::{Map, Value, json};

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
fn i(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or_default()
}
fn b(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or_default()
}
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The container's configuration from its inspect document. Network drivers are not in the
/// inspect data; `network_driver` looks them up.
pub fn config_from_inspect(
    inspect: &Value,
    network_driver: &dyn Fn(&str) -> String,
) -> ContainerConfig {
    let null = Value::Null;
    let cfg = inspect.get("Config").unwrap_or(&null);
    let host = inspect.get("HostConfig").unwrap_or(&null);
    let id = s(inspect, "Id");
    let short_id = id.get(..12).unwrap_or_default().to_string();
    // The engine defaults the hostname to the short ID; only a chosen hostname is kept.
    let hostname =
        Some(s(cfg, "Hostname")).filter(|h| !h.is_empty() && !id.starts_with(h.as_str()));
    let port_bindings = host
        .get("PortBindings")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(port, list)| {
                    let list = list.as_array().cloned().unwrap_or_default();
                    let bindings = list
                        .iter()
                        .map(|b| PortBinding {
                            host_ip: s(b, "HostIp"),
                            host_port: s(b, "HostPort"),
                        })
                        .collect();
                    (port.clone(), bindings)
                })
                .collect()
        })
        .unwrap_or_default();
    let networks = inspect
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(name, ep)| NetworkAttachment {
                    name: name.clone(),
                    aliases: strings(ep.get("Aliases"))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|a| *a != short_id && !id.starts_with(a.as_str()))
                        .collect(),
                    driver: network_driver(name),
                })
                .collect()
        })
        .unwrap_or_default();
    let healthcheck = cfg
        .get("Healthcheck")
        .filter(|h| h.is_object())
        .map(|h| Healthcheck {
            test: strings(h.get("Test")).unwrap_or_default(),
            interval_ns: i(h, "Interval"),
            timeout_ns: i(h, "Timeout"),
            start_period_ns: i(h, "StartPeriod"),
            retries: i(h, "Retries"),
        });
    let env = strings(cfg.get("Env")).unwrap_or_default();
    crate::secrets::remember_env(&env);
    ContainerConfig {
        image: s(cfg, "Image"),
        image_id: s(inspect, "Image"),
        repo_digests: Vec::new(),
        entrypoint: strings(cfg.get("Entrypoint")),
        cmd: strings(cfg.get("Cmd")),
        env,
        labels: string_map(cfg.get("Labels")),
        user: s(cfg, "User"),
        working_dir: s(cfg, "WorkingDir"),
        hostname: hostname.unwrap_or_default(),
        domainname: s(cfg, "Domainname"),
        tty: b(cfg, "Tty"),
        open_stdin: b(cfg, "OpenStdin"),
        stop_signal: Some(s(cfg, "StopSignal")).filter(|x| !x.is_empty()),
        stop_timeout: cfg.get("StopTimeout").and_then(Value::as_i64),
        exposed_ports: cfg
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        port_bindings,
        network_mode: s(host, "NetworkMode"),
        networks,
        restart_policy: RestartPolicy {
            name: host
                .pointer("/RestartPolicy/Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            maximum_retry_count: host
                .pointer("/RestartPolicy/MaximumRetryCount")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
        },
        healthcheck,
        memory: i(host, "Memory"),
        memory_swap: i(host, "MemorySwap"),
        memory_reservation: i(host, "MemoryReservation"),
        nano_cpus: i(host, "NanoCpus"),
        cpu_shares: i(host, "CpuShares"),
        mounts: mounts(inspect),
        cap_add: strings(host.get("CapAdd")).unwrap_or_default(),
        cap_drop: strings(host.get("CapDrop")).unwrap_or_default(),
        extra_hosts: strings(host.get("ExtraHosts")).unwrap_or_default(),
        links: strings(host.get("Links"))
            .unwrap_or_default()
            .iter()
            .filter_map(|l| link_from_inspect(l))
            .collect(),
        privileged: b(host, "Privileged"),
        init: host.get("Init").and_then(Value::as_bool),
        was_running: inspect
            .pointer("/State/Running")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn mounts(inspect: &Value) -> Vec<MountSpec> {
    let list = inspect
        .get("Mounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|m| {
            let kind = match s(m, "Type").as_str() {
                "volume" => MountKind::Volume,
                "bind" => MountKind::Bind,
                "tmpfs" => MountKind::Tmpfs,
                _ => return None,
            };
            let source = match kind {
                MountKind::Volume => s(m, "Name"),
                MountKind::Bind => s(m, "Source"),
                MountKind::Tmpfs => String::new(),
            };
            Some(MountSpec {
                kind,
                source,
                destination: s(m, "Destination"),
                read_only: !m.get("RW").and_then(Value::as_bool).unwrap_or(true),
                driver: s(m, "Driver"),
                volume_labels: BTreeMap::new(),
            })
        })
        .collect()
}

/// Compose project and service from the labels compose puts on its containers.
pub fn compose_info(config: &ContainerConfig) -> Option<ComposeInfo> {
    let project = config.label("com.docker.compose.project")?;
    Some(ComposeInfo {
        project: project.to_string(),
        service: config
            .label("com.docker.compose.service")
            .unwrap_or_default()
            .to_string(),
        working_dir: config
            .label("com.docker.compose.project.working_dir")
            .map(str::to_string),
        config_files: config
            .label("com.docker.compose.project.config_files")
            .map(str::to_string),
        depends_on: Vec::new(),
    })
}

/// The body of a container-create call recreating `config`. Volume mounts refer to volumes
/// by name, binds by host path; only the first network is attached here.
pub fn create_body(config: &ContainerConfig) -> Value {
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            body.insert(k.to_string(), v);
        }
    };
    put("Image", json!(config.image));
    put("Entrypoint", json!(config.entrypoint));
    put("Cmd", json!(config.cmd));
    put("Env", json!(config.env));
    put("Labels", json!(config.labels));
    put("User", json!(config.user));
    put("WorkingDir", json!(config.working_dir));
    if !config.hostname.is_empty() {
        put("Hostname", json!(config.hostname));
    }
    put("Domainname", json!(config.domainname));
    put("Tty", json!(config.tty));
    put("OpenStdin", json!(config.open_stdin));
    put("StopSignal", json!(config.stop_signal));
    put("StopTimeout", json!(config.stop_timeout));
    let exposed: Map<String, Value> = config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    put("ExposedPorts", Value::Object(exposed));
    if let Some(h) = &config.healthcheck {
        put(
            "Healthcheck",
            json!({"Test": h.test, "Interval": h.interval_ns, "Timeout": h.timeout_ns,
                   "StartPeriod": h.start_period_ns, "Retries": h.retries}),
        );
    }
    let bindings: Map<String, Value> = config
        .port_bindings
        .iter()
        .map(|(port, list)| {
            let list: Vec<Value> = list
                .iter()
                .map(|b| json!({"HostIp": b.host_ip, "HostPort": b.host_port}))
                .collect();
            (port.clone(), Value::Array(list))
        })
        .collect();
    let mounts: Vec<Value> = config
        .mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Volume => json!({"Type": "volume", "Source": m.source, "Target": m.destination, "ReadOnly": m.read_only}),
            MountKind::Bind => json!({"Type": "bind", "Source": m.source, "Target": m.destination, "ReadOnly": m.read_only}),
            MountKind::Tmpfs => json!({"Type": "tmpfs", "Target": m.destination, "ReadOnly": m.read_only}),
        })
        .collect();
    let mut host = json!({
        "PortBindings": bindings,
        "RestartPolicy": {"Name": config.restart_policy.name, "MaximumRetryCount": config.restart_policy.maximum_retry_count},
        "Memory": config.memory, "MemorySwap": config.memory_swap,
        "MemoryReservation": config.memory_reservation, "NanoCpus": config.nano_cpus,
        "CpuShares": config.cpu_shares, "CapAdd": config.cap_add, "CapDrop": config.cap_drop,
        "ExtraHosts": config.extra_hosts, "Privileged": config.privileged, "Mounts": mounts,
    });
    if !config.links.is_empty() {
        host["Links"] = json!(config.links);
    }
    if !config.network_mode.is_empty() {
        host["NetworkMode"] = json!(config.network_mode);
    }
    if let Some(init) = config.init {
        host["Init"] = json!(init);
    }
    put("HostConfig", host);
    if let Some(first) = config.networks.first() {
        put(
            "NetworkingConfig",
            json!({"EndpointsConfig": {first.name.clone(): {"Aliases": first.aliases}}}),
        );
    }
    Value::Object(body)
}

/// Inspect shows a link as `/db:/web/db`; creating one takes `db:db`.
fn link_from_inspect(link: &str) -> Option<String> {
    let (target, alias) = link.split_once(':')?;
    let alias = alias.rsplit('/').next()?;
    Some(format!("{}:{alias}", target.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_from_inspect_become_name_and_alias() {
        assert_eq!(link_from_inspect("/db:/web/db").as_deref(), Some("db:db"));
        assert_eq!(
            link_from_inspect("/pg-1:/web-1/database").as_deref(),
            Some("pg-1:database")
        );
        assert_eq!(link_from_inspect("nonsense"), None);
    }

    fn inspect() -> Value {
        json!({
            "Id": "0123456789abcdef0123",
            "Image": "sha256:feed",
            "State": {"Running": true, "Status": "running"},
            "Config": {
                "Image": "web:1", "Hostname": "0123456789ab", "Env": ["A=1", "SECRET=x"],
                "Cmd": ["sh", "-c", "sleep 1"], "Entrypoint": null, "User": "1001:1001",
                "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
                "ExposedPorts": {"80/tcp": {}},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000, "Retries": 3}
            },
            "HostConfig": {
                "NetworkMode": "appnet", "Memory": 67108864, "NanoCpus": 500000000,
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
            },
            "Mounts": [
                {"Type": "volume", "Name": "data", "Source": "/var/lib/docker/volumes/data/_data",
                 "Destination": "/data", "Driver": "local", "RW": true},
                {"Type": "bind", "Source": "/srv/conf", "Destination": "/conf", "RW": false}
            ],
            "NetworkSettings": {"Networks": {"appnet": {"Aliases": ["web", "0123456789ab"]}}}
        })
    }

    #[test]
    fn inspect_maps_to_config_without_engine_generated_names() {
        let c = config_from_inspect(&inspect(), &|_| "bridge".into());
        assert_eq!(c.image, "web:1");
        assert_eq!(c.hostname, "", "generated hostname is dropped");
        assert_eq!(
            c.networks[0].aliases,
            vec!["web"],
            "short-ID alias is dropped"
        );
        assert_eq!(c.memory, 64 << 20);
        assert_eq!(c.restart_policy.name, "unless-stopped");
        assert_eq!(c.port_bindings["80/tcp"][0].host_port, "8080");
        assert_eq!(c.mounts.len(), 2);
        assert!(c.mounts[1].read_only && c.mounts[1].kind == MountKind::Bind);
        assert_eq!(c.healthcheck.as_ref().unwrap().retries, 3);
        assert!(c.was_running);
        assert_eq!(compose_info(&c).unwrap().service, "web");
    }

    #[test]
    fn create_body_carries_limits_mounts_ports_and_first_network() {
        let c = config_from_inspect(&inspect(), &|_| "bridge".into());
        let body = create_body(&c);
        assert_eq!(body["HostConfig"]["Memory"], json!(67108864));
        assert_eq!(body["HostConfig"]["Mounts"][0]["Source"], json!("data"));
        assert_eq!(body["HostConfig"]["Mounts"][1]["ReadOnly"], json!(true));
        assert_eq!(
            body["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            json!("8080")
        );
        assert_eq!(
            body["NetworkingConfig"]["EndpointsConfig"]["appnet"]["Aliases"],
            json!(["web"])
        );
        assert!(body.get("Hostname").is_none());
    }
}
