//! [`Engine`] over bollard, on a private one-thread runtime.
//!
//! API calls used (the whole surface Lifeboat touches on the root-equivalent socket):
//! `GET /version`, `GET /info`, `GET /containers/json`, `GET /containers/{id}/json`,
//! `POST /containers/create`, `POST /containers/{id}/start|stop|update` (restart policy),
//! `DELETE /containers/{id}`,
//! `GET|POST|DELETE /volumes`, `GET /images/{name}/json`, `GET /images/{name}/get`,
//! `POST /images/load`, `GET /networks/{id}`, `POST /networks/create`,
//! `POST /networks/{id}/connect`, `GET /containers/{id}/stats` (doctor),
//! `POST /containers/{id}/pause|unpause`, `POST /containers/{id}/exec`, `POST /exec/{id}/start`,
//! `GET /exec/{id}/json` (consistency modes and hooks).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::mpsc;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters as q;
use bytes::Bytes;
use futures_util::StreamExt;
use lifeboat_model::{ContainerConfig, NetworkAttachment};
use serde_json::Value;

use crate::convert::{compose_info, config_from_inspect, create_body};
use crate::{
    ContainerDetails, ContainerEvent, ContainerState, Engine, EngineError, EngineInfo, ExecOutput,
    ExecSession, ExecStream, MemoryUsage, MountSource, VolumeInfo,
};

/// The engine behind `DOCKER_HOST` (or the local socket), through bollard.
pub struct DockerEngine {
    rt: tokio::runtime::Runtime,
    docker: Docker,
}

fn classify(op: &'static str, what: &'static str, name: &str, err: BollardError) -> EngineError {
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NotFound {
            what,
            name: name.to_string(),
        },
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => EngineError::Conflict {
            what,
            name: name.to_string(),
            message,
        },
        BollardError::DockerResponseServerError { message, .. } => EngineError::Api {
            op,
            name: name.to_string(),
            message,
        },
        other => {
            let text = other.to_string();
            if text.contains("connect") || text.contains("No such file") || text.contains("socket")
            {
                EngineError::Unreachable { detail: text }
            } else {
                EngineError::Api {
                    op,
                    name: name.to_string(),
                    message: text,
                }
            }
        }
    }
}

fn not_found_is_none<T>(r: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(EngineError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl DockerEngine {
    /// Starts `cmd` and streams its stdout; with `input`, that is fed to its stdin as it comes
    /// (its end closes the stdin).
    fn stream_exec(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
        input: Option<Box<dyn Read + Send>>,
    ) -> Result<Box<dyn ExecStream>, EngineError> {
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            env: Some(env.to_vec()),
            attach_stdin: Some(input.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let err = |e| classify("run a command in", "container", name, e);
        let (exec_id, started) = self.rt.block_on(async {
            let exec = self.docker.create_exec(name, config).await.map_err(err)?;
            let started = self.docker.start_exec(&exec.id, None).await.map_err(err)?;
            Ok::<_, EngineError>((exec.id, started))
        })?;
        let bollard::exec::StartExecResults::Attached {
            output: mut out,
            input: stdin,
        } = started
        else {
            return Err(EngineError::Api {
                op: "stream a command in",
                name: name.to_string(),
                message: "the engine did not attach the output".into(),
            });
        };
        if let Some(input) = input {
            self.feed(input, stdin);
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(16);
        let (done_tx, done_rx) = mpsc::channel::<Result<ExecOutput, String>>();
        let docker = self.docker.clone();
        self.rt.spawn(async move {
            let mut stderr = Vec::new();
            let mut failed = None;
            while let Some(item) = out.next().await {
                match item {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        if tx.send(Ok(message)).await.is_err() {
                            break;
                        }
                    }
                    Ok(other) => {
                        push_tail(&mut stderr, &other.into_bytes());
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        let _ = tx.send(Err(e.to_string())).await;
                        break;
                    }
                }
            }
            drop(tx);
            let result = match failed {
                Some(e) => Err(e),
                None => docker
                    .inspect_exec(&exec_id)
                    .await
                    .map(|i| ExecOutput {
                        exit_code: i.exit_code,
                        output: String::from_utf8_lossy(&stderr).to_string(),
                    })
                    .map_err(|e| e.to_string()),
            };
            let _ = done_tx.send(result);
        });
        Ok(Box::new(StreamingExec {
            rx,
            current: Bytes::new(),
            done: done_rx,
            name: name.to_string(),
        }))
    }

    /// Copies `input` into a command's stdin as it comes (a thread blocks on the reader),
    /// then closes the stdin.
    fn feed(
        &self,
        mut input: Box<dyn Read + Send>,
        mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    ) {
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        self.rt.spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
            let _ = stdin.shutdown().await;
        });
    }

    /// The exit code of a finished exec; `None` when it did not finish in time.
    async fn exit_code_if(
        &self,
        finished: bool,
        exec_id: &str,
    ) -> Result<Option<i64>, BollardError> {
        if !finished {
            return Ok(None);
        }
        Ok(self.docker.inspect_exec(exec_id).await?.exit_code)
    }

    /// Connects to the engine named by `DOCKER_HOST` (default: the local socket) and
    /// negotiates the API version, so older engines (API 1.41) work.
    pub fn connect() -> Result<Self, EngineError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| EngineError::Unreachable {
                detail: format!("cannot start the I/O runtime: {e}"),
            })?;
        let docker =
            Docker::connect_with_local_defaults().map_err(|e| EngineError::Unreachable {
                detail: e.to_string(),
            })?;
        let docker =
            rt.block_on(docker.negotiate_version())
                .map_err(|e| EngineError::Unreachable {
                    detail: e.to_string(),
                })?;
        Ok(DockerEngine { rt, docker })
    }

    fn inspect_json(&self, name: &str) -> Result<Value, EngineError> {
        let resp = self
            .rt
            .block_on(
                self.docker
                    .inspect_container(name, None::<q::InspectContainerOptions>),
            )
            .map_err(|e| classify("inspect", "container", name, e))?;
        Ok(to_json(&resp))
    }
}

/// Appends `chunk` to `buf`, keeping at most the last 64 KiB (amortised).
fn push_tail(buf: &mut Vec<u8>, chunk: &[u8]) {
    buf.extend_from_slice(chunk);
    if buf.len() > 128 << 10 {
        buf.drain(..buf.len() - (64 << 10));
    }
}

/// The stdout of a streaming exec, read from blocking code.
struct StreamingExec {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    done: mpsc::Receiver<Result<ExecOutput, String>>,
    name: String,
}

impl Read for StreamingExec {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

impl ExecStream for StreamingExec {
    fn finish(&mut self) -> Result<ExecOutput, EngineError> {
        // Drain what is left so the command can end.
        let mut sink = [0u8; 1 << 16];
        while matches!(self.read(&mut sink), Ok(n) if n > 0) {}
        let message = match self.done.recv() {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(message)) => message,
            Err(_) => "the output stream ended without an exit status".to_string(),
        };
        Err(EngineError::Api {
            op: "stream a command in",
            name: self.name.clone(),
            message,
        })
    }
}

/// A blocking reader over a stream of byte chunks delivered through a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

impl Engine for DockerEngine {
    fn info(&self) -> Result<EngineInfo, EngineError> {
        let version = self
            .rt
            .block_on(self.docker.version())
            .map_err(|e| classify("query", "engine", "version", e))?;
        let info = self
            .rt
            .block_on(self.docker.info())
            .map_err(|e| classify("query", "engine", "info", e))?;
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            data_root: info.docker_root_dir.unwrap_or_default(),
        })
    }

    fn container_names(&self) -> Result<Vec<String>, EngineError> {
        let opts = q::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let list = self
            .rt
            .block_on(self.docker.list_containers(Some(opts)))
            .map_err(|e| classify("list", "containers", "", e))?;
        let mut names: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    fn container(&self, name: &str) -> Result<Option<ContainerDetails>, EngineError> {
        let Some(inspect) = not_found_is_none(self.inspect_json(name))? else {
            return Ok(None);
        };
        let driver = |net: &str| self.network_driver(net).ok().flatten().unwrap_or_default();
        let mut config = config_from_inspect(&inspect, &driver);
        if let Ok(image) = self
            .rt
            .block_on(self.docker.inspect_image(&config.image_id))
        {
            config.repo_digests = image.repo_digests.unwrap_or_default();
        }
        for m in &mut config.mounts {
            if m.kind == lifeboat_model::MountKind::Volume
                && let Some(v) = self.volume(&m.source)?
            {
                m.volume_labels = v.labels;
            }
        }
        let mounts = inspect
            .get("Mounts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .zip(config.mounts.iter())
            .map(|(raw, spec)| MountSource {
                kind: spec.kind,
                name: spec.source.clone(),
                host_path: raw
                    .get("Source")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                destination: spec.destination.clone(),
            })
            .collect();
        let state = ContainerState {
            status: inspect
                .pointer("/State/Status")
                .and_then(Value::as_str)
                .and_then(crate::ContainerStatus::from_word),
            running: config.was_running,
            health: inspect
                .pointer("/State/Health/Status")
                .and_then(Value::as_str)
                .and_then(crate::Health::from_word),
            exit_code: inspect.pointer("/State/ExitCode").and_then(Value::as_i64),
            pid: inspect
                .pointer("/State/Pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
        };
        Ok(Some(ContainerDetails {
            id: inspect
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            name: inspect
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .trim_start_matches('/')
                .into(),
            state,
            compose: compose_info(&config),
            layer: match (
                inspect
                    .pointer("/GraphDriver/Data/UpperDir")
                    .and_then(Value::as_str),
                inspect
                    .pointer("/GraphDriver/Data/MergedDir")
                    .and_then(Value::as_str),
            ) {
                (Some(upper), Some(merged)) => Some(crate::LayerDirs {
                    upper: upper.to_string(),
                    merged: merged.to_string(),
                }),
                _ => None,
            },
            oom_killed: inspect
                .pointer("/State/OOMKilled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            restart_count: inspect
                .get("RestartCount")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            config,
            mounts,
        }))
    }

    fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, EngineError> {
        let r = self
            .rt
            .block_on(self.docker.inspect_volume(name))
            .map_err(|e| classify("inspect", "volume", name, e));
        Ok(not_found_is_none(r)?.map(|v| VolumeInfo {
            name: v.name,
            driver: v.driver,
            mountpoint: v.mountpoint,
            labels: v.labels.into_iter().collect(),
        }))
    }

    fn create_volume(
        &self,
        name: &str,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, EngineError> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some(if driver.is_empty() { "local" } else { driver }.to_string()),
            labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
            ..Default::default()
        };
        let v = self
            .rt
            .block_on(self.docker.create_volume(req))
            .map_err(|e| classify("create", "volume", name, e))?;
        Ok(VolumeInfo {
            name: v.name,
            driver: v.driver,
            mountpoint: v.mountpoint,
            labels: v.labels.into_iter().collect(),
        })
    }

    fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(
                self.docker
                    .remove_volume(name, None::<q::RemoveVolumeOptions>),
            )
            .map_err(|e| classify("remove", "volume", name, e))
    }

    fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        let r = self
            .rt
            .block_on(self.docker.inspect_image(reference))
            .map_err(|e| classify("inspect", "image", reference, e));
        Ok(not_found_is_none(r)?.map(|i| i.id.unwrap_or_default()))
    }

    fn export_image(&self, reference: &str) -> Result<Box<dyn Read + Send>, EngineError> {
        if !self.image_present(reference)? {
            return Err(EngineError::NotFound {
                what: "image",
                name: reference.to_string(),
            });
        }
        let (tx, rx) = mpsc::sync_channel::<Result<Bytes, String>>(16);
        let mut stream = Box::pin(self.docker.export_image(reference));
        self.rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item.map_err(|e| e.to_string())).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }

    fn commit_container(&self, name: &str) -> Result<String, EngineError> {
        let opts = q::CommitContainerOptions {
            container: Some(name.to_string()),
            pause: true,
            comment: Some("lifeboat: the writable layer of a backup".into()),
            ..Default::default()
        };
        let config = bollard::models::ContainerConfig::default();
        let r = self
            .rt
            .block_on(self.docker.commit_container(opts, config))
            .map_err(|e| classify("commit", "container", name, e))?;
        Ok(r.id)
    }

    fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(
                self.docker
                    .remove_image(reference, None::<q::RemoveImageOptions>, None),
            )
            .map(|_| ())
            .map_err(|e| classify("remove", "image", reference, e))
    }

    fn import_image(&self, mut tar: Box<dyn Read + Send>) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let feeder = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match tar.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
        });
        let body = tokio_stream_from(rx);
        let result = self.rt.block_on(async {
            let mut out = Box::pin(self.docker.import_image_stream(
                q::ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                },
                body,
                None,
            ));
            while let Some(item) = out.next().await {
                let info = item.map_err(|e| classify("load", "image", "archive", e))?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(EngineError::Api {
                        op: "load",
                        name: "image archive".into(),
                        message: err,
                    });
                }
            }
            Ok(())
        });
        let _ = feeder.join();
        result
    }

    fn network_driver(&self, name: &str) -> Result<Option<String>, EngineError> {
        let r = self
            .rt
            .block_on(
                self.docker
                    .inspect_network(name, None::<q::InspectNetworkOptions>),
            )
            .map_err(|e| classify("inspect", "network", name, e));
        Ok(not_found_is_none(r)?.map(|n| n.driver.unwrap_or_default()))
    }

    fn create_network(&self, name: &str, driver: &str) -> Result<(), EngineError> {
        let req = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(if driver.is_empty() { "bridge" } else { driver }.to_string()),
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.create_network(req))
            .map(|_| ())
            .map_err(|e| classify("create", "network", name, e))
    }

    fn create_internal_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let req = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.create_network(req))
            .map(|_| ())
            .map_err(|e| classify("create", "network", name, e))
    }

    fn volume_names(&self) -> Result<Vec<String>, EngineError> {
        let list = self
            .rt
            .block_on(self.docker.list_volumes(None::<q::ListVolumesOptions>))
            .map_err(|e| classify("list", "volumes", "", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    fn network_names(&self) -> Result<Vec<String>, EngineError> {
        let list = self
            .rt
            .block_on(self.docker.list_networks(None))
            .map_err(|e| classify("list", "networks", "", e))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(self.docker.remove_network(name))
            .map_err(|e| classify("remove", "network", name, e))
    }

    fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
    ) -> Result<String, EngineError> {
        let body: bollard::models::ContainerCreateBody =
            serde_json::from_value(create_body(config)).map_err(|e| EngineError::Api {
                op: "prepare",
                name: name.to_string(),
                message: format!("saved configuration cannot be expressed: {e}"),
            })?;
        let opts = q::CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let resp = self
            .rt
            .block_on(self.docker.create_container(Some(opts), body))
            .map_err(|e| match classify("create", "container", name, e) {
                // The container cannot be missing before it exists: a 404 here is the image.
                EngineError::NotFound { .. } => EngineError::NotFound {
                    what: "image",
                    name: config.image.clone(),
                },
                other => other,
            })?;
        Ok(resp.id)
    }

    fn connect_network(&self, container: &str, net: &NetworkAttachment) -> Result<(), EngineError> {
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings {
                aliases: Some(net.aliases.clone()),
                ..Default::default()
            }),
        };
        self.rt
            .block_on(self.docker.connect_network(&net.name, req))
            .map_err(|e| classify("connect", "network", &net.name, e))
    }

    fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(
                self.docker
                    .start_container(name, None::<q::StartContainerOptions>),
            )
            .map_err(|e| classify("start", "container", name, e))
    }

    fn stop_container(&self, name: &str, timeout_s: i32) -> Result<(), EngineError> {
        let opts = q::StopContainerOptions {
            t: Some(timeout_s),
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.stop_container(name, Some(opts)))
            .map_err(|e| classify("stop", "container", name, e))
    }

    fn never_restart(&self, name: &str) -> Result<(), EngineError> {
        use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.update_container(name, body))
            .map_err(|e| classify("update", "container", name, e))
    }

    fn pause_container(&self, name: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(self.docker.pause_container(name))
            .map_err(|e| classify("pause", "container", name, e))
    }

    fn unpause_container(&self, name: &str) -> Result<(), EngineError> {
        self.rt
            .block_on(self.docker.unpause_container(name))
            .map_err(|e| classify("unpause", "container", name, e))
    }

    fn exec(
        &self,
        name: &str,
        cmd: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError> {
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let err = |e| classify("run a command in", "container", name, e);
        self.rt.block_on(async {
            let exec = self.docker.create_exec(name, config).await.map_err(err)?;
            let started = self.docker.start_exec(&exec.id, None).await.map_err(err)?;
            let mut output = Vec::new();
            let collect = async {
                if let bollard::exec::StartExecResults::Attached {
                    output: mut out, ..
                } = started
                {
                    while let Some(Ok(chunk)) = out.next().await {
                        push_tail(&mut output, &chunk.into_bytes());
                    }
                }
            };
            let finished = tokio::time::timeout(timeout, collect).await.is_ok();
            let tail = output.len().saturating_sub(64 << 10);
            let text = String::from_utf8_lossy(&output[tail..]).to_string();
            let exit_code = self.exit_code_if(finished, &exec.id).await.map_err(err)?;
            Ok(ExecOutput {
                exit_code,
                output: text,
            })
        })
    }

    fn exec_stream(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
    ) -> Result<Box<dyn ExecStream>, EngineError> {
        self.stream_exec(name, cmd, env, None)
    }

    fn exec_session(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
    ) -> Result<ExecSession, EngineError> {
        let (reader, writer) = std::io::pipe().map_err(|e| EngineError::Api {
            op: "hold a session in",
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let stream = self.stream_exec(name, cmd, env, Some(Box::new(reader)))?;
        Ok((Box::new(writer), stream))
    }

    fn exec_with_input(
        &self,
        name: &str,
        cmd: &[String],
        env: &[String],
        mut input: Box<dyn Read + Send>,
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError> {
        use tokio::io::AsyncWriteExt;
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            env: Some(env.to_vec()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let err = |e| classify("run a command in", "container", name, e);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let feeder = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        });
        let result = self.rt.block_on(async {
            let exec = self.docker.create_exec(name, config).await.map_err(err)?;
            let started = self.docker.start_exec(&exec.id, None).await.map_err(err)?;
            let bollard::exec::StartExecResults::Attached {
                output: mut out,
                input: mut stdin,
            } = started
            else {
                return Ok(ExecOutput {
                    exit_code: None,
                    output: "not attached".into(),
                });
            };
            let write = async move {
                while let Some(chunk) = rx.recv().await {
                    if stdin.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = stdin.shutdown().await;
            };
            let mut output = Vec::new();
            let read = async {
                while let Some(Ok(chunk)) = out.next().await {
                    push_tail(&mut output, &chunk.into_bytes());
                }
            };
            let finished = tokio::time::timeout(timeout, async { tokio::join!(write, read) })
                .await
                .is_ok();
            let exit_code = self.exit_code_if(finished, &exec.id).await.map_err(err)?;
            Ok(ExecOutput {
                exit_code,
                output: String::from_utf8_lossy(&output).to_string(),
            })
        });
        match feeder.join() {
            Ok(Err(e)) => Err(EngineError::Api {
                op: "feed input to",
                name: name.to_string(),
                message: e,
            }),
            _ => result,
        }
    }

    fn container_events(&self) -> Result<mpsc::Receiver<ContainerEvent>, EngineError> {
        Ok(crate::events::subscribe(&self.rt, &self.docker))
    }

    fn memory_usage(&self, name: &str) -> Result<Option<MemoryUsage>, EngineError> {
        let opts = q::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = Box::pin(self.docker.stats(name, Some(opts)));
        let first = self.rt.block_on(stream.next());
        let Some(item) = first else { return Ok(None) };
        let stats = item.map_err(|e| classify("read stats of", "container", name, e))?;
        let Some(mem) = stats.memory_stats else {
            return Ok(None);
        };
        let (Some(usage), Some(limit)) = (mem.usage, mem.limit) else {
            return Ok(None);
        };
        let cache = mem
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("inactive_file")
                    .or_else(|| s.get("total_inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        Ok(Some(MemoryUsage {
            used: usage.saturating_sub(cache),
            limit,
        }))
    }

    fn log_tail(&self, name: &str, lines: usize) -> Result<String, EngineError> {
        let opts = q::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = Box::pin(self.docker.logs(name, Some(opts)));
        let mut out = String::new();
        self.rt.block_on(async {
            while let Some(item) = stream.next().await {
                let chunk = item.map_err(|e| classify("read the log of", "container", name, e))?;
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            Ok::<_, EngineError>(())
        })?;
        Ok(out)
    }

    fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let opts = q::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.remove_container(name, Some(opts)))
            .map_err(|e| classify("remove", "container", name, e))
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
