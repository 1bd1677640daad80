//! Cluster mode: several daemons sharing one repository, coordinated through etcd.
//!
//! - **Heartbeat**: each daemon keeps `/lifeboat/hosts/HOST` (its services) under a lease
//!   it renews several times per TTL; a daemon that stops renewing vanishes from the cluster
//!   within the TTL.
//! - **Election**: the leader is whoever created `/lifeboat/leader` under its lease; the
//!   others try to create it on every beat, so a standby leads within about one TTL of the
//!   leader's last renewal.
//! - **Fencing**: the leader's term is the key's create revision. A repository-wide job is
//!   claimed (`/lifeboat/claims/JOB/SLOT`) by one transaction conditioned on that revision,
//!   and [`Cluster::fence`] checks it again before each irreversible step. A daemon also
//!   stops counting itself leader when its last renewal is older than most of the TTL, so a
//!   frozen (SIGSTOP) or cut-off leader stops acting before its lease can have expired.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::ClusterPlan;
use crate::etcd::{Cond, Etcd, EtcdError, Op};

const LEADER: &str = "/lifeboat/leader";
const HOSTS: &str = "/lifeboat/hosts/";
const CLAIMS: &str = "/lifeboat/claims/";
const OWNERS: &str = "/lifeboat/owners/";
const DRILLS: &str = "/lifeboat/drills/";

/// Where a `lifeboat.failover=auto` service lives: `/lifeboat/owners/SERVICE`, with no
/// lease (it outlives its host). Written by its host when it first runs it, by the leader
/// (under its fence) when it moves it, and by the new host when the move ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Owner {
    /// The container name.
    pub service: String,
    /// The host that runs it (while `moving`: the one restoring it).
    pub host: String,
    /// Whether it runs there, is being restored there, or that restore failed.
    pub state: OwnerState,
    /// Every host it ran on before, each once, the most recent last: one of them that comes
    /// back and is not `host` stops its stale copy.
    #[serde(default)]
    pub previous: Vec<String>,
    /// Its compose project: a stack moves together, to one host.
    #[serde(default)]
    pub stack: Option<String>,
    /// `lifeboat.failover-hosts`: where it may go, in order of preference.
    #[serde(default)]
    pub failover_hosts: Vec<String>,
    /// When this record was written (RFC 3339).
    pub at: String,
    /// What the move is, or why it failed.
    #[serde(default)]
    pub detail: Option<String>,
    /// Hosts whose restore of it failed during this move (not chosen again first).
    #[serde(default)]
    pub tried: Vec<String>,
    /// The record's etcd revision (transactions compare it; not stored).
    #[serde(skip)]
    pub revision: i64,
}

/// Where a failover service is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerState {
    /// It runs on its host.
    #[default]
    Running,
    /// The leader moved it; its new host is restoring it.
    Moving,
    /// The new host's restore failed; the leader tries another host.
    Failed,
}

impl Owner {
    /// The etcd key of this record.
    fn key(&self) -> String {
        format!("{OWNERS}{}", self.service)
    }
}

/// What a daemon publishes about its host, under its lease.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostRecord {
    /// The host's identity (`[cluster] host`).
    pub host: String,
    /// When the daemon last wrote this (RFC 3339): the heartbeat.
    pub at: String,
    /// When that daemon started.
    pub started_at: String,
    /// Its API address.
    pub api: String,
    /// The services it manages.
    pub services: Vec<String>,
    /// Its services' drill schedules (the leader runs them).
    #[serde(default)]
    pub drills: Vec<DrillPlan>,
}

/// A service's drills, as its host publishes them for the leader.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrillPlan {
    /// The container name.
    pub service: String,
    /// `lifeboat.drill`, as written (`1d`, `@daily`...).
    pub every: String,
    /// It has a backup to drill.
    pub backed_up: bool,
}

/// The end of one drill, published by the host that ran it (`/lifeboat/drills/SERVICE/
/// HOST-JOB`, under a lease): the service's own host counts it as its own drill.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrillResult {
    /// The container name.
    pub service: String,
    /// The host that ran the drill.
    pub host: String,
    /// The drill's job id on that host.
    pub job: i64,
    /// It restored, started and probed the backup.
    pub ok: bool,
    /// The backup it restored.
    pub backup_id: Option<String>,
    /// Its manifest snapshot.
    pub snapshot_id: Option<String>,
    /// The region it restored from (none: the primary repository).
    #[serde(default)]
    pub region: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// How long it ran.
    pub duration_seconds: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl DrillResult {
    fn key(&self) -> String {
        format!("{DRILLS}{}/{}-{}", self.service, self.host, self.job)
    }
}

/// A host as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostView {
    /// What the host published.
    #[serde(flatten)]
    pub record: HostRecord,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_seconds: f64,
    /// It leads the cluster.
    pub leader: bool,
}

/// The cluster as this daemon last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// This daemon's host.
    pub host: String,
    /// The leading host, if any.
    pub leader: Option<String>,
    /// This daemon leads (and may run repository-wide jobs).
    pub leading: bool,
    /// Since when it leads (RFC 3339).
    pub leading_since: Option<String>,
    /// etcd answered the last heartbeat.
    pub etcd_ok: bool,
    /// What went wrong with etcd, if it did.
    pub etcd_error: Option<String>,
    /// The registered hosts, by name.
    pub hosts: Vec<HostView>,
    /// Where each failover service lives, by name.
    pub services: Vec<Owner>,
}

/// The outcome of claiming a repository-wide job's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This daemon runs it.
    Won,
    /// Someone already ran (or runs) this slot.
    Taken(String),
    /// This daemon does not lead (any more).
    NotLeader,
    /// etcd did not answer: nothing repository-wide runs.
    Unavailable(String),
}

#[derive(Default)]
struct Inner {
    lease: i64,
    /// When the last renewal that succeeded was sent.
    renewed: Option<Instant>,
    /// The leader key's create revision while this daemon leads.
    term: Option<i64>,
    since: Option<Timestamp>,
    view: ClusterView,
}

/// This daemon's membership in the cluster.
pub struct Cluster {
    /// The validated `[cluster]` section.
    pub plan: ClusterPlan,
    etcd: Etcd,
    inner: Mutex<Inner>,
}

/// The claim key of `job`'s `slot`.
fn claim_key(job: &str, slot: i64) -> String {
    format!("{CLAIMS}{job}/{slot}")
}

/// The slot a repository-wide job started at `t` belongs to, and when its window began:
/// schedules are cut into windows of one interval from the epoch, the same on every host,
/// and each window's job runs once in the whole cluster.
pub fn slot_of(schedule: &lifeboat_model::policy::Schedule, t: Timestamp) -> (i64, Timestamp) {
    let every = schedule.interval(t).as_secs().max(1) as i64;
    let slot = t.as_second().div_euclid(every);
    let began = Timestamp::from_second(slot * every).unwrap_or(t);
    (slot, began)
}

impl Cluster {
    /// A member of the cluster `plan` names; nothing is sent yet.
    pub fn new(plan: ClusterPlan) -> Cluster {
        // A request waits well under the TTL, so a dead member is skipped in time.
        let timeout = (plan.lease_ttl / 5).max(Duration::from_millis(500));
        Cluster {
            etcd: Etcd::new(&plan.etcd, timeout),
            inner: Mutex::new(Inner {
                view: ClusterView {
                    host: plan.host.clone(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            plan,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often [`Cluster::beat`] should run.
    pub fn beat_interval(&self) -> Duration {
        (self.plan.lease_ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Renewed recently enough that the lease surely still holds.
    fn fresh(inner: &Inner, ttl: Duration) -> bool {
        inner.renewed.is_some_and(|t| t.elapsed() < ttl * 3 / 5)
    }

    /// This daemon leads now.
    pub fn leading(&self) -> bool {
        let inner = self.inner();
        inner.term.is_some() && Self::fresh(&inner, self.plan.lease_ttl)
    }

    /// The cluster as last seen.
    pub fn view(&self) -> ClusterView {
        let inner = self.inner();
        let mut v = inner.view.clone();
        v.leading = inner.term.is_some() && Self::fresh(&inner, self.plan.lease_ttl);
        v
    }

    /// One heartbeat: renews the lease (a new one if it expired), publishes `record`,
    /// campaigns or confirms leadership, and reads the cluster. Returns true when this
    /// daemon has just become the leader.
    pub fn beat(&self, mut record: HostRecord) -> bool {
        match self.beat_inner(&mut record) {
            Ok(became) => became,
            Err(e) => {
                let mut inner = self.inner();
                inner.view.etcd_ok = false;
                inner.view.etcd_error = Some(e.to_string());
                if !Self::fresh(&inner, self.plan.lease_ttl) {
                    inner.term = None;
                    inner.since = None;
                    inner.view.leading_since = None;
                }
                false
            }
        }
    }

    fn beat_inner(&self, record: &mut HostRecord) -> Result<bool, EtcdError> {
        let ttl = self.plan.lease_ttl;
        let sent = Instant::now();
        let lease = self.inner().lease;
        let alive = lease != 0 && self.etcd.keep_alive(lease)? > 0;
        if !alive {
            // Expired (frozen, cut off, or etcd lost it): whatever it held is gone,
            // leadership included. Campaign afresh under a new lease.
            let new = self.etcd.grant(ttl.as_secs().max(1))?;
            let mut inner = self.inner();
            inner.lease = new;
            inner.term = None;
            inner.since = None;
        }
        let lease = {
            let mut inner = self.inner();
            inner.renewed = Some(sent);
            inner.lease
        };
        record.host = self.plan.host.clone();
        record.at = lifeboat_model::format_timestamp(Timestamp::now());
        let value = serde_json::to_vec(&*record).unwrap_or_default();
        self.etcd
            .put(&format!("{HOSTS}{}", self.plan.host), &value, lease)?;
        let term = self.inner().term;
        let mut became = false;
        let term = match term {
            Some(rev) => {
                let still = self
                    .etcd
                    .get(LEADER)?
                    .is_some_and(|k| k.create_revision == rev);
                still.then_some(rev)
            }
            None => {
                let host = self.plan.host.as_bytes();
                let (won, rev) = self
                    .etcd
                    .txn(&[Cond::Created(LEADER, 0)], &[Op::Put(LEADER, host, lease)])?;
                if won {
                    became = true;
                    Some(rev)
                } else {
                    // Still held under this daemon's own live lease (etcd was down and kept
                    // the lease): the term never ended, so it is taken up again.
                    let held = self.etcd.get(LEADER)?.filter(|k| k.lease == lease);
                    became = held.is_some();
                    held.map(|k| k.create_revision)
                }
            }
        };
        let (leader, hosts, services) = self.read()?;
        let now = Timestamp::now();
        let mut inner = self.inner();
        inner.term = term;
        if became {
            inner.since = Some(now);
        }
        if term.is_none() {
            inner.since = None;
        }
        inner.view = ClusterView {
            host: self.plan.host.clone(),
            leader,
            leading: false,
            leading_since: inner.since.map(lifeboat_model::format_timestamp),
            etcd_ok: true,
            etcd_error: None,
            hosts,
            services,
        };
        Ok(became)
    }

    /// Claims slot `slot` of the repository-wide job `job` for this daemon, under its term.
    /// The claim is kept `keep` (under a lease of its own), then etcd forgets it: by then its
    /// window is long past and the slot can never be claimed again.
    pub fn claim(&self, job: &str, slot: i64, keep: Duration, detail: &serde_json::Value) -> Claim {
        let Some(term) = self.term() else {
            return Claim::NotLeader;
        };
        let lease = match self.etcd.grant(keep.as_secs().max(60)) {
            Ok(l) => l,
            Err(e) => return Claim::Unavailable(e.to_string()),
        };
        let key = claim_key(job, slot);
        let value = serde_json::json!({"host": self.plan.host, "term": term,
            "at": lifeboat_model::format_timestamp(Timestamp::now()), "detail": detail});
        let value = serde_json::to_vec(&value).unwrap_or_default();
        let txn = self.etcd.txn(
            &[Cond::Created(LEADER, term), Cond::Created(&key, 0)],
            &[Op::Put(&key, &value, lease)],
        );
        if !matches!(txn, Ok((true, _))) {
            let _ = self.etcd.revoke(lease);
        }
        match txn {
            Ok((true, _)) => Claim::Won,
            Ok((false, _)) => match self.etcd.get(&key) {
                Ok(Some(k)) => {
                    // Claimed in an earlier term whose job never ended (its leader died or
                    // was fenced mid-job): this term takes the slot over, so the window's
                    // job still runs to its end once.
                    let prior: serde_json::Value =
                        serde_json::from_slice(&k.value).unwrap_or_default();
                    let unfinished = prior["term"].as_i64() != Some(term) && prior["done"] != true;
                    let conds = [
                        Cond::Created(LEADER, term),
                        Cond::Modified(&key, k.mod_revision),
                    ];
                    if unfinished
                        && matches!(
                            self.etcd.txn(&conds, &[Op::Put(&key, &value, k.lease)]),
                            Ok((true, _))
                        )
                    {
                        return Claim::Won;
                    }
                    Claim::Taken(String::from_utf8_lossy(&k.value).into_owned())
                }
                Ok(None) => {
                    self.inner().term = None;
                    Claim::NotLeader
                }
                Err(e) => Claim::Unavailable(e.to_string()),
            },
            Err(e) => Claim::Unavailable(e.to_string()),
        }
    }

    /// Marks this daemon's claim of `job`'s `slot` done once its job ended while this
    /// daemon still led (a job cut short, or fenced off, stays open for the next leader).
    pub fn finish_claim(&self, job: &str, slot: i64) {
        let Some(term) = self.term() else {
            return;
        };
        let key = claim_key(job, slot);
        let Ok(Some(k)) = self.etcd.get(&key) else {
            return;
        };
        let mut v: serde_json::Value = serde_json::from_slice(&k.value).unwrap_or_default();
        if v["term"].as_i64() != Some(term) || v["host"] != self.plan.host.as_str() {
            return;
        }
        v["done"] = serde_json::json!(true);
        let value = serde_json::to_vec(&v).unwrap_or_default();
        let conds = [
            Cond::Created(LEADER, term),
            Cond::Modified(&key, k.mod_revision),
        ];
        let _ = self.etcd.txn(&conds, &[Op::Put(&key, &value, k.lease)]);
    }

    fn term(&self) -> Option<i64> {
        let inner = self.inner();
        inner
            .term
            .filter(|_| Self::fresh(&inner, self.plan.lease_ttl))
    }

    /// Asked before each irreversible step of a repository-wide job: this daemon still
    /// leads, by its own clock and by etcd's word.
    pub fn fence(&self) -> Result<(), String> {
        let host = &self.plan.host;
        let Some(term) = self.term() else {
            return Err(format!(
                "`{host}` no longer leads the cluster (its lease was not renewed in time)"
            ));
        };
        match self.etcd.txn(&[Cond::Created(LEADER, term)], &[]) {
            Ok((true, _)) => Ok(()),
            Ok((false, _)) => {
                self.inner().term = None;
                Err(format!(
                    "`{host}` no longer leads the cluster (another daemon took over)"
                ))
            }
            Err(e) => Err(format!("`{host}` cannot confirm it still leads: {e}")),
        }
    }

    /// Leaves the cluster (SIGTERM): the lease is revoked, so a standby leads at once.
    pub fn leave(&self) {
        let lease = std::mem::take(&mut self.inner().lease);
        self.inner().term = None;
        if lease != 0 {
            let _ = self.etcd.revoke(lease);
        }
    }

    /// Writes `owners` in one transaction, each only if its record is still at the revision
    /// it was read at (0: it does not exist yet); `fenced`: only while this daemon leads.
    /// Returns whether it was written.
    pub fn write_owners(&self, owners: &[Owner], fenced: bool) -> Result<bool, EtcdError> {
        let keys: Vec<String> = owners.iter().map(Owner::key).collect();
        let values: Vec<Vec<u8>> = owners
            .iter()
            .map(|o| serde_json::to_vec(o).unwrap_or_default())
            .collect();
        let mut conds: Vec<Cond<'_>> = keys
            .iter()
            .zip(owners)
            .map(|(k, o)| Cond::Modified(k, o.revision))
            .collect();
        if fenced {
            let Some(term) = self.term() else {
                return Ok(false);
            };
            conds.push(Cond::Created(LEADER, term));
        }
        let ops: Vec<Op<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| Op::Put(k, v, 0))
            .collect();
        Ok(self.etcd.txn(&conds, &ops)?.0)
    }

    /// Removes `owner`'s record if it is still at the revision it was read at.
    pub fn forget_owner(&self, owner: &Owner) -> Result<bool, EtcdError> {
        let key = owner.key();
        Ok(self
            .etcd
            .txn(&[Cond::Modified(&key, owner.revision)], &[Op::Delete(&key)])?
            .0)
    }

    /// Ok while every one of `owners` is still at the revision it was read at (a move this
    /// host was given has not been taken back), else why not.
    pub fn still_assigned(&self, owners: &[Owner]) -> Result<(), String> {
        let keys: Vec<String> = owners.iter().map(Owner::key).collect();
        let conds: Vec<Cond<'_>> = keys
            .iter()
            .zip(owners)
            .map(|(k, o)| Cond::Modified(k, o.revision))
            .collect();
        match self.etcd.txn(&conds, &[]) {
            Ok((true, _)) => Ok(()),
            Ok((false, _)) => Err(format!(
                "the cluster no longer assigns this move to `{}`",
                self.plan.host
            )),
            Err(e) => Err(format!("cannot confirm the move with etcd: {e}")),
        }
    }

    /// Publishes the end of a drill this daemon ran, kept `keep` (then etcd forgets it).
    pub fn publish_drill(&self, result: &DrillResult, keep: Duration) -> Result<(), EtcdError> {
        let lease = self.etcd.grant(keep.as_secs().max(60))?;
        let value = serde_json::to_vec(result).unwrap_or_default();
        self.etcd.put(&result.key(), &value, lease)
    }

    /// Every published drill result, oldest first. Results whose names are not valid
    /// container or host names, or whose key does not match, are ignored.
    pub fn drill_results(&self) -> Result<Vec<DrillResult>, EtcdError> {
        let name = lifeboat_model::names::container_name;
        let mut out: Vec<(i64, DrillResult)> = self
            .etcd
            .list(DRILLS)?
            .into_iter()
            .filter_map(|k| {
                let r = serde_json::from_slice::<DrillResult>(&k.value).ok()?;
                let named = name(&r.service).is_ok() && name(&r.host).is_ok() && k.key == r.key();
                named.then_some((k.create_revision, r))
            })
            .collect();
        out.sort_by_key(|(rev, _)| *rev);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Every failover service's record, as etcd holds it now.
    pub fn owners(&self) -> Result<Vec<Owner>, EtcdError> {
        Ok(self
            .etcd
            .list(OWNERS)?
            .into_iter()
            .filter_map(|k| {
                let mut o = serde_json::from_slice::<Owner>(&k.value).ok()?;
                // Names reach the engine: a record that does not hold one is ignored.
                let name = lifeboat_model::names::container_name;
                let named = name(&o.service).is_ok()
                    && k.key == o.key()
                    && std::iter::once(&o.host)
                        .chain(&o.previous)
                        .all(|h| name(h).is_ok());
                o.revision = k.mod_revision;
                named.then_some(o)
            })
            .collect())
    }

    /// The leading host, the registered ones and the failover services, read from etcd.
    #[allow(clippy::type_complexity)]
    fn read(&self) -> Result<(Option<String>, Vec<HostView>, Vec<Owner>), EtcdError> {
        let leader = self
            .etcd
            .get(LEADER)?
            .map(|k| String::from_utf8_lossy(&k.value).into_owned());
        let now = Timestamp::now();
        let hosts = self
            .etcd
            .list(HOSTS)?
            .into_iter()
            .filter_map(|k| serde_json::from_slice::<HostRecord>(&k.value).ok())
            .map(|r| host_view(r, leader.as_deref(), now))
            .collect();
        Ok((leader, hosts, self.owners()?))
    }

    /// Reads the cluster without joining it (`lifeboat cluster status`).
    pub fn observe(&self) -> Result<ClusterView, EtcdError> {
        let (leader, hosts, services) = self.read()?;
        Ok(ClusterView {
            host: self.plan.host.clone(),
            leader,
            etcd_ok: true,
            hosts,
            services,
            ..Default::default()
        })
    }
}

fn host_view(r: HostRecord, leader: Option<&str>, now: Timestamp) -> HostView {
    let at: Option<Timestamp> = r.at.parse().ok();
    HostView {
        heartbeat_age_seconds: at.map_or(f64::NAN, |t| {
            (now.as_millisecond() - t.as_millisecond()).max(0) as f64 / 1000.0
        }),
        leader: leader == Some(r.host.as_str()),
        record: r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_model::policy::Schedule;

    #[test]
    fn every_host_puts_a_moment_in_the_same_slot() {
        let s = Schedule::parse("1m").unwrap();
        let t: Timestamp = "2026-12-01T10:00:59Z".parse().unwrap();
        let u: Timestamp = "2026-12-01T10:01:00Z".parse().unwrap();
        assert_eq!(slot_of(&s, t).0 + 1, slot_of(&s, u).0);
        assert_eq!(slot_of(&s, u), (u.as_second() / 60, u));
        assert_eq!(slot_of(&s, t).1, "2026-12-01T10:00:00Z".parse().unwrap());
        let daily = Schedule::parse("@daily").unwrap();
        let a: Timestamp = "2026-12-01T00:00:01Z".parse().unwrap();
        let b: Timestamp = "2026-12-01T23:59:59Z".parse().unwrap();
        assert_eq!(slot_of(&daily, a).0, slot_of(&daily, b).0);
    }
}
