//! A stand-in [`Engine`] for unit tests of core logic: containers, volumes (real directories
//! under a scratch root, so data can be read and restored), networks and images in memory.
//! Commands run inside containers answer through a handler the test sets (default: exit 0).
//! It passes the same behaviour suite as the real engine ([`crate::contract::engine`]).
//! Never a proof that a feature works end to end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lifeboat_docker::{
    ContainerDetails, ContainerState, ContainerStatus, Engine, EngineError, EngineInfo, ExecOutput,
    ExecStream, Health, MemoryUsage, MountSource, VolumeInfo, compose_info,
};
use lifeboat_model::{ContainerConfig, MountKind, NetworkAttachment};

type ExecHandler = Box<dyn Fn(&str, &[String]) -> ExecOutput + Send + Sync>;

#[derive(Debug, Clone)]
struct FakeContainer {
    id: String,
    config: ContainerConfig,
    status: ContainerStatus,
    health: Option<Health>,
    networks: Vec<String>,
    exit_code: i64,
    log: String,
}

#[derive(Default)]
struct World {
    containers: BTreeMap<String, FakeContainer>,
    volumes: BTreeMap<String, VolumeInfo>,
    networks: BTreeMap<String, String>,
    images: BTreeSet<String>,
    /// Every call that changes something, in order ("start web"), for assertions.
    calls: Vec<String>,
    next_id: u64,
}

/// The stand-in engine. Volumes live under `root/volumes/NAME`.
pub struct FakeEngine {
    root: PathBuf,
    world: Mutex<World>,
    exec: Mutex<ExecHandler>,
    crash_on_start: Mutex<Option<(i64, String)>>,
}

fn not_found(what: &'static str, name: &str) -> EngineError {
    EngineError::NotFound {
        what,
        name: name.to_string(),
    }
}

impl FakeEngine {
    /// An empty engine keeping volume data under `root`.
    pub fn new(root: &Path) -> FakeEngine {
        FakeEngine {
            root: root.to_path_buf(),
            world: Mutex::new(World::default()),
            crash_on_start: Mutex::new(None),
            exec: Mutex::new(Box::new(|_, _| ExecOutput {
                exit_code: Some(0),
                output: String::new(),
            })),
        }
    }

    /// Makes `image` present.
    pub fn add_image(&self, image: &str) {
        self.world.lock().unwrap().images.insert(image.to_string());
    }

    /// Answers every exec with `handler(container, cmd)`.
    pub fn on_exec(&self, handler: impl Fn(&str, &[String]) -> ExecOutput + Send + Sync + 'static) {
        *self.exec.lock().unwrap() = Box::new(handler);
    }

    /// Sets a container's healthcheck verdict.
    pub fn set_health(&self, name: &str, health: Option<Health>) {
        if let Some(c) = self.world.lock().unwrap().containers.get_mut(name) {
            c.health = health;
        }
    }

    /// Makes a container exit for good with `code`, having logged `log`.
    pub fn crash(&self, name: &str, code: i64, log: &str) {
        if let Some(c) = self.world.lock().unwrap().containers.get_mut(name) {
            c.status = ContainerStatus::Exited;
            c.exit_code = code;
            c.log = log.to_string();
        }
    }

    /// Makes every container started from now on exit at once with `code`, logging `log`.
    pub fn crash_on_start(&self, code: i64, log: &str) {
        *self.crash_on_start.lock().unwrap() = Some((code, log.to_string()));
    }

    /// The changes made so far, in order ("create web", "start web", ...).
    pub fn calls(&self) -> Vec<String> {
        self.world.lock().unwrap().calls.clone()
    }

    fn change(&self, what: String) {
        self.world.lock().unwrap().calls.push(what);
    }

    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FakeContainer) -> T,
    ) -> Result<T, EngineError> {
        let mut w = self.world.lock().unwrap();
        let c = w
            .containers
            .iter_mut()
            .find(|(n, c)| n.as_str() == name || c.id == name)
            .map(|(_, c)| c)
            .ok_or_else(|| not_found("container", name))?;
        Ok(f(c))
    }

    fn details(&self, c: &FakeContainer, name: &str) -> ContainerDetails {
        let w = self.world.lock().unwrap();
        let mounts = c
            .config
            .mounts
            .iter()
            .filter(|m| m.kind != MountKind::Tmpfs)
            .map(|m| MountSource {
                kind: m.kind,
                name: m.source.clone(),
                host_path: match m.kind {
                    MountKind::Volume => w
                        .volumes
                        .get(&m.source)
                        .map(|v| v.mountpoint.clone())
                        .unwrap_or_default(),
                    _ => m.source.clone(),
                },
                destination: m.destination.clone(),
            })
            .collect();
        let running = matches!(c.status, ContainerStatus::Running | ContainerStatus::Paused);
        let mut config = c.config.clone();
        config.was_running = running;
        ContainerDetails {
            id: c.id.clone(),
            name: name.to_string(),
            state: ContainerState {
                status: Some(c.status),
                running,
                health: c.health,
                exit_code: (c.status == ContainerStatus::Exited).then_some(c.exit_code),
                pid: None,
            },
            compose: compose_info(&config),
            config,
            mounts,
            layer: None,
            oom_killed: false,
            restart_count: 0,
        }
    }

    fn running(&self, name: &str) -> Result<(), EngineError> {
        let status = self.with(name, |c| c.status)?;
        if status == ContainerStatus::Running {
            Ok(())
        } else {
            Err(EngineError::Api {
                op: "exec in",
                name: name.to_string(),
                message: format!("container is {status}"),
            })
        }
    }

    fn run_exec(&self, name: &str, cmd: &[String]) -> ExecOutput {
        (self.exec.lock().unwrap())(name, cmd)
    }
}

struct FakeStream {
    data: std::io::Cursor<Vec<u8>>,
    end: ExecOutput,
}

impl Read for FakeStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(buf)
    }
}

impl ExecStream for FakeStream {
    fn finish(&mut self) -> Result<ExecOutput, EngineError> {
        Ok(self.end.clone())
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> Result<EngineInfo, EngineError> {
        Ok(EngineInfo {
            version: "fake".into(),
            api_version: "1.41".into(),
            data_root: self.root.display().to_string(),
        })
    }

    fn container_names(&self) -> Result<Vec<String>, EngineError> {
        Ok(self
            .world
            .lock()
            .unwrap()
            .containers
            .keys()
            .cloned()
            .collect())
    }

    fn container(&self, name: &str) -> Result<Option<ContainerDetails>, EngineError> {
        let found = {
            let w = self.world.lock().unwrap();
            w.containers
                .iter()
                .find(|(n, c)| n.as_str() == name || c.id == name)
                .map(|(n, c)| (n.clone(), c.clone()))
        };
        Ok(found.map(|(n, c)| self.details(&c, &n)))
    }

    fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, EngineError> {
        Ok(self.world.lock().unwrap().volumes.get(name).cloned())
    }

    fn create_volume(
        &self,
        name: &str,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, EngineError> {
        let mountpoint = self.root.join("volumes").join(name);
        std::fs::create_dir_all(&mountpoint).map_err(|e| EngineError::Api {
            op: "create volume",
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let v = VolumeInfo {
            name: name.to_string(),
            driver: if driver.is_empty() { "local" } else { driver }.to_string(),
            mountpoint: mountpoint.display().to_string(),
            labels: labels.clone(),
        };
        let mut w = self.world.lock().unwrap();
        if w.volumes.contains_key(name) {
            return Err(EngineError::Conflict {
                what: "volume",
                name: name.to_string(),
                message: "exists".into(),
            });
        }
        w.volumes.insert(name.to_string(), v.clone());
        w.calls.push(format!("create volume {name}"));
        Ok(v)
    }

    fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let v = self
            .world
            .lock()
            .unwrap()
            .volumes
            .remove(name)
            .ok_or_else(|| not_found("volume", name))?;
        let _ = std::fs::remove_dir_all(&v.mountpoint);
        self.change(format!("remove volume {name}"));
        Ok(())
    }

    fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        let w = self.world.lock().unwrap();
        Ok(w.images
            .contains(reference)
            .then(|| format!("sha256:{reference}")))
    }

    fn export_image(&self, reference: &str) -> Result<Box<dyn Read + Send>, EngineError> {
        if !self.image_present(reference)? {
            return Err(not_found("image", reference));
        }
        Ok(Box::new(std::io::Cursor::new(
            format!("image:{reference}").into_bytes(),
        )))
    }

    fn import_image(&self, mut tar: Box<dyn Read + Send>) -> Result<(), EngineError> {
        let mut text = String::new();
        let _ = tar.read_to_string(&mut text);
        let name = text.strip_prefix("image:").unwrap_or(&text).to_string();
        self.add_image(&name);
        self.change(format!("load image {name}"));
        Ok(())
    }

    fn commit_container(&self, name: &str) -> Result<String, EngineError> {
        let id = self.with(name, |c| c.id.clone())?;
        let image = format!("sha256:commit-{}", &id[id.len() - 8..]);
        self.add_image(&image);
        self.change(format!("commit {name}"));
        Ok(image)
    }

    fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        if !self.world.lock().unwrap().images.remove(reference) {
            return Err(not_found("image", reference));
        }
        self.change(format!("remove image {reference}"));
        Ok(())
    }

    fn network_driver(&self, name: &str) -> Result<Option<String>, EngineError> {
        if matches!(name, "bridge" | "host" | "none") {
            return Ok(Some(name.to_string()));
        }
        Ok(self.world.lock().unwrap().networks.get(name).cloned())
    }

    fn create_network(&self, name: &str, driver: &str) -> Result<(), EngineError> {
        let mut w = self.world.lock().unwrap();
        w.networks.insert(name.to_string(), driver.to_string());
        w.calls.push(format!("create network {name}"));
        Ok(())
    }

    fn create_internal_network(
        &self,
        name: &str,
        _labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.create_network(name, "bridge")
    }

    fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.world
            .lock()
            .unwrap()
            .networks
            .remove(name)
            .ok_or_else(|| not_found("network", name))?;
        self.change(format!("remove network {name}"));
        Ok(())
    }

    fn volume_names(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.world.lock().unwrap().volumes.keys().cloned().collect())
    }

    fn network_names(&self) -> Result<Vec<String>, EngineError> {
        Ok(self
            .world
            .lock()
            .unwrap()
            .networks
            .keys()
            .cloned()
            .collect())
    }

    fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
    ) -> Result<String, EngineError> {
        let mut w = self.world.lock().unwrap();
        if w.containers.contains_key(name) {
            return Err(EngineError::Conflict {
                what: "container",
                name: name.to_string(),
                message: "a container of that name exists".into(),
            });
        }
        if !w.images.contains(&config.image) && !w.images.contains(&config.image_id) {
            return Err(not_found("image", &config.image));
        }
        w.next_id += 1;
        let id = format!("{:064x}", w.next_id);
        let networks = config
            .networks
            .iter()
            .take(1)
            .map(|n| n.name.clone())
            .collect();
        w.containers.insert(
            name.to_string(),
            FakeContainer {
                id: id.clone(),
                config: config.clone(),
                status: ContainerStatus::Created,
                health: None,
                networks,
                exit_code: 0,
                log: String::new(),
            },
        );
        w.calls.push(format!("create {name}"));
        Ok(id)
    }

    fn connect_network(&self, container: &str, net: &NetworkAttachment) -> Result<(), EngineError> {
        self.with(container, |c| c.networks.push(net.name.clone()))?;
        self.change(format!("connect {container} {}", net.name));
        Ok(())
    }

    fn start_container(&self, name: &str) -> Result<(), EngineError> {
        let crash = self.crash_on_start.lock().unwrap().clone();
        self.with(name, |c| {
            c.status = ContainerStatus::Running;
            if c.config.healthcheck.is_some() && c.health.is_none() {
                c.health = Some(Health::Healthy);
            }
            if let Some((code, log)) = crash {
                c.status = ContainerStatus::Exited;
                c.exit_code = code;
                c.log = log;
            }
        })?;
        self.change(format!("start {name}"));
        Ok(())
    }

    fn stop_container(&self, name: &str, _timeout_s: i32) -> Result<(), EngineError> {
        self.with(name, |c| c.status = ContainerStatus::Exited)?;
        self.change(format!("stop {name}"));
        Ok(())
    }

    fn never_restart(&self, name: &str) -> Result<(), EngineError> {
        self.with(name, |c| c.config.restart_policy.name = "no".into())?;
        self.change(format!("never restart {name}"));
        Ok(())
    }

    fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        self.world
            .lock()
            .unwrap()
            .containers
            .remove(name)
            .ok_or_else(|| not_found("container", name))?;
        self.change(format!("remove {name}"));
        Ok(())
    }

    fn pause_container(&self, name: &str) -> Result<(), EngineError> {
        self.running(name)?;
        self.with(name, |c| c.status = ContainerStatus::Paused)?;
        self.change(format!("pause {name}"));
        Ok(())
    }

    fn unpause_container(&self, name: &str) -> Result<(), EngineError> {
        self.with(name, |c| c.status = ContainerStatus::Running)?;
        self.change(format!("unpause {name}"));
        Ok(())
    }

    fn exec(
        &self,
        name: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        self.running(name)?;
        Ok(self.run_exec(name, cmd))
    }

    fn exec_stream(
        &self,
        name: &str,
        cmd: &[String],
        _env: &[String],
    ) -> Result<Box<dyn ExecStream>, EngineError> {
        self.running(name)?;
        let end = self.run_exec(name, cmd);
        Ok(Box::new(FakeStream {
            data: std::io::Cursor::new(end.output.clone().into_bytes()),
            end: ExecOutput {
                exit_code: end.exit_code,
                output: String::new(),
            },
        }))
    }

    fn exec_with_input(
        &self,
        name: &str,
        cmd: &[String],
        _env: &[String],
        mut input: Box<dyn Read + Send>,
        _timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        self.running(name)?;
        let mut sink = Vec::new();
        let _ = input.read_to_end(&mut sink);
        Ok(self.run_exec(name, cmd))
    }

    fn log_tail(&self, name: &str, lines: usize) -> Result<String, EngineError> {
        let log = self.with(name, |c| c.log.clone())?;
        let all: Vec<&str> = log.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].join("\n"))
    }

    fn memory_usage(&self, name: &str) -> Result<Option<MemoryUsage>, EngineError> {
        let running = self.with(name, |c| c.status == ContainerStatus::Running)?;
        Ok(running.then_some(MemoryUsage {
            used: 64 << 20,
            limit: 1 << 30,
        }))
    }
}
