//! Host failover: a `lifeboat.failover=auto` service whose host died comes back on another
//! host, from the shared repository.
//!
//! - **Ownership** (`/lifeboat/owners/SERVICE`, see [`Owner`]): a host records each failover
//!   service it runs. The record has no lease, so it outlives its host.
//! - **The leader** ([`lead`]): once a host's registration has been gone for
//!   `failover_after`, it moves that host's failover services (a compose project together)
//!   to one surviving host: the first alive of `lifeboat.failover-hosts`, else the least
//!   loaded. The move is one etcd transaction under its fence.
//! - **The new host** ([`follow`]): restores what was moved to it as a stack, in dependency
//!   order and health-gated, asking before each container start that the move is still its
//!   own, then records the service as running there (or the failure, and the leader tries
//!   another host).
//! - **A host that comes back** ([`stop_stale_copies`], before anything else at start and on
//!   every heartbeat): it stops, and never lets the engine restart, its own copies of
//!   services that moved away, and leaves them out of its backups and recoveries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_model::JobKind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{Cluster, ClusterView, Owner, OwnerState};
use crate::daemon::Daemon;
use crate::log::log_line;

/// How long the leader waits before it tries again a move whose restore failed.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What this daemon knows of failover locally.
#[derive(Debug, Default)]
pub struct Local {
    /// Services that moved to another host: this host's copy is stopped and unmanaged.
    pub moved_away: BTreeSet<String>,
    /// Owner records (service, revision) this host already checked for a stale copy.
    checked: BTreeSet<(String, i64)>,
    /// Moves to this host already queued, as (service, record revision): a view read before
    /// the job rewrote the records never queues the same move twice.
    queued: BTreeSet<(String, i64)>,
    /// Services whose name another host already owns (warned once).
    clashes: BTreeSet<String>,
}

/// A failover service as its host declares it (from its labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `lifeboat.failover-hosts`, in order.
    pub hosts: Vec<String>,
    /// Its compose project.
    pub stack: Option<String>,
}

/// What a failover job restores (its request).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverJob {
    /// The owner records of the move, as the job was queued.
    pub owners: Vec<OwnerRef>,
}

/// One service of a move and the revision of its record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnerRef {
    /// The service.
    pub service: String,
    /// Its record's revision when the move was seen.
    pub revision: i64,
}

/// A move the leader decided: these records, rewritten to name their new host.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The host they leave.
    pub from: String,
    /// The host they go to.
    pub to: String,
    /// The rewritten records (each with the revision it was read at).
    pub owners: Vec<Owner>,
}

fn now_text() -> String {
    lifeboat_model::format_timestamp(Timestamp::now())
}

/// The group a record moves with: its compose project on its host, else itself.
fn group_of(o: &Owner) -> (String, String) {
    (
        o.host.clone(),
        o.stack.clone().unwrap_or_else(|| o.service.clone()),
    )
}

/// Decides the moves: records whose host is gone and `ripe` (gone long enough, or a failed
/// restore old enough to try again) go, a group together, to the first alive host of their
/// `failover-hosts`, else the least loaded alive host (`load`: services per alive host);
/// hosts that already failed the move come last. Pure.
pub fn plan_moves(
    owners: &[Owner],
    load: &BTreeMap<String, usize>,
    ripe: &dyn Fn(&Owner) -> bool,
) -> Vec<Move> {
    let mut groups: BTreeMap<(String, String), Vec<&Owner>> = BTreeMap::new();
    for o in owners {
        let needs = match o.state {
            OwnerState::Running | OwnerState::Moving => !load.contains_key(&o.host),
            OwnerState::Failed => true,
        };
        if needs && ripe(o) {
            groups.entry(group_of(o)).or_default().push(o);
        }
    }
    let mut load = load.clone();
    let mut moves = Vec::new();
    for ((from, _), members) in groups {
        let tried: BTreeSet<&String> = members.iter().flat_map(|o| &o.tried).collect();
        let mut hints: Vec<&String> = Vec::new();
        for h in members.iter().flat_map(|o| &o.failover_hosts) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
        let pick = |skip_tried: bool| {
            let ok = |h: &&String| {
                **h != from && load.contains_key(*h) && !(skip_tried && tried.contains(*h))
            };
            hints.iter().copied().find(ok).cloned().or_else(|| {
                load.iter()
                    .filter(|(h, _)| ok(h))
                    .min_by_key(|(h, n)| (**n, (*h).clone()))
                    .map(|(h, _)| h.clone())
            })
        };
        let Some(to) = pick(true).or_else(|| pick(false)) else {
            continue;
        };
        *load.entry(to.clone()).or_default() += members.len();
        let owners = members
            .iter()
            .map(|o| {
                let mut n = (*o).clone();
                if n.state != OwnerState::Failed {
                    n.tried.clear();
                }
                // Every host it ran on, each once, the most recent last (a host that comes
                // back and is not its host any more has a stale copy).
                if n.host != to {
                    let left = n.host.clone();
                    n.previous.retain(|h| *h != left);
                    n.previous.push(left);
                }
                n.detail = Some(match o.state {
                    OwnerState::Failed => format!(
                        "moving to {to}: the restore on {from} failed ({})",
                        o.detail.as_deref().unwrap_or("no reason recorded")
                    ),
                    _ => format!("moving to {to}: host {from} is gone"),
                });
                n.host = to.clone();
                n.state = OwnerState::Moving;
                n.at = now_text();
                n
            })
            .collect();
        moves.push(Move { from, to, owners });
    }
    moves
}

/// The leader's part, on each heartbeat while it leads: moves the failover services of
/// hosts gone for `failover_after`. `gone` remembers since when each host was seen missing
/// (a new leader starts counting afresh: it waits rather than moves too early).
pub fn lead(c: &Cluster, view: &ClusterView, gone: &mut BTreeMap<String, Instant>) {
    let load: BTreeMap<String, usize> = view
        .hosts
        .iter()
        .map(|h| (h.record.host.clone(), h.record.services.len()))
        .collect();
    gone.retain(|h, _| !load.contains_key(h));
    for o in &view.services {
        if !load.contains_key(&o.host) {
            gone.entry(o.host.clone()).or_insert_with(Instant::now);
        }
    }
    let after = c.plan.failover_after;
    let ripe = |o: &Owner| match o.state {
        OwnerState::Failed => o.at.parse::<Timestamp>().map_or(true, |t| {
            Timestamp::now().duration_since(t).unsigned_abs() >= RETRY_AFTER
        }),
        _ => gone.get(&o.host).is_some_and(|t| t.elapsed() >= after),
    };
    for m in plan_moves(&view.services, &load, &ripe) {
        let names: Vec<&str> = m.owners.iter().map(|o| o.service.as_str()).collect();
        match c.write_owners(&m.owners, true) {
            Ok(true) => log_line(
                "warn",
                "failover: services moved to another host",
                json!({"from": m.from, "to": m.to, "services": names}),
            ),
            Ok(false) => log_line(
                "info",
                "failover: move not made (no longer leader, or the records changed)",
                json!({"from": m.from, "to": m.to, "services": names}),
            ),
            Err(e) => log_line(
                "error",
                "failover: cannot record the move",
                json!({"from": m.from, "to": m.to, "services": names, "error": e.to_string()}),
            ),
        }
    }
}

/// How long a stale copy gets to stop before SIGKILL: every second it runs it may take
/// writes the moved service never sees.
const STALE_STOP_GRACE_S: i32 = 1;

/// Stops this host's copies of services that moved to another host while it was away (or
/// cut off), all at once, and marks them unmanaged here: stopped, never restarted by the
/// engine, not backed up, not recovered. Returns what it stopped.
pub fn stop_stale_copies(d: &Daemon, me: &str, owners: &[Owner]) -> Vec<String> {
    let stale: Vec<&Owner> = owners
        .iter()
        .filter(|o| o.host != me && o.previous.iter().any(|h| h == me))
        .filter(|o| {
            !d.state()
                .failover
                .checked
                .contains(&(o.service.clone(), o.revision))
        })
        .collect();
    let outcomes: Vec<(&Owner, Result<Option<bool>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = stale
            .iter()
            .map(|o| (*o, scope.spawn(|| stop_one(d, &o.service))))
            .collect();
        handles
            .into_iter()
            .map(|(o, h)| (o, h.join().unwrap_or_else(|_| Err("panicked".into()))))
            .collect()
    });
    let mut stopped = Vec::new();
    for (o, outcome) in outcomes {
        match outcome {
            Err(e) => {
                log_line(
                    "error",
                    "failover: cannot stop a stale copy; will try again",
                    json!({"service": o.service, "now_on": o.host, "error": e}),
                );
                continue;
            }
            Ok(Some(was_running)) => {
                log_line(
                    "warn",
                    "failover: this host's copy of a service that moved was stopped",
                    json!({"service": o.service, "now_on": o.host, "was_running": was_running}),
                );
                stopped.push(o.service.clone());
                let mut st = d.state();
                st.failover.moved_away.insert(o.service.clone());
                st.services.remove(&o.service);
                st.scheduler.unschedule(&o.service);
                st.scheduler
                    .unschedule(&crate::daemon::drill_key(&o.service));
            }
            Ok(None) => {}
        }
        d.state()
            .failover
            .checked
            .insert((o.service.clone(), o.revision));
    }
    stopped
}

/// Stops `name` here for good, if it exists: whether it was running, or `None` when there
/// is no such container.
fn stop_one(d: &Daemon, name: &str) -> Result<Option<bool>, String> {
    let Some(c) = d.engine.container(name).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // The restart policy first: the engine must not start it again behind our back.
    d.engine.never_restart(name).map_err(|e| e.to_string())?;
    if c.state.running {
        d.engine
            .stop_container(name, STALE_STOP_GRACE_S)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(c.state.running))
}

/// This host's part, on each heartbeat: records the failover services it runs, queues the
/// restore of what was moved to it, stops stale copies, and forgets the records of failover
/// services it no longer has.
pub fn follow(d: &Daemon, c: &Cluster, view: &ClusterView) {
    let me = c.plan.host.as_str();
    stop_stale_copies(d, me, &view.services);
    let by_name: BTreeMap<&str, &Owner> = view
        .services
        .iter()
        .map(|o| (o.service.as_str(), o))
        .collect();
    // What this host runs with lifeboat.failover=auto.
    let mine: Vec<(String, Spec)> = {
        let st = d.state();
        st.services
            .values()
            .filter(|s| s.present && !st.failover.moved_away.contains(&s.name))
            .filter_map(|s| Some((s.name.clone(), s.failover.clone()?)))
            .collect()
    };
    for (name, spec) in &mine {
        let record = Owner {
            service: name.clone(),
            host: me.to_string(),
            stack: spec.stack.clone(),
            failover_hosts: spec.hosts.clone(),
            at: now_text(),
            ..Default::default()
        };
        let write = match by_name.get(name.as_str()) {
            None => Some(record),
            Some(o) if o.host == me && o.state == OwnerState::Running => {
                (o.stack != spec.stack || o.failover_hosts != spec.hosts).then(|| Owner {
                    previous: o.previous.clone(),
                    revision: o.revision,
                    ..record
                })
            }
            Some(o) if o.host != me && !o.previous.iter().any(|h| h == me) => {
                if d.state().failover.clashes.insert(name.clone()) {
                    log_line(
                        "error",
                        "failover: another host already owns a service of this name; \
                         this one is not failed over (rename one of them)",
                        json!({"service": name, "owner": o.host}),
                    );
                }
                None
            }
            Some(_) => None,
        };
        if let Some(w) = write
            && let Err(e) = c.write_owners(&[w], false)
        {
            log_line(
                "error",
                "failover: cannot record a service's host",
                json!({"service": name, "error": e.to_string()}),
            );
        }
    }
    // Records of failover services this host no longer has (removed by hand, or its
    // label dropped): forgotten, so a later failure of this host does not bring back a
    // service nobody runs.
    let has = |name: &str| mine.iter().any(|(n, _)| n == name);
    for o in &view.services {
        if o.host == me
            && o.state == OwnerState::Running
            && !has(&o.service)
            && !d.state().failover.moved_away.contains(&o.service)
            && d.discovered()
        {
            let still_there = d.engine.container(&o.service).map(|c| {
                c.is_some_and(|c| {
                    lifeboat_model::policy::failover_hosts(&c.config.labels)
                        .is_ok_and(|f| f.is_some())
                })
            });
            if let Ok(false) = still_there
                && c.forget_owner(o).unwrap_or(false)
            {
                log_line(
                    "info",
                    "failover: a service this host no longer runs is forgotten",
                    json!({"service": o.service}),
                );
            }
        }
    }
    // Moves to this host: one restore job per group.
    let mut groups: BTreeMap<String, Vec<&Owner>> = BTreeMap::new();
    for o in &view.services {
        if o.host == me && o.state == OwnerState::Moving {
            groups
                .entry(o.stack.clone().unwrap_or_else(|| o.service.clone()))
                .or_default()
                .push(o);
        }
    }
    for (group, members) in groups {
        let key = format!("failover#{group}");
        let refs: Vec<(String, i64)> = members
            .iter()
            .map(|o| (o.service.clone(), o.revision))
            .collect();
        {
            let mut st = d.state();
            if refs.iter().all(|r| st.failover.queued.contains(r)) {
                continue;
            }
            st.failover.queued.extend(refs.iter().cloned());
        }
        let request = FailoverJob {
            owners: members
                .iter()
                .map(|o| OwnerRef {
                    service: o.service.clone(),
                    revision: o.revision,
                })
                .collect(),
        };
        let queued = d.enqueue_for(
            &key,
            JobKind::Failover,
            serde_json::to_value(&request).ok(),
            "failover",
        );
        match queued {
            Ok(job) => log_line(
                "warn",
                "failover: restoring services moved to this host",
                json!({"job": job, "services": members.iter().map(|o| &o.service).collect::<Vec<_>>()}),
            ),
            Err(e) => {
                let mut st = d.state();
                for r in &refs {
                    st.failover.queued.remove(r);
                }
                drop(st);
                log_line(
                    "error",
                    "failover: cannot queue the restore",
                    json!({"group": group, "error": e.to_string()}),
                );
            }
        }
    }
}

/// The records a failover job restores, re-read: only those still moving to this host at
/// the revision the job was queued with.
pub fn assigned(c: &Cluster, job: &FailoverJob) -> Result<Vec<Owner>, String> {
    let all = c
        .owners()
        .map_err(|e| format!("cannot read the move from etcd: {e}"))?;
    let me = &c.plan.host;
    let owners: Vec<Owner> = job
        .owners
        .iter()
        .filter_map(|r| {
            all.iter()
                .find(|o| {
                    o.service == r.service
                        && o.revision == r.revision
                        && &o.host == me
                        && o.state == OwnerState::Moving
                })
                .cloned()
        })
        .collect();
    if owners.is_empty() {
        return Err(format!(
            "the cluster no longer moves these services to `{me}` (another host took them, \
             or their records changed)"
        ));
    }
    Ok(owners)
}

/// The records after this host's restore: running here, or failed (with why, and this host
/// among those tried).
pub fn after_restore(owners: &[Owner], me: &str, error: Option<&str>) -> Vec<Owner> {
    owners
        .iter()
        .map(|o| {
            let mut n = o.clone();
            n.at = now_text();
            match error {
                None => {
                    n.state = OwnerState::Running;
                    n.tried.clear();
                    n.detail = None;
                }
                Some(e) => {
                    n.state = OwnerState::Failed;
                    if !n.tried.iter().any(|h| h == me) {
                        n.tried.push(me.to_string());
                    }
                    n.detail = Some(e.to_string());
                }
            }
            n
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(service: &str, host: &str, stack: Option<&str>, hints: &[&str]) -> Owner {
        Owner {
            service: service.into(),
            host: host.into(),
            stack: stack.map(str::to_string),
            failover_hosts: hints.iter().map(|h| h.to_string()).collect(),
            at: "2026-12-02T00:00:00Z".into(),
            revision: 7,
            ..Default::default()
        }
    }

    fn load(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
    }

    #[test]
    fn a_dead_hosts_stack_moves_together_to_its_named_host_else_the_least_loaded() {
        let owners = vec![
            owner("db", "h1", Some("shop"), &["h3"]),
            owner("web", "h1", Some("shop"), &[]),
            owner("cache", "h1", None, &[]),
            owner("other", "h2", None, &[]),
        ];
        let alive = load(&[("h2", 5), ("h3", 9), ("h4", 1)]);
        let moves = plan_moves(&owners, &alive, &|_| true);
        assert_eq!(moves.len(), 2, "{moves:?}");
        let cache = moves
            .iter()
            .find(|m| m.owners[0].service == "cache")
            .unwrap();
        assert_eq!((cache.from.as_str(), cache.to.as_str()), ("h1", "h4"));
        let shop = moves.iter().find(|m| m.owners.len() == 2).unwrap();
        assert_eq!(shop.to, "h3", "the named host wins over the least loaded");
        for o in &shop.owners {
            assert_eq!((o.host.as_str(), o.state), ("h3", OwnerState::Moving));
            assert_eq!(o.previous, vec!["h1".to_string()]);
            assert_eq!(o.revision, 7, "each write compares the revision it read");
        }
    }

    #[test]
    fn nothing_moves_while_its_host_lives_or_before_it_is_ripe() {
        let owners = vec![owner("db", "h1", None, &[])];
        assert!(plan_moves(&owners, &load(&[("h1", 1), ("h2", 0)]), &|_| true).is_empty());
        assert!(plan_moves(&owners, &load(&[("h2", 0)]), &|_| false).is_empty());
        assert!(
            plan_moves(&owners, &load(&[]), &|_| true).is_empty(),
            "no surviving host: it waits"
        );
    }

    #[test]
    fn a_failed_restore_goes_to_a_host_not_yet_tried_then_back_to_the_tried_ones() {
        let mut o = owner("db", "h2", None, &["h2", "h3"]);
        o.state = OwnerState::Failed;
        o.tried = vec!["h2".into()];
        o.previous = vec!["h1".into()];
        let m = plan_moves(
            std::slice::from_ref(&o),
            &load(&[("h2", 0), ("h3", 4)]),
            &|_| true,
        );
        assert_eq!(m[0].to, "h3");
        assert_eq!(m[0].owners[0].previous, vec!["h1".to_string(), "h2".into()]);
        assert_eq!(m[0].owners[0].tried, vec!["h2".to_string()]);
        o.tried = vec!["h2".into(), "h3".into()];
        let m = plan_moves(
            std::slice::from_ref(&o),
            &load(&[("h2", 0), ("h3", 4)]),
            &|_| true,
        );
        assert_eq!(m[0].to, "h3", "every host tried: the first named one again");
    }

    #[test]
    fn a_service_moved_back_remembers_every_host_it_ran_on_once() {
        let mut o = owner("db", "h2", None, &[]);
        o.previous = vec!["h1".into()];
        let m = plan_moves(&[o], &load(&[("h1", 0)]), &|_| true);
        assert_eq!(m[0].to, "h1");
        assert_eq!(m[0].owners[0].host, "h1");
        assert_eq!(
            m[0].owners[0].previous,
            vec!["h1".to_string(), "h2".into()],
            "h1 restores over its own old copy; h2 is now the stale one"
        );
    }

    #[test]
    fn after_the_restore_the_record_says_running_or_failed_and_who_tried() {
        let o = owner("db", "h2", None, &[]);
        let ok = after_restore(std::slice::from_ref(&o), "h2", None);
        assert_eq!(ok[0].state, OwnerState::Running);
        let failed = after_restore(&[o], "h2", Some("unhealthy"));
        assert_eq!(failed[0].state, OwnerState::Failed);
        assert_eq!(failed[0].tried, vec!["h2".to_string()]);
        assert_eq!(failed[0].detail.as_deref(), Some("unhealthy"));
    }
}
