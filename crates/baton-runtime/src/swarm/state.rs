//! The controller's state in Swarm's own replicated store (`[cluster] state = "swarm"`),
//! so that a controller on another manager can take over with no consensus of baton's
//! own.
//!
//! Two kinds of Swarm services with no replicas (no task is ever made, the image is never
//! pulled) hold it in their labels:
//! - the **lease** `<name>-lease`: which controller process acts (`baton.lease.holder`),
//!   its term (`baton.lease.term`, one more at every take-over) and a beat counter;
//! - one **record holder** per app, `<name>-state-<app>`: the app's record
//!   (`baton.state.record`, the JSON the local store keeps), its newest history entry
//!   (`baton.state.last`) and the term of the controller that wrote it.
//!
//! Every write is a compare-and-swap on the service's version index (the Engine refuses
//! an update made from an older version with "update out of sequence"), so a controller
//! that lost the lease cannot overwrite what the new one wrote: its next write fails and
//! it stops acting.
//!
//! The lease needs no clock shared between nodes. The holder renews it every `ttl / 4`
//! and stops acting when it could not renew for `ttl / 2` (measured from the start of its
//! last successful renewal); a standby takes it over only after it saw the lease's
//! version unchanged for a whole `ttl` on its own clock. A holder that stops cleanly
//! releases it (empty holder), and a standby takes a released lease at once.

use super::error::{self, SwarmError};
use crate::docker::default_host;
use bollard::models::{
    LocalNodeState, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use bollard::query_parameters::{ListServicesOptionsBuilder, UpdateServiceOptions};
use bollard::Docker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

/// The image named in the holders' specs. They have no replicas, so it is never pulled.
const HOLDER_IMAGE: &str = "baton/state-holder:none";

const LEASE: &str = "baton.lease";
const LEASE_HOLDER: &str = "baton.lease.holder";
const LEASE_TERM: &str = "baton.lease.term";
const LEASE_BEAT: &str = "baton.lease.beat";
const STATE: &str = "baton.state";
const STATE_APP: &str = "baton.state.app";
const STATE_TERM: &str = "baton.state.term";
const STATE_RECORD: &str = "baton.state.record";
const STATE_LAST: &str = "baton.state.last";

/// How many times a write that met another writer is read and tried again before it
/// gives up.
const TRIES: usize = 5;

/// One app's stored state, as the local store keeps it (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredApp {
    pub app: String,
    pub record: String,
    /// The newest history entry, when there is one.
    pub last: Option<String>,
}

/// The lease and the records of one baton installation on a swarm.
pub struct SwarmState {
    docker: Docker,
    host: Arc<str>,
    name: String,
    me: String,
    ttl: Duration,
    lease: Mutex<Lease>,
    /// Per app's holder: the version index this controller last wrote or claimed, and
    /// the newest history entry there (kept by writes that carry none).
    holders: Mutex<HashMap<String, Held>>,
    lost: watch::Sender<Option<String>>,
}

#[derive(Debug, Default)]
struct Lease {
    /// 0 until held.
    term: u64,
    version: u64,
    beat: u64,
    /// Set by `release`: no more renewals.
    released: bool,
}

/// What this controller knows of one record holder.
#[derive(Debug, Clone, Default)]
struct Held {
    version: u64,
    last: Option<String>,
}

/// A service as the state reads it.
struct Found {
    version: u64,
    labels: HashMap<String, String>,
}

/// How a compare-and-swap write ended when it did not succeed.
enum Refused {
    /// Someone else wrote the service since (its version moved on).
    Moved,
    Failed(SwarmError),
}

impl SwarmState {
    /// Connects to the manager named by `DOCKER_HOST` (default the local socket) and
    /// checks it is one. `name` names the lease and the holders (`[cluster] state_name`);
    /// `ttl` is the lease's time to live. Changes nothing.
    pub async fn connect(name: &str, ttl: Duration) -> Result<SwarmState, SwarmError> {
        let host = default_host();
        let unreachable = |detail: String| SwarmError::Unreachable {
            host: host.clone(),
            detail,
        };
        let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(e.to_string()))?;
        let docker =
            match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(SwarmError::api(&host, "answer", e)),
                Err(_) => return Err(unreachable("no answer within 10s".into())),
            };
        let info = docker
            .info()
            .await
            .map_err(|e| SwarmError::api(&host, "read its swarm state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
            return Err(SwarmError::NotInSwarm { host });
        }
        if swarm.control_available != Some(true) {
            return Err(SwarmError::NotManager { host });
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let (lost, _) = watch::channel(None);
        Ok(SwarmState {
            docker,
            host: host.into(),
            name: name.to_string(),
            me: format!("{hostname}/{}/{nanos:09}", std::process::id()),
            ttl,
            lease: Mutex::new(Lease::default()),
            holders: Mutex::new(HashMap::new()),
            lost,
        })
    }

    /// What marks the instances of this installation (the runtimes' `baton.owner`
    /// label): the same for every controller that may take over.
    pub fn owner(&self) -> String {
        format!("swarm-state:{}", self.name)
    }

    /// This controller process, as the lease names it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The lease's time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Resolves with why, once this controller no longer holds the lease.
    pub fn lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.subscribe()
    }

    fn lease_name(&self) -> String {
        format!("{}-lease", self.name)
    }

    fn holder_name(&self, app: &str) -> String {
        format!("{}-state-{app}", self.name)
    }

    fn api(&self, action: &str, e: bollard::errors::Error) -> SwarmError {
        SwarmError::api(&self.host, action, e)
    }

    /// Waits until this process holds the lease: at once when there is none or it was
    /// released, else when its holder has not renewed it for a whole `ttl`. A standby
    /// keeps waiting through errors of the engine (logged); only the first read's error
    /// is returned, so that a wrong `DOCKER_HOST` fails at start.
    pub async fn acquire(&self) -> Result<(), SwarmError> {
        let name = self.lease_name();
        let mut seen: Option<(u64, Instant)> = None;
        let mut told = String::new();
        let mut first = true;
        loop {
            match self.find(&name).await {
                Err(e) if first => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "standby: cannot read the controller lease; trying again")
                }
                Ok(None) => {
                    let spec = self.lease_spec(1, 0);
                    match self.docker.create_service(spec, None).await {
                        Ok(_) => {
                            if self.took(1).await? {
                                return Ok(());
                            }
                        }
                        Err(e) if is_conflict(&e) => {}
                        Err(e) => return Err(self.api(&format!("create service {name}"), e)),
                    }
                }
                Ok(Some(found)) => {
                    let holder = found.labels.get(LEASE_HOLDER).cloned().unwrap_or_default();
                    let term = label_u64(&found.labels, LEASE_TERM);
                    let expired = match seen {
                        Some((version, since)) if version == found.version => {
                            since.elapsed() >= self.ttl
                        }
                        _ => {
                            seen = Some((found.version, Instant::now()));
                            false
                        }
                    };
                    if holder.is_empty() || expired {
                        if !holder.is_empty() {
                            tracing::warn!(%holder, ttl = ?self.ttl, "the controller holding the lease stopped renewing it; taking over");
                        }
                        let spec = self.lease_spec(term + 1, 0);
                        match self.update(&name, spec, found.version).await {
                            Ok(()) => {
                                if self.took(term + 1).await? {
                                    return Ok(());
                                }
                            }
                            Err(Refused::Moved) => seen = None,
                            Err(Refused::Failed(e)) => {
                                tracing::warn!(error = %e, "standby: could not take the lease; trying again");
                            }
                        }
                    } else if told != holder {
                        tracing::info!(%holder, ttl = ?self.ttl, "standby: another controller holds the lease; this one takes over when it stops renewing it for the ttl");
                        told = holder;
                    }
                }
            }
            first = false;
            tokio::time::sleep(self.ttl / 4).await;
        }
    }

    /// After a write that should have made this process the holder at `term`: reads the
    /// lease back and keeps its version when it names this process.
    async fn took(&self, term: u64) -> Result<bool, SwarmError> {
        let Some(found) = self.find(&self.lease_name()).await? else {
            return Ok(false);
        };
        if found.labels.get(LEASE_HOLDER).map(String::as_str) != Some(self.me.as_str())
            || label_u64(&found.labels, LEASE_TERM) != term
        {
            return Ok(false);
        }
        *self.lease.lock().await = Lease {
            term,
            version: found.version,
            beat: 0,
            released: false,
        };
        tracing::info!(term, holder = %self.me, "holding the controller lease");
        Ok(true)
    }

    /// Renews the lease every `ttl / 4` until it is released or lost; when lost, says
    /// why on [`SwarmState::lost`]. Run it as a task once `acquire` returned.
    pub async fn keep(self: Arc<Self>) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.ttl / 4).await;
            let started = Instant::now();
            let mut lease = self.lease.lock().await;
            if lease.released {
                return;
            }
            let spec = self.lease_spec(lease.term, lease.beat + 1);
            let outcome = match self.update(&self.lease_name(), spec, lease.version).await {
                Ok(()) => match self.find(&self.lease_name()).await {
                    Ok(Some(f))
                        if f.labels.get(LEASE_HOLDER).map(String::as_str)
                            == Some(self.me.as_str())
                            && label_u64(&f.labels, LEASE_TERM) == lease.term =>
                    {
                        lease.version = f.version;
                        lease.beat += 1;
                        Ok(())
                    }
                    Ok(_) => Err(Refused::Moved),
                    Err(e) => Err(Refused::Failed(e)),
                },
                Err(r) => Err(r),
            };
            drop(lease);
            match outcome {
                Ok(()) => last_ok = started,
                Err(Refused::Moved) => {
                    self.lose("another controller took the lease".into());
                    return;
                }
                Err(Refused::Failed(e)) if last_ok.elapsed() >= self.ttl / 2 => {
                    self.lose(format!(
                        "could not renew the lease for {:?} (half its ttl): {e}",
                        last_ok.elapsed()
                    ));
                    return;
                }
                Err(Refused::Failed(e)) => {
                    tracing::warn!(error = %e, "could not renew the controller lease; trying again");
                }
            }
        }
    }

    fn lose(&self, why: String) {
        tracing::error!(%why, "this controller no longer holds the lease; it stops acting");
        self.lost.send_replace(Some(why));
    }

    fn lost_why(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Gives the lease up (a clean stop), so that a standby takes over at once. Quiet
    /// when it is not held.
    pub async fn release(&self) {
        let mut lease = self.lease.lock().await;
        if lease.term == 0 || lease.released || self.lost_why().is_some() {
            lease.released = true;
            return;
        }
        lease.released = true;
        let mut spec = self.lease_spec(lease.term, lease.beat + 1);
        if let Some(labels) = spec.labels.as_mut() {
            labels.insert(LEASE_HOLDER.into(), String::new());
        }
        match self.update(&self.lease_name(), spec, lease.version).await {
            Ok(()) => tracing::info!("released the controller lease"),
            Err(Refused::Moved) => {}
            Err(Refused::Failed(e)) => {
                tracing::warn!(error = %e, "could not release the controller lease; a standby takes it over after its ttl");
            }
        }
    }

    /// Every app's stored state, each holder claimed for this controller's term (so a
    /// write from an earlier holder fails from now on). Call it once the lease is held.
    pub async fn load(&self) -> Result<Vec<StoredApp>, SwarmError> {
        let term = self.term().await?;
        let options = ListServicesOptionsBuilder::default()
            .filters(&HashMap::from([(
                "label".to_string(),
                vec![format!("{STATE}={}", self.name)],
            )]))
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| self.api("list the state holders", e))?;
        let mut apps = Vec::new();
        for s in services {
            let labels = s.spec.and_then(|s| s.labels).unwrap_or_default();
            let Some(app) = labels.get(STATE_APP).cloned() else {
                continue;
            };
            let Some(stored) = self.claim(&app, term).await? else {
                continue;
            };
            apps.push(stored);
        }
        apps.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(apps)
    }

    /// Rewrites `app`'s holder with this controller's term, as it is.
    async fn claim(&self, app: &str, term: u64) -> Result<Option<StoredApp>, SwarmError> {
        let name = self.holder_name(app);
        for _ in 0..TRIES {
            let Some(found) = self.find(&name).await? else {
                return Ok(None);
            };
            self.check_term(&found, term)?;
            let stored = StoredApp {
                app: app.to_string(),
                record: found.labels.get(STATE_RECORD).cloned().unwrap_or_default(),
                last: found.labels.get(STATE_LAST).cloned(),
            };
            let spec = self.holder_spec(app, term, &stored.record, stored.last.as_deref());
            match self.update(&name, spec, found.version).await {
                Ok(()) => {
                    self.confirm(app, term, stored.last.clone()).await?;
                    return Ok(Some(stored));
                }
                Err(Refused::Moved) => continue,
                Err(Refused::Failed(e)) => return Err(e),
            }
        }
        Err(self.busy(&name))
    }

    /// Stores `app`'s record (and newest history entry) for this controller's term.
    /// Fails, changing nothing, when the lease is lost or another controller wrote the
    /// holder since this one last did.
    pub async fn put(&self, app: &str, record: &str, last: Option<&str>) -> Result<(), SwarmError> {
        if let Some(why) = self.lost_why() {
            return Err(SwarmError::LeaseLost { why });
        }
        let term = self.term().await?;
        let name = self.holder_name(app);
        let known = self.holders.lock().await.get(app).cloned();
        let held = match known {
            Some(held) => held,
            None => match self.find(&name).await? {
                Some(found) => {
                    self.check_term(&found, term)?;
                    Held {
                        version: found.version,
                        last: found.labels.get(STATE_LAST).cloned(),
                    }
                }
                None => {
                    let last = last.map(str::to_string);
                    let spec = self.holder_spec(app, term, record, last.as_deref());
                    return match self.docker.create_service(spec, None).await {
                        Ok(_) => self.confirm(app, term, last).await,
                        Err(e) if is_conflict(&e) => Err(self.busy(&name)),
                        Err(e) => Err(self.api(&format!("create service {name}"), e)),
                    };
                }
            },
        };
        // A write without a history entry keeps the newest one there.
        let last = last.map(str::to_string).or(held.last);
        let spec = self.holder_spec(app, term, record, last.as_deref());
        match self.update(&name, spec, held.version).await {
            Ok(()) => self.confirm(app, term, last).await,
            Err(Refused::Moved) => {
                let why = format!("another controller wrote the state of app {app} ({name})");
                self.lose(why.clone());
                Err(SwarmError::LeaseLost { why })
            }
            Err(Refused::Failed(e)) => Err(e),
        }
    }

    /// Reads `app`'s holder back after a write and keeps its version, when the write
    /// there is this term's.
    async fn confirm(&self, app: &str, term: u64, last: Option<String>) -> Result<(), SwarmError> {
        let name = self.holder_name(app);
        let Some(found) = self.find(&name).await? else {
            return Err(self.busy(&name));
        };
        self.check_term(&found, term)?;
        if label_u64(&found.labels, STATE_TERM) != term {
            return Err(self.busy(&name));
        }
        let held = Held {
            version: found.version,
            last,
        };
        self.holders.lock().await.insert(app.to_string(), held);
        Ok(())
    }

    /// Fails (and the lease is lost) when a later term wrote this holder.
    fn check_term(&self, found: &Found, term: u64) -> Result<(), SwarmError> {
        let theirs = label_u64(&found.labels, STATE_TERM);
        if theirs > term {
            let why =
                format!("a controller of a later term ({theirs}, this one {term}) wrote the state");
            self.lose(why.clone());
            return Err(SwarmError::LeaseLost { why });
        }
        Ok(())
    }

    async fn term(&self) -> Result<u64, SwarmError> {
        let term = self.lease.lock().await.term;
        if term == 0 {
            return Err(SwarmError::LeaseLost {
                why: "this controller has not taken the lease".into(),
            });
        }
        Ok(term)
    }

    fn busy(&self, name: &str) -> SwarmError {
        SwarmError::Api {
            host: self.host.to_string(),
            action: format!("write {name}"),
            detail: "another writer kept changing it".into(),
        }
    }

    async fn find(&self, name: &str) -> Result<Option<Found>, SwarmError> {
        match self.docker.inspect_service(name, None).await {
            Ok(s) => Ok(Some(Found {
                version: s.version.and_then(|v| v.index).unwrap_or(0),
                labels: s.spec.and_then(|s| s.labels).unwrap_or_default(),
            })),
            Err(e) if error::is_not_found(&e) => Ok(None),
            Err(e) => Err(self.api(&format!("inspect service {name}"), e)),
        }
    }

    /// Replaces the spec of `name` if its version is still `version`.
    async fn update(&self, name: &str, spec: ServiceSpec, version: u64) -> Result<(), Refused> {
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        match self.docker.update_service(name, spec, options, None).await {
            Ok(_) => Ok(()),
            Err(e) if is_out_of_sequence(&e) => Err(Refused::Moved),
            Err(e) => Err(Refused::Failed(
                self.api(&format!("update service {name}"), e),
            )),
        }
    }

    fn lease_spec(&self, term: u64, beat: u64) -> ServiceSpec {
        let labels = HashMap::from([
            (LEASE.to_string(), self.name.clone()),
            (LEASE_HOLDER.to_string(), self.me.clone()),
            (LEASE_TERM.to_string(), term.to_string()),
            (LEASE_BEAT.to_string(), beat.to_string()),
        ]);
        holder_service(self.lease_name(), labels)
    }

    fn holder_spec(&self, app: &str, term: u64, record: &str, last: Option<&str>) -> ServiceSpec {
        let mut labels = HashMap::from([
            (STATE.to_string(), self.name.clone()),
            (STATE_APP.to_string(), app.to_string()),
            (STATE_TERM.to_string(), term.to_string()),
            (STATE_RECORD.to_string(), record.to_string()),
        ]);
        if let Some(last) = last {
            labels.insert(STATE_LAST.to_string(), last.to_string());
        }
        holder_service(self.holder_name(app), labels)
    }
}

/// A service that only holds labels: no replicas, so no task and no pull.
fn holder_service(name: String, labels: HashMap<String, String>) -> ServiceSpec {
    ServiceSpec {
        name: Some(name),
        labels: Some(labels),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(HOLDER_IMAGE.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn label_u64(labels: &HashMap<String, String>, key: &str) -> u64 {
    labels.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The engine refused an update made from an older version of the service.
fn is_out_of_sequence(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("out of sequence"))
}

/// 409: a service of that name exists.
fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}
