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
use lifeboat_safepath::Beneath;

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

/// Opens a project file for reading: beneath the project directory when it is there (a
/// container may bind-mount that directory and plant symlinks in it), else the path itself
/// without following its last component. Only regular files up to [`MAX_FILE`].
fn open_small(project_dir: Option<&str>, host_root: &Path, path: &str) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match project_dir.and_then(|d| Path::new(path).strip_prefix(d).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => {
            Beneath::open(&under_root(host_root, project_dir?))
                .and_then(|b| b.open_file(rel))
                .ok()?
        }
        _ => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(under_root(host_root, path))
            .ok()?,
    };
    let m = file.metadata().ok()?;
    (m.is_file() && m.len() <= MAX_FILE).then_some(file)
}

fn read_small(project_dir: Option<&str>, host_root: &Path, path: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut open_small(project_dir, host_root, path)?, &mut out).ok()?;
    Some(out)
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
        let Some(text) = read_small(dir, host_root, &config) else {
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
                    if open_small(dir, host_root, &path).is_some() {
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
        if open_small(Some(d), host_root, &env).is_some() {
            files.insert(env);
        }
    }
    ProjectFiles {
        files: files.into_iter().collect(),
        depends_on: depends_on.into_iter().collect(),
    }
}

/// Copies `files` (host paths) into `staged` under their absolute paths, keeping mode, owner
/// and time; read as [`discover`] reads them. The staged tree is the `compose` part.
pub(crate) fn stage(
    info: &ComposeInfo,
    files: &[String],
    host_root: &Path,
    staged: &Path,
) -> Result<(), CoreError> {
    for f in files {
        let Some(mut from) = open_small(info.working_dir.as_deref(), host_root, f) else {
            continue;
        };
        let to = staged.join(f.trim_start_matches('/'));
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(CoreError::io("staging", p.display()))?;
        }
        let mut out = std::fs::File::create(&to).map_err(CoreError::io("staging", to.display()))?;
        std::io::copy(&mut from, &mut out).map_err(CoreError::io("copying", f))?;
        if let Ok(m) = from.metadata() {
            keep_meta(&out, &m);
        }
    }
    Ok(())
}

/// Gives the open file `f` the owner, mode and modification time of `like`.
fn keep_meta(f: &std::fs::File, like: &std::fs::Metadata) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::os::unix::fs::fchown(f, Some(like.uid()), Some(like.gid()));
    let _ = f.set_permissions(std::fs::Permissions::from_mode(like.mode() & 0o7777));
    if let Ok(t) = like.modified() {
        let _ = f.set_modified(t);
    }
}

/// Puts the compose part's files back: under the project directory the manifest names,
/// when they are missing (an existing file is kept, unless `force`), or all of them under
/// `files_to`. A snapshot is hostile input: a file outside the project directory is not
/// written there (only under `files_to`), and nothing is written through a symlink (the
/// project directory may be bind-mounted into a container). Returns the paths written.
pub(crate) fn put_back(
    repo: &dyn crate::Repository,
    part: &lifeboat_model::Part,
    info: Option<&ComposeInfo>,
    host_root: &Path,
    files_to: Option<&Path>,
    force: bool,
    note: Note<'_>,
) -> Result<Vec<PathBuf>, CoreError> {
    let project = info
        .and_then(|i| i.working_dir.clone())
        .filter(|d| lifeboat_model::names::bind_path(d).is_ok());
    let (root, prefix) = match (files_to, &project) {
        (Some(dir), _) => (dir.to_path_buf(), String::new()),
        (None, Some(d)) => (
            under_root(host_root, d),
            format!("{}/", d.trim_end_matches('/')),
        ),
        (None, None) => {
            note(
                "the backup names no project directory: its compose files are not put back \
                  (use --files-to DIR)",
            );
            return Ok(Vec::new());
        }
    };
    std::fs::create_dir_all(&root).map_err(CoreError::io("creating", root.display()))?;
    let beneath = Beneath::open(&root).map_err(CoreError::io("opening", root.display()))?;
    let scratch = tempfile::tempdir().map_err(CoreError::io("creating", "a scratch directory"))?;
    repo.restore_dir(&part.snapshot_id, &part.snapshot_path, scratch.path())?;
    let mut written = Vec::new();
    for entry in walkdir::WalkDir::new(scratch.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let stored = entry
            .path()
            .strip_prefix(scratch.path())
            .unwrap_or(entry.path());
        let host_path = format!("/{}", stored.display());
        let rel = if files_to.is_some() {
            stored.to_path_buf()
        } else if let Some(inside) = host_path.strip_prefix(&prefix) {
            PathBuf::from(inside)
        } else {
            note(&format!(
                "{host_path} is outside the project directory: not put back (use --files-to)"
            ));
            continue;
        };
        let shown = root.join(&rel);
        let put = write_file(&beneath, &rel, entry.path(), force)
            .map_err(CoreError::io("putting back", shown.display()))?;
        if put {
            note(&format!("put back {}", shown.display()));
            written.push(shown);
        } else {
            note(&format!("kept the existing {}", shown.display()));
        }
    }
    Ok(written)
}

/// Writes `from` to `rel` beneath `root`: next to it first, then renamed over it, so a
/// half-written compose file never appears; no symlink is followed. `false` when it exists
/// and `force` is off.
fn write_file(root: &Beneath, rel: &Path, from: &Path, force: bool) -> std::io::Result<bool> {
    use lifeboat_safepath::Access;
    let dest = root.locate_creating_parents(rel)?;
    if dest.identity().is_ok() && !force {
        return Ok(false);
    }
    let mut tmp_name = rel.as_os_str().to_owned();
    tmp_name.push(".lifeboat-tmp");
    let tmp = root.locate(Path::new(&tmp_name))?;
    let mut out = tmp.open_file(Access::Write, true)?;
    out.set_len(0)?;
    let mut src = std::fs::File::open(from)?;
    std::io::copy(&mut src, &mut out)?;
    keep_meta(&out, &src.metadata()?);
    tmp.rename_to(&dest)?;
    Ok(true)
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

    /// A compose part as a snapshot of `files` (absolute path, content), in a real
    /// repository.
    fn stored(
        dir: &Path,
        files: &[(&Path, &str)],
    ) -> (lifeboat_repo::RusticRepository, lifeboat_model::Part) {
        use lifeboat_repo::Repository;
        let staged = dir.join("staged");
        for (path, body) in files {
            let to = staged.join(path.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, body).unwrap();
        }
        let loc = lifeboat_repo::RepoLocation(dir.join("repo").display().to_string());
        let repo = lifeboat_repo::RusticRepository::init(&loc, "pw", None).unwrap();
        let r = repo
            .backup_dir(&lifeboat_repo::DirBackup {
                source: &staged,
                as_path: "/compose",
                tags: &[],
                description: None,
                exclude: &[],
                pace: None,
            })
            .unwrap();
        let part = lifeboat_model::Part {
            kind: lifeboat_model::PartKind::Compose,
            name: "compose".into(),
            belongs_to: None,
            snapshot_path: "/compose".into(),
            snapshot_id: r.snapshot_id,
            files: 0,
            dirs: 0,
            bytes: 0,
            added_bytes: 0,
        };
        (repo, part)
    }

    #[test]
    fn a_hostile_compose_part_writes_only_inside_the_project_directory() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("proj");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let pwned = outside.join("pwned");
        let env = proj.join(".env");
        let (repo, part) = stored(d.path(), &[(&env, "TAG=1\n"), (&pwned, "evil")]);
        let info = ComposeInfo {
            working_dir: Some(proj.display().to_string()),
            ..Default::default()
        };
        let put = put_back(
            &repo,
            &part,
            Some(&info),
            Path::new("/"),
            None,
            false,
            &|_| {},
        )
        .unwrap();
        assert_eq!(put, std::slice::from_ref(&env));
        assert_eq!(std::fs::read_to_string(&env).unwrap(), "TAG=1\n");
        assert!(
            !pwned.exists(),
            "nothing is written outside the project directory"
        );
        // Under --files-to everything lands below that directory, and only there.
        let to = d.path().join("files-to");
        put_back(
            &repo,
            &part,
            Some(&info),
            Path::new("/"),
            Some(&to),
            false,
            &|_| {},
        )
        .unwrap();
        assert!(to.join(pwned.strip_prefix("/").unwrap()).is_file());
        assert!(!pwned.exists());
    }

    #[test]
    fn a_symlink_planted_in_the_project_directory_is_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("proj");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        std::os::unix::fs::symlink(&outside, proj.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), proj.join(".env")).unwrap();
        let (repo, part) = stored(
            d.path(),
            &[
                (&proj.join("sub/a.env"), "evil"),
                (&proj.join(".env"), "evil"),
            ],
        );
        let info = ComposeInfo {
            working_dir: Some(proj.display().to_string()),
            ..Default::default()
        };
        // Forced, so that the existing `.env` symlink is replaced, not written through.
        let r = put_back(
            &repo,
            &part,
            Some(&info),
            Path::new("/"),
            None,
            true,
            &|_| {},
        );
        assert!(r.is_err(), "the symlinked directory is refused: {r:?}");
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "host"
        );
        assert!(!outside.join("a.env").exists());
    }
}
