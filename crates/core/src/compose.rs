//! The compose project a container belongs to: the files needed to manage it again after a
//! lost host (the compose files named by `com.docker.compose.project.config_files`, the
//! `.env` of its working directory, every `env_file` they name), and what they say a service
//! depends on (compose v1 writes no `depends_on` label). The only user of the YAML parser.
//!
//! Files are read as regular files only, at most [`MAX_FILE`] bytes each; they go into the
//! encrypted repository with the backup, like the configuration. Restoring them never
//! replaces an existing file unless asked to.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lifeboat_capture::under_root;
use lifeboat_model::ComposeInfo;

use crate::{CoreError, Note};

/// The largest compose or env file kept (anything bigger is not a compose file).
pub const MAX_FILE: u64 = 4 << 20;

/// What a project's files tell about one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProjectFiles {
    /// Host paths of the files to keep, absolute.
    pub(crate) files: Vec<String>,
    /// The services `service` depends on, from the compose files.
    pub(crate) depends_on: Vec<String>,
}

fn resolve(base: Option<&str>, path: &str) -> String {
    match base {
        Some(b) if !path.starts_with('/') => Path::new(b).join(path).display().to_string(),
        _ => path.to_string(),
    }
}

/// A string or a list of strings, as compose allows for `env_file`.
fn strings(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::String(s) => vec![s.clone()],
        serde_yaml::Value::Sequence(seq) => seq
            .iter()
            .filter_map(|x| match x {
                serde_yaml::Value::String(s) => Some(s.clone()),
                // Compose spec's long form: `- path: ./a.env`.
                serde_yaml::Value::Mapping(m) => m.get("path")?.as_str().map(String::from),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `depends_on` as a list of names or a map of names to conditions.
fn dependency_names(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::Sequence(seq) => seq
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        serde_yaml::Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn read_small(path: &Path) -> Option<Vec<u8>> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.len() > MAX_FILE {
        return None;
    }
    std::fs::read(path).ok()
}

/// The files of `info`'s project and what they say of `info.service`, read under
/// `host_root`. Missing or unreadable files are left out (the backup notes them).
pub(crate) fn discover(info: &ComposeInfo, host_root: &Path) -> ProjectFiles {
    let dir = info.working_dir.as_deref();
    let mut files = BTreeSet::new();
    let mut depends_on = BTreeSet::new();
    let configs: Vec<String> = info
        .config_files
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| resolve(dir, s))
        .collect();
    for config in configs {
        let Some(text) = read_small(&under_root(host_root, &config)) else {
            continue;
        };
        files.insert(config.clone());
        let Ok(doc) = serde_yaml::from_slice::<serde_yaml::Value>(&text) else {
            continue;
        };
        let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
            continue;
        };
        // env_file paths are relative to the compose file's directory.
        let base = Path::new(&config).parent().map(|p| p.display().to_string());
        for (name, service) in services {
            if let Some(env) = service.get("env_file") {
                for f in strings(env) {
                    let path = resolve(base.as_deref(), &f);
                    if read_small(&under_root(host_root, &path)).is_some() {
                        files.insert(path);
                    }
                }
            }
            if name.as_str() == Some(info.service.as_str())
                && let Some(d) = service.get("depends_on")
            {
                depends_on.extend(dependency_names(d));
            }
        }
    }
    if let Some(d) = dir {
        let env = resolve(Some(d), ".env");
        if read_small(&under_root(host_root, &env)).is_some() {
            files.insert(env);
        }
    }
    ProjectFiles {
        files: files.into_iter().collect(),
        depends_on: depends_on.into_iter().collect(),
    }
}

/// Copies `files` (host paths) into `staged` under their absolute paths, keeping mode and
/// owner; the staged tree is backed up as the `compose` part.
pub(crate) fn stage(files: &[String], host_root: &Path, staged: &Path) -> Result<(), CoreError> {
    for f in files {
        let from = under_root(host_root, f);
        let to = staged.join(f.trim_start_matches('/'));
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(CoreError::io("staging", p.display()))?;
        }
        std::fs::copy(&from, &to).map_err(CoreError::io("copying", from.display()))?;
        if let Ok(m) = std::fs::metadata(&from) {
            keep_owner_and_time(&to, &m);
        }
    }
    Ok(())
}

/// Gives `path` the owner and modification time of `like` (mode comes with the copy).
fn keep_owner_and_time(path: &Path, like: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let _ = std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid()));
    if let (Ok(f), Ok(t)) = (
        std::fs::File::options().write(true).open(path),
        like.modified(),
    ) {
        let _ = f.set_modified(t);
    }
}

/// Puts the compose part's files back: at their own paths when they are missing (an existing
/// file is kept, unless `force`), or all of them under `files_to`. Returns the paths written.
pub(crate) fn put_back(
    repo: &dyn crate::Repository,
    part: &lifeboat_model::Part,
    host_root: &Path,
    files_to: Option<&Path>,
    force: bool,
    note: Note<'_>,
) -> Result<Vec<PathBuf>, CoreError> {
    let scratch = tempfile::tempdir().map_err(CoreError::io("creating", "a scratch directory"))?;
    repo.restore_dir(&part.snapshot_id, &part.snapshot_path, scratch.path())?;
    let mut written = Vec::new();
    for entry in walkdir::WalkDir::new(scratch.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let rel = entry
            .path()
            .strip_prefix(scratch.path())
            .unwrap_or(entry.path());
        let dest = match files_to {
            Some(dir) => dir.join(rel),
            None => under_root(host_root, &format!("/{}", rel.display())),
        };
        if std::fs::symlink_metadata(&dest).is_ok() && !force {
            note(&format!("kept the existing {}", dest.display()));
            continue;
        }
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(CoreError::io("creating", p.display()))?;
        }
        // Written next to it, then renamed: a half-written compose file never appears.
        let tmp = dest.with_extension("lifeboat-tmp");
        std::fs::copy(entry.path(), &tmp).map_err(CoreError::io("writing", tmp.display()))?;
        if let Ok(m) = entry.metadata() {
            keep_owner_and_time(&tmp, &m);
        }
        std::fs::rename(&tmp, &dest).map_err(CoreError::io("writing", dest.display()))?;
        note(&format!("put back {}", dest.display()));
        written.push(dest);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, compose: &str) -> ComposeInfo {
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        ComposeInfo {
            project: "shop".into(),
            service: "agent".into(),
            working_dir: Some(dir.display().to_string()),
            config_files: Some("docker-compose.yml".into()),
            ..Default::default()
        }
    }

    #[test]
    fn compose_files_env_files_and_dependencies_are_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".env"), "TAG=1\n").unwrap();
        std::fs::write(d.path().join("agent.env"), "LEVEL=debug\n").unwrap();
        std::fs::write(d.path().join("db.env"), "POSTGRES_PASSWORD=x\n").unwrap();
        let info = project(
            d.path(),
            "version: '3.8'\nservices:\n  db:\n    image: pg\n    env_file: db.env\n  \
             agent:\n    image: a\n    env_file: [agent.env, missing.env]\n    depends_on:\n      \
             db:\n        condition: service_healthy\n  web:\n    image: w\n    depends_on: [agent]\n",
        );
        let found = discover(&info, Path::new("/"));
        let names: Vec<&str> = found
            .files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, [".env", "agent.env", "db.env", "docker-compose.yml"]);
        assert_eq!(found.depends_on, ["db"]);
    }

    #[test]
    fn a_project_without_readable_files_keeps_nothing() {
        let info = ComposeInfo {
            project: "p".into(),
            service: "s".into(),
            working_dir: Some("/nonexistent".into()),
            config_files: Some("/nonexistent/docker-compose.yml".into()),
            ..Default::default()
        };
        assert_eq!(discover(&info, Path::new("/")), ProjectFiles::default());
    }
}
