//! The dependency graph: edges from labels and links, transitive closure, levels, cycles.

use std::collections::{BTreeMap, BTreeSet};

use lifeboat_model::ContainerConfig;

use crate::catalog::BackupEntry;

/// What `m` depends on: compose `depends_on` (service names), legacy links (container
/// names) and `lifeboat.depends-on` (container or service names, comma separated).
pub fn declared_dependencies(config: &ContainerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = config.label("com.docker.compose.depends_on") {
        // "db:service_healthy:false,cache:service_started:true"
        out.extend(
            v.split(',')
                .filter_map(|d| d.split(':').next())
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from),
        );
    }
    out.extend(
        config
            .links
            .iter()
            .filter_map(|l| l.split(':').next())
            .map(String::from),
    );
    if let Some(v) = config.label(lifeboat_model::labels::DEPENDS_ON) {
        out.extend(
            v.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// What a backed-up service depends on: its declared dependencies and, for compose v1
/// projects (no `depends_on` label), what its compose files said at backup.
pub fn manifest_dependencies(m: &lifeboat_model::Manifest) -> Vec<String> {
    let mut out = declared_dependencies(&m.config);
    if let Some(c) = &m.compose {
        out.extend(c.depends_on.iter().cloned());
    }
    out.sort();
    out.dedup();
    out
}

/// `names` plus everything they depend on, transitively, as far as backups of it exist
/// (dependencies are looked up by container name, then by compose service in the same
/// project).
pub fn with_dependencies(all: &[BackupEntry], names: &[String]) -> Vec<String> {
    let newest = |name: &str| {
        all.iter()
            .filter(|b| b.manifest.container_name == name)
            .max_by_key(|b| b.manifest.started_at)
    };
    let mut out: Vec<String> = names.to_vec();
    let mut i = 0;
    while i < out.len() {
        if let Some(b) = newest(&out[i]) {
            let project = b.manifest.compose.as_ref().map(|c| c.project.clone());
            for d in manifest_dependencies(&b.manifest) {
                let found = if newest(&d).is_some() {
                    Some(d)
                } else {
                    all.iter()
                        .find(|o| {
                            o.manifest.compose.as_ref().is_some_and(|c| {
                                c.service == d && Some(&c.project) == project.as_ref()
                            })
                        })
                        .map(|o| o.manifest.container_name.clone())
                };
                if let Some(f) = found
                    && !out.contains(&f)
                {
                    out.push(f);
                }
            }
        }
        i += 1;
    }
    out
}

/// Why a stack cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Services that depend on each other, in a cycle.
    Cycle(Vec<String>),
    /// A dependency with no backup and not running here.
    Missing {
        /// The service.
        service: String,
        /// What it depends on.
        dependency: String,
    },
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::Cycle(c) => write!(
                f,
                "dependency cycle: {} (fix the depends_on / lifeboat.depends-on labels)",
                c.join(" -> ")
            ),
            GraphError::Missing {
                service,
                dependency,
            } => write!(
                f,
                "`{service}` depends on `{dependency}`, which is neither in the restore nor \
                 running here: add it to the restore (e.g. --project), restore it first, or \
                 remove the dependency label"
            ),
        }
    }
}

/// Orders `deps` (service → its dependencies, all inside the map) into levels; a level's
/// services depend only on earlier levels. Names a cycle if there is one.
pub fn levels(deps: &BTreeMap<String, Vec<String>>) -> Result<Vec<Vec<String>>, GraphError> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < deps.len() {
        let level: Vec<String> = deps
            .iter()
            .filter(|(s, d)| {
                !done.contains(s.as_str()) && d.iter().all(|x| done.contains(x.as_str()))
            })
            .map(|(s, _)| s.clone())
            .collect();
        if level.is_empty() {
            return Err(GraphError::Cycle(find_cycle(deps, &done)));
        }
        for s in &level {
            done.insert(deps.get_key_value(s).expect("listed").0.as_str());
        }
        out.push(level);
    }
    Ok(out)
}

fn find_cycle(deps: &BTreeMap<String, Vec<String>>, done: &BTreeSet<&str>) -> Vec<String> {
    // Every remaining node has an unfinished dependency: walk them until one repeats.
    let mut path: Vec<String> = Vec::new();
    let mut at = deps
        .keys()
        .find(|k| !done.contains(k.as_str()))
        .cloned()
        .unwrap_or_default();
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at.clone());
        at = deps[&at]
            .iter()
            .find(|d| !done.contains(d.as_str()))
            .cloned()
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(s, d)| (s.to_string(), d.iter().map(|x| x.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_three_tier_stack_restores_database_first_and_independent_services_together() {
        let g = graph(&[
            ("web", &["agent"]),
            ("agent", &["db"]),
            ("db", &[]),
            ("cache", &[]),
        ]);
        assert_eq!(
            levels(&g).unwrap(),
            vec![
                vec!["cache".to_string(), "db".into()],
                vec!["agent".into()],
                vec!["web".into()]
            ]
        );
    }

    #[test]
    fn a_cycle_is_named_with_its_members() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        match levels(&g).unwrap_err() {
            GraphError::Cycle(c) => {
                assert_eq!(c.first(), c.last());
                assert_eq!(c.len(), 4, "{c:?}");
                let text = GraphError::Cycle(c).to_string();
                assert!(text.contains("a -> b -> c -> a"), "{text}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn compose_and_lifeboat_dependency_labels_are_both_read() {
        let mut m: lifeboat_model::Manifest = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "lifeboat_version": "0", "backup_id": "b",
            "started_at": "2026-11-23T00:00:00.000000000Z",
            "finished_at": "2026-11-23T00:00:00.000000000Z", "host": "h",
            "engine_version": "", "engine_api_version": "", "container_name": "agent",
            "container_id": "x", "config": {"image": "i"}, "config_sha256": "", "parts": []
        }))
        .unwrap();
        m.config.labels.insert(
            "com.docker.compose.depends_on".into(),
            "db:service_healthy:false,queue:service_started:true".into(),
        );
        m.config
            .labels
            .insert(lifeboat_model::labels::DEPENDS_ON.into(), "auth, db".into());
        assert_eq!(declared_dependencies(&m.config), ["auth", "db", "queue"]);
    }
}
