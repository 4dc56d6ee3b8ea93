//! The reconciler without sockets, processes or real time: a simulated world (a runtime
//! that starts and stops instances when told, a store that fails on demand, health that
//! flips) plays the executor's part exactly as `crate::actor` does — every `Persist`
//! answered before anything else. Unit tests drive one policy each with injected time;
//! the simulation drives seeded random events over every strategy and checks the
//! invariants after every step.

use super::*;
use crate::model::AppRecord;
use baton_runtime::HandleDetail;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

const APP: &str = "web";

fn config(strategy: &str, extra: &str) -> AppConfig {
    let text = format!(
        r#"
[apps.web]
command = "./web --port {{port}}"
replicas = 2
strategy = "{strategy}"
drain_timeout = "5s"

[apps.web.blue_green]
scale_down_delay = "20s"

[apps.web.canary]
steps = [{{ weight = 20 }}, {{ pause = "10s" }}, {{ weight = 50 }}, {{ pause = "10s" }}]

[apps.web.rolling]
max_surge = 1
max_unavailable = 0

[apps.web.ab_test]
weight = 50
{extra}
"#
    );
    let cfg = baton_config::parse(&text, Path::new("baton.toml")).expect("test config parses");
    cfg.apps[APP].clone()
}

/// A background task the world has not finished yet.
#[derive(Debug)]
enum Task {
    Start(StartRequest),
    Stop(String),
    Gate(Gate, Option<usize>),
    Notify(Gate, String),
    Prometheus(Box<Round>),
    Hook(String, HookKind),
}

/// The executor and everything outside the reconciler.
struct World {
    cfg: AppConfig,
    core: AppCore,
    now: Millis,
    store_fails: bool,
    /// The last stored record (JSON, as the real store keeps it) and the history.
    stored: Option<String>,
    history: Vec<HistoryEntry>,
    /// Instances alive in the runtime, with their real health.
    running: BTreeMap<String, (InstanceHandle, bool)>,
    tasks: Vec<Task>,
    watched: BTreeSet<String>,
    /// Watched instances whose monitor has not reported yet (it always reports first).
    fresh: BTreeSet<String>,
    published: Option<AppRouteSpec>,
    replies: BTreeMap<Ticket, Result<Answer, String>>,
    next_ticket: Ticket,
    next_port: u16,
    /// Faults since the deployment began (capacity is promised only without them).
    faults: u32,
    /// The last steps, for a failure message.
    trail: Vec<String>,
    /// Hooks run: (deployment, hook, told it is a re-run).
    hook_runs: Vec<(String, HookKind, bool)>,
    /// Exit code of the next hooks that finish successfully (`finish_task(ok)`).
    hook_exit: i32,
    /// Output of the next hooks.
    hook_output: Vec<String>,
    /// Deployments whose release hook is stored as succeeded: never run again.
    release_stored_done: BTreeSet<String>,
    /// `pre_stop` hooks handed over with a drain: (instance, request).
    pre_stops: Vec<(InstanceHandle, baton_runtime::TaskRequest)>,
    /// The static runtime: instances are the operator's `--target` addresses.
    static_runtime: bool,
}

impl World {
    fn new(cfg: AppConfig) -> World {
        World::with_runtime(cfg, false)
    }

    /// A world whose runtime is `static`: every start is at the address it is given.
    fn new_static(cfg: AppConfig) -> World {
        World::with_runtime(cfg, true)
    }

    fn with_runtime(cfg: AppConfig, static_runtime: bool) -> World {
        let core = AppCore::new(
            cfg.clone(),
            AppRecord::new(APP),
            BTreeSet::new(),
            None,
            static_runtime,
            if static_runtime { "static" } else { "process" },
        );
        let mut w = World {
            cfg,
            core,
            now: Millis(1_000_000),
            store_fails: false,
            stored: None,
            history: Vec::new(),
            running: BTreeMap::new(),
            tasks: Vec::new(),
            watched: BTreeSet::new(),
            fresh: BTreeSet::new(),
            published: None,
            replies: BTreeMap::new(),
            next_ticket: 0,
            next_port: 20000,
            faults: 0,
            trail: Vec::new(),
            hook_runs: Vec::new(),
            hook_exit: 0,
            hook_output: Vec::new(),
            release_stored_done: BTreeSet::new(),
            pre_stops: Vec::new(),
            static_runtime,
        };
        w.send(Event::Boot { lost: Vec::new() });
        w
    }

    /// One event through the reconciler, its effects carried out like the actor does.
    fn send(&mut self, event: Event) {
        self.trail.push(short(&event));
        if self.trail.len() > 60 {
            self.trail.remove(0);
        }
        let mut effects = self.core.handle(event, self.now);
        loop {
            let mut next = None;
            let count = effects.len();
            for (i, effect) in effects.into_iter().enumerate() {
                if let Some(ev) = self.carry_out(effect) {
                    assert!(
                        !matches!(ev, Event::Stored(_)) || i + 1 == count,
                        "a Persist must be the last effect of a batch"
                    );
                    next = Some(ev);
                }
            }
            match next {
                Some(ev) => effects = self.core.handle(ev, self.now),
                None => break,
            }
        }
    }

    fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Persist {
                record, history, ..
            } => {
                if self.store_fails {
                    return Some(Event::Stored(Err("injected store failure".into())));
                }
                if let Some(d) = &record.deployment {
                    let done = d
                        .release
                        .as_ref()
                        .is_some_and(|r| r.state == crate::model::HookState::Succeeded);
                    if done {
                        self.release_stored_done.insert(d.id.clone());
                    }
                }
                self.stored = Some(serde_json::to_string(&record).expect("record serializes"));
                self.history.extend(history);
                Some(Event::Stored(Ok(())))
            }
            Effect::Publish(spec) => {
                self.published = Some(spec);
                None
            }
            Effect::Start(req) => {
                assert!(
                    !self.running.contains_key(&req.id),
                    "{} started twice",
                    req.id
                );
                assert!(
                    !self
                        .core
                        .record
                        .deployment
                        .as_ref()
                        .is_some_and(|d| d.release_pending() && d.version == req.version),
                    "{} started before the release hook succeeded",
                    req.id
                );
                self.tasks.push(Task::Start(req));
                None
            }
            Effect::DrainStop {
                handle, pre_stop, ..
            } => {
                if let Some(req) = pre_stop {
                    self.pre_stops.push((handle.clone(), *req));
                }
                let routed = self.published.as_ref().is_some_and(|s| {
                    s.pools
                        .iter()
                        .any(|p| p.backends.iter().any(|b| b.id == handle.id))
                });
                assert!(
                    !routed,
                    "{} drained while the proxy still routes to it",
                    handle.id
                );
                self.tasks.push(Task::Stop(handle.id));
                None
            }
            Effect::Watch { handle, .. } => {
                self.fresh.insert(handle.id.clone());
                self.watched.insert(handle.id);
                None
            }
            Effect::Unwatch(id) => {
                self.fresh.remove(&id);
                self.watched.remove(&id);
                None
            }
            Effect::CallGate { gate, step, .. } => {
                self.tasks.push(Task::Gate(gate, step));
                None
            }
            Effect::Notify { gate, payload, .. } => {
                self.tasks
                    .push(Task::Notify(gate, payload.deployment.clone()));
                None
            }
            Effect::Sample {
                deployment,
                versions,
            } => {
                let snapshots = versions
                    .into_iter()
                    .map(|v| (v, MetricsSnapshot::default()))
                    .collect();
                Some(Event::Sampled {
                    deployment,
                    snapshots,
                })
            }
            Effect::QueryPrometheus { round, .. } => {
                self.tasks.push(Task::Prometheus(round));
                None
            }
            Effect::RunHook {
                deployment,
                hook,
                req,
            } => {
                let rerun = req
                    .env
                    .iter()
                    .any(|(k, v)| k == "BATON_HOOK_RERUN" && v == "1");
                if hook == HookKind::Release {
                    assert!(
                        !self.release_stored_done.contains(&deployment),
                        "the release hook of {deployment} ran again after it was stored as finished"
                    );
                    let stored_running = self.stored.as_deref().is_some_and(|json| {
                        serde_json::from_str::<AppRecord>(json).is_ok_and(|r| {
                            r.deployment.is_some_and(|d| {
                                d.id == deployment
                                    && d.release.is_some_and(|h| {
                                        h.state == crate::model::HookState::Running
                                    })
                            })
                        })
                    });
                    assert!(
                        stored_running,
                        "the release hook of {deployment} runs before it is stored as started"
                    );
                }
                self.hook_runs.push((deployment.clone(), hook, rerun));
                self.tasks.push(Task::Hook(deployment, hook));
                None
            }
            Effect::Reply { ticket, result } => {
                self.replies
                    .insert(ticket, result.map_err(|e| e.to_string()));
                None
            }
        }
    }

    fn deploy(&mut self, version: &str) -> Ticket {
        self.deploy_to(version, &[])
    }

    /// `baton deploy web VERSION --target ADDR ...` (the static runtime).
    fn deploy_to(&mut self, version: &str, targets: &[SocketAddr]) -> Ticket {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.send(Event::Deploy {
            req: DeployRequest {
                version: version.into(),
                strategy: None,
                targets: targets.to_vec(),
                irreversible: false,
            },
            ticket,
        });
        ticket
    }

    fn op(&mut self, op: Op) -> Ticket {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.send(Event::Op { op, ticket });
        ticket
    }

    fn finish_task(&mut self, i: usize, ok: bool) {
        let task = self.tasks.remove(i);
        let event = match task {
            Task::Start(req) if self.static_runtime && req.target.is_none() => {
                self.faults += 1;
                Event::Started {
                    id: req.id,
                    result: Err("static instance has no target address".into()),
                }
            }
            Task::Start(req) => {
                if !ok {
                    self.faults += 1;
                    Event::Started {
                        id: req.id,
                        result: Err("exec failed".into()),
                    }
                } else {
                    self.next_port += 1;
                    let addr = req
                        .target
                        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], self.next_port)));
                    let handle = InstanceHandle {
                        id: req.id.clone(),
                        app: req.app,
                        version: req.version,
                        addr,
                        started_at: self.now,
                        detail: HandleDetail::Static {},
                    };
                    self.running.insert(req.id.clone(), (handle.clone(), true));
                    Event::Started {
                        id: req.id,
                        result: Ok(handle),
                    }
                }
            }
            Task::Stop(id) => {
                self.running.remove(&id);
                Event::Stopped { id }
            }
            Task::Gate(gate, step) => Event::GateAnswered {
                gate,
                step,
                result: if ok { Ok(()) } else { Err("refused".into()) },
            },
            Task::Notify(gate, deployment) => Event::Notified {
                gate,
                deployment,
                result: Ok(()),
            },
            Task::Prometheus(round) => Event::Analysis(round),
            Task::Hook(deployment, hook) => Event::HookDone {
                deployment,
                hook,
                result: Ok(baton_runtime::TaskOutput {
                    exit_code: Some(if ok { self.hook_exit } else { 3 }),
                    timed_out: false,
                    tail: self.hook_output.clone(),
                }),
            },
        };
        self.send(event);
    }

    /// Runs everything the world has to do until nothing is left (bounded).
    fn settle(&mut self) {
        for _ in 0..200 {
            if !self.tasks.is_empty() {
                self.finish_task(0, true);
                continue;
            }
            let unreported: Vec<String> = self
                .watched
                .iter()
                .filter(|id| self.running.get(*id).is_some_and(|(_, h)| *h))
                .filter(|id| !self.core.healthy.contains(*id) || self.fresh.contains(*id))
                .cloned()
                .collect();
            if !unreported.is_empty() {
                for id in unreported {
                    self.probe(id);
                }
                continue;
            }
            if self.core.record.deployment.is_none() && !self.core.has_pending() {
                return;
            }
            self.tick(5_000);
        }
    }

    /// The monitor of `id` reports what is true.
    fn probe(&mut self, id: String) {
        self.fresh.remove(&id);
        match self.running.get(&id) {
            Some((_, true)) => self.send(Event::Healthy { id }),
            Some((_, false)) => self.send(Event::Unhealthy {
                id,
                reason: "503".into(),
            }),
            None => {}
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now = Millis(self.now.0 + ms);
        self.send(Event::Tick);
    }

    /// baton killed and started again: recovery as `recovery::recover` does it.
    fn restart(&mut self) {
        let mut record: AppRecord = match &self.stored {
            Some(json) => serde_json::from_str(json).expect("the stored record is resumable"),
            None => AppRecord::new(APP),
        };
        let mut lost = Vec::new();
        let mut alive = Vec::new();
        for h in std::mem::take(&mut record.instances) {
            if self.running.contains_key(&h.id) {
                alive.push(h);
            } else {
                lost.push((
                    h.id.clone(),
                    format!("{} was gone when baton restarted", h.id),
                ));
            }
        }
        record.instances = alive;
        if let Some(d) = &mut record.deployment {
            for id in std::mem::take(&mut d.pending_starts) {
                lost.push((
                    id.clone(),
                    format!("baton restarted while {id} was starting"),
                ));
            }
        }
        // Work in flight died with the process; strays are removed.
        self.tasks.clear();
        let known: BTreeSet<String> = record.instances.iter().map(|h| h.id.clone()).collect();
        self.running.retain(|id, _| known.contains(id));
        let healthy = self
            .running
            .iter()
            .filter(|(_, (_, h))| *h)
            .map(|(id, _)| id.clone())
            .collect();
        self.watched.clear();
        self.fresh.clear();
        self.faults += 1;
        self.core = AppCore::new(
            self.cfg.clone(),
            record,
            healthy,
            self.history.last().cloned(),
            self.static_runtime,
            if self.static_runtime {
                "static"
            } else {
                "process"
            },
        );
        self.send(Event::Boot { lost });
    }

    fn backends(&self) -> Vec<String> {
        self.published
            .iter()
            .flat_map(|s| s.pools.iter())
            .filter(|p| p.weight > 0)
            .flat_map(|p| p.backends.iter().map(|b| b.id.clone()))
            .collect()
    }

    /// What must hold after every step.
    fn check(&self, context: &str) {
        let fail = |what: String| {
            panic!(
                "{context}: {what}\nrecord: {:#?}\npublished: {:#?}\nlast events: {:#?}",
                self.core.record, self.published, self.trail
            )
        };
        // No traffic to an instance that is gone, unhealthy or being stopped.
        for p in self.published.iter().flat_map(|s| s.pools.iter()) {
            for b in &p.backends {
                if !self.running.get(&b.id).is_some_and(|(_, h)| *h) {
                    fail(format!("{} is routed but not running and healthy", b.id));
                }
                if !self.core.healthy.contains(&b.id) || self.core.stopping().contains(&b.id) {
                    fail(format!("{} is routed but not healthy or is stopping", b.id));
                }
            }
        }
        // Every instance the runtime runs is known to the record, and the record knows
        // no instance that is gone (except one that exited while being stopped: its stop
        // reports it).
        let running: BTreeSet<&String> = self.running.keys().collect();
        let known: BTreeSet<&String> = self.core.record.instances.iter().map(|h| &h.id).collect();
        let stopping: BTreeSet<&String> = self.core.stopping().iter().collect();
        if !running.is_subset(&known)
            || !known.is_subset(&running.union(&stopping).cloned().collect())
        {
            fail(format!(
                "runtime runs {running:?}, the record knows {known:?}, stopping {stopping:?}"
            ));
        }
        // Every instance is routed, warm, being stopped, or the deployment's.
        let rec = &self.core.record;
        let mut accounted: BTreeSet<String> = rec
            .route
            .pools
            .iter()
            .flat_map(|p| p.instances.iter().cloned())
            .chain(rec.stopping.iter().cloned())
            .chain(rec.warm.iter().flat_map(|w| w.instances.iter().cloned()))
            .collect();
        if let Some(d) = &rec.deployment {
            let st = d.rollout.status();
            accounted.extend(st.instances.into_iter().map(|(id, _)| id));
            accounted.extend(d.rollout.spec().from_instances.iter().cloned());
            // A deployment begun before a restart owns what the record held then.
            if rec.stable_version.is_some() {
                accounted.extend(
                    rec.instances
                        .iter()
                        .filter(|h| Some(&h.version) == rec.stable_version.as_ref())
                        .map(|h| h.id.clone()),
                );
            }
        }
        for h in &rec.instances {
            if !accounted.contains(&h.id) && !self.core.has_pending() {
                fail(format!(
                    "{} ({}) is neither routed, warm, being stopped nor the deployment's",
                    h.id, h.version
                ));
            }
        }
        // The stored record is always one a restarted baton can resume from, and the
        // proxy never has a plan ahead of it.
        if let Some(json) = &self.stored {
            match serde_json::from_str::<AppRecord>(json) {
                Err(_) => fail("the stored record does not parse".into()),
                Ok(stored) if &stored.route != self.core.published() => fail(format!(
                    "the proxy has {:?}, the stored record says {:?}",
                    self.core.published(),
                    stored.route
                )),
                Ok(_) => {}
            }
        }
        // Warm instances are never routed by the steady route.
        if let Some(w) = &rec.warm {
            if rec.deployment.is_none() {
                for p in &rec.route.pools {
                    if p.instances.iter().any(|i| w.instances.contains(i)) {
                        fail("a warm instance is in the steady route".into());
                    }
                }
            }
        }
    }
}

fn short(ev: &Event) -> String {
    match ev {
        Event::Deploy { req, .. } => format!("Deploy {}", req.version),
        Event::Started { id, result } => format!("Started {id} ok={}", result.is_ok()),
        Event::Sampled { deployment, .. } => format!("Sampled {deployment}"),
        Event::Analysis(_) => "Analysis".into(),
        other => format!("{other:?}").chars().take(120).collect(),
    }
}

/// A world with v1 deployed and healthy.
fn served(strategy: &str) -> World {
    let mut w = World::new(config(strategy, ""));
    let t = w.deploy("v1");
    w.settle();
    assert_eq!(
        w.replies.get(&t),
        Some(&Ok(Answer::Deployment("web-1".into())))
    );
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
    assert_eq!(w.backends().len(), 2, "{:?}", w.published);
    w
}

// === unit tests: one policy each, time injected ===

#[test]
fn a_deploy_is_answered_only_once_it_is_stored() {
    let mut w = served("rolling");
    w.store_fails = true;
    let t = w.deploy("v2");
    assert!(
        matches!(w.replies.get(&t), Some(Err(e)) if e.contains("nothing changed")),
        "{:?}",
        w.replies
    );
    assert!(w.core.record.deployment.is_none());
    assert_eq!(w.core.record.seq, 1, "the refused deployment left no trace");
    assert!(w.core.store_error().is_some());
    w.store_fails = false;
    let t = w.deploy("v2");
    assert_eq!(
        w.replies.get(&t),
        Some(&Ok(Answer::Deployment("web-2".into())))
    );
    assert!(w.core.store_error().is_none());
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
}

#[test]
fn a_step_computed_while_the_store_fails_waits_for_a_store() {
    let mut w = served("canary");
    w.deploy("v2");
    // The canary instance starts and becomes healthy: 20 % goes out.
    w.drive(5);
    let weight = |w: &World, v: &str| {
        w.published
            .as_ref()
            .and_then(|s| s.pools.iter().find(|p| p.version == v).map(|p| p.weight))
    };
    assert_eq!(weight(&w, "v2"), Some(20), "{:?}", w.published);
    // The pause ends while writes fail: the 50 % step is decided but not published.
    w.store_fails = true;
    w.tick(11_000);
    w.tick(250);
    assert_eq!(
        w.core
            .record
            .route
            .pools
            .iter()
            .find(|p| p.version == "v2")
            .map(|p| p.weight),
        Some(50)
    );
    assert_eq!(weight(&w, "v2"), Some(20), "published before stored");
    assert_eq!(
        w.core
            .published()
            .pools
            .iter()
            .find(|p| p.version == "v2")
            .map(|p| p.weight),
        Some(20)
    );
    // A health report meanwhile republishes the old step, not the new one.
    let id = w
        .watched
        .iter()
        .next()
        .cloned()
        .expect("an instance is watched");
    w.send(Event::Healthy { id });
    assert_eq!(weight(&w, "v2"), Some(20));
    w.store_fails = false;
    w.tick(250);
    assert_eq!(
        weight(&w, "v2"),
        Some(50),
        "released by the next store: {:#?}",
        w.trail
    );
}

#[test]
fn a_deploy_right_after_a_blue_green_switch_is_accepted() {
    let mut w = served("blue_green");
    let t = w.deploy("v2");
    w.settle_until(|w| w.core.record.deployment.is_none());
    assert!(matches!(w.replies.get(&t), Some(Ok(_))));
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
    let warm = w.core.record.warm.clone().expect("v1 is warm");
    assert_eq!(warm.version, "v1");
    // Deploying the warm version switches back at once: nothing starts.
    let tasks = w.tasks.len();
    let t = w.deploy("v1");
    assert!(matches!(w.replies.get(&t), Some(Ok(Answer::Deployment(_)))));
    assert_eq!(w.tasks.len(), tasks, "no instance started");
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
    assert_eq!(
        w.core.record.warm.as_ref().map(|w| w.version.as_str()),
        Some("v2")
    );
    let published: BTreeSet<String> = w.backends().into_iter().collect();
    let warm_ids: BTreeSet<String> = warm.instances.into_iter().collect();
    assert_eq!(published, warm_ids, "all traffic back on the warm v1");
    // The window ends by itself: the warm v2 is drained and stopped.
    w.tick(21_000);
    w.settle();
    assert!(w.core.record.warm.is_none());
    assert_eq!(w.running.len(), 2);
}

/// Where the instances of `version` are, sorted.
fn addresses(w: &World, version: &str) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = w
        .core
        .record
        .instances
        .iter()
        .filter(|h| h.version == version)
        .map(|h| h.addr)
        .collect();
    addrs.sort();
    addrs
}

#[test]
fn static_starts_waiting_at_once_get_different_targets() {
    let mut w = World::new_static(config("blue_green", ""));
    let (a, b) = (
        "127.0.0.1:9001".parse().unwrap(),
        "127.0.0.1:9002".parse().unwrap(),
    );
    let t = w.deploy_to("v1", &[a, b]);
    let starts: Vec<Option<SocketAddr>> = w
        .tasks
        .iter()
        .filter_map(|t| match t {
            Task::Start(req) => Some(req.target),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        vec![Some(a), Some(b)],
        "both start before either is up"
    );
    w.settle();
    assert!(matches!(w.replies.get(&t), Some(Ok(_))), "{:?}", w.replies);
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
    assert_eq!(addresses(&w, "v1"), vec![a, b]);
    assert_eq!(
        w.history.last().map(|h| h.outcome),
        Some(Outcome::Succeeded)
    );
}

#[test]
fn a_static_deploy_may_go_back_to_addresses_an_older_version_still_holds() {
    let mut w = World::new_static(config("blue_green", ""));
    let a: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:9002".parse().unwrap();
    w.deploy_to("v1", &[a]);
    w.settle_until(|w| w.core.record.deployment.is_none());
    w.deploy_to("v2", &[b]);
    w.settle_until(|w| w.core.record.deployment.is_none());
    assert_eq!(
        w.core.record.warm.as_ref().map(|w| w.version.as_str()),
        Some("v1"),
        "v1 at {a} waits out its scale-down delay"
    );
    // v3 at v1's address: v1's instance is stopped (a new version ends the warm
    // window) while v3's starts on the same address.
    let t = w.deploy_to("v3", &[a]);
    w.settle();
    assert!(matches!(w.replies.get(&t), Some(Ok(_))), "{:?}", w.replies);
    assert_eq!(
        w.history.last().map(|h| h.outcome),
        Some(Outcome::Succeeded)
    );
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v3"));
    assert_eq!(addresses(&w, "v3"), vec![a]);
    assert_eq!(addresses(&w, "v1"), Vec::<SocketAddr>::new());
    w.check("after v3");
}

#[test]
fn a_failed_replacement_backs_off_before_the_next() {
    let mut w = served("rolling");
    let victim = w.backends()[0].clone();
    w.running.remove(&victim);
    w.send(Event::Exited {
        id: victim.clone(),
        why: format!("{victim} exited with status 1"),
    });
    assert_eq!(w.tasks.len(), 1, "one replacement starts");
    w.finish_task(0, false);
    assert!(w.tasks.is_empty());
    w.tick(1_000);
    assert!(w.tasks.is_empty(), "no new replacement within the back-off");
    w.tick(HEAL_BACKOFF.as_millis() as u64);
    assert_eq!(w.tasks.len(), 1, "a replacement after the back-off");
}

#[test]
fn analysis_fails_the_canary_after_failure_limit_rounds() {
    let extra = r#"
[apps.web.analysis]
interval = "5s"
failure_limit = 2
max_error_rate = 0.01
min_requests = 10
"#;
    let mut w = World::new(config("canary", extra));
    w.deploy("v1");
    w.settle();
    w.deploy("v2");
    w.drive(4);
    // Rounds with failing canary figures (the proxy's cumulative counters, faked).
    let round = |w: &mut World, n: u64| {
        let d = w.core.record.deployment.as_ref().map(|d| d.id.clone());
        let Some(deployment) = d else { return };
        let counts = |requests: u64, errors: u64| {
            let mut by_class = [0; 6];
            by_class[2] = requests - errors;
            by_class[5] = errors;
            MetricsSnapshot {
                requests,
                by_class,
                ..MetricsSnapshot::default()
            }
        };
        let snapshots = [
            ("v1".to_string(), counts(1_000 * n, 0)),
            ("v2".to_string(), counts(1_000 * n, 500 * n)),
        ]
        .into_iter()
        .collect();
        w.send(Event::Sampled {
            deployment,
            snapshots,
        });
    };
    round(&mut w, 0);
    assert!(
        w.core.record.deployment.is_some(),
        "the first round only marks the start"
    );
    round(&mut w, 1);
    assert!(
        w.core.record.deployment.is_some(),
        "one failed verdict holds the step"
    );
    round(&mut w, 2);
    w.settle();
    let last = w.core.last_finished.clone().expect("finished");
    assert_eq!(
        last.outcome,
        Outcome::Failed,
        "the second fails the canary: {last:?}"
    );
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
}

#[test]
fn a_restart_resumes_from_the_stored_record() {
    let mut w = served("rolling");
    w.deploy("v2");
    while !w.tasks.is_empty() {
        w.finish_task(0, true);
    }
    w.restart();
    w.settle();
    assert_eq!(
        w.core.record.stable_version.as_deref(),
        Some("v2"),
        "{:#?}\n{:#?}",
        w.core
            .record
            .deployment
            .as_ref()
            .map(|d| d.rollout.status()),
        w.trail
    );
    assert_eq!(w.backends().len(), 2);
}

/// A canary v1 -> v2 stored mid-way, as a restarted controller finds it: the app's
/// config, the stored record, its healthy instances, v1's finished deployment and the id
/// of the deployment in progress.
pub(crate) fn stored_mid_canary() -> (AppConfig, AppRecord, BTreeSet<String>, HistoryEntry, String)
{
    let mut w = served("canary");
    w.deploy("v2");
    let json = w.stored.clone().expect("the deployment is stored");
    let record: AppRecord = serde_json::from_str(&json).expect("the stored record is resumable");
    let last = w.history.last().cloned().expect("v1's deployment finished");
    let id = record
        .deployment
        .as_ref()
        .expect("a deployment in progress")
        .id
        .clone();
    (w.cfg.clone(), record, w.core.healthy.clone(), last, id)
}

#[test]
fn a_retired_app_stops_everything_and_keeps_its_sequence() {
    let mut w = served("rolling");
    w.next_ticket += 1;
    let t = w.next_ticket;
    w.send(Event::Retire { ticket: t });
    assert!(w.backends().is_empty(), "unrouted before any stop");
    assert!(
        !w.replies.contains_key(&t),
        "answered only once everything stopped"
    );
    assert_eq!(w.tasks.len(), 2, "both instances drain and stop");
    w.finish_task(0, true);
    w.finish_task(0, true);
    let Some(Ok(Answer::Retired(ids))) = w.replies.get(&t) else {
        panic!("not answered: {:?}", w.replies)
    };
    assert_eq!(ids.len(), 2);
    assert!(w.running.is_empty());
    let stored: AppRecord =
        serde_json::from_str(w.stored.as_deref().expect("stored")).expect("parses");
    assert!(stored.instances.is_empty() && stored.stable_version.is_none());
    assert_eq!(stored.seq, 1, "deployment ids go on from where they were");
    // Nothing heals a retired app back.
    w.tick(60_000);
    assert!(w.tasks.is_empty());
}

#[test]
fn a_reload_of_an_app_mid_rollout_is_refused_and_health_changes_rewatch() {
    let mut w = served("canary");
    let mut cfg = w.cfg.clone();
    cfg.replicas = 3;
    w.next_ticket += 1;
    let t = w.next_ticket;
    w.send(Event::Reconfigure {
        cfg: Box::new(cfg.clone()),
        ticket: t,
    });
    assert_eq!(w.replies.get(&t), Some(&Ok(Answer::Done)));
    assert_eq!(w.tasks.len(), 1, "a larger replicas is started at once");
    w.settle();
    assert_eq!(w.backends().len(), 3);
    w.deploy("v2");
    w.next_ticket += 1;
    let t = w.next_ticket;
    cfg.replicas = 2;
    w.send(Event::Reconfigure {
        cfg: Box::new(cfg),
        ticket: t,
    });
    assert!(
        matches!(w.replies.get(&t), Some(Err(e)) if e.contains("rollout in progress") && e.contains("baton abort web")),
        "{:?}",
        w.replies.get(&t)
    );
    assert_eq!(w.core.cfg.replicas, 3, "nothing changed");
}

impl World {
    /// `rounds` times: every task done, every watched instance healthy, a short tick.
    fn drive(&mut self, rounds: usize) {
        for _ in 0..rounds {
            while !self.tasks.is_empty() {
                self.finish_task(0, true);
            }
            let ids: Vec<String> = self.watched.iter().cloned().collect();
            for id in ids {
                self.send(Event::Healthy { id });
            }
            self.tick(250);
        }
    }

    fn settle_until(&mut self, done: impl Fn(&World) -> bool) {
        for _ in 0..400 {
            if done(self) {
                return;
            }
            if !self.tasks.is_empty() {
                self.finish_task(0, true);
                continue;
            }
            let ids: Vec<String> = self
                .watched
                .iter()
                .filter(|id| !self.core.healthy.contains(*id))
                .cloned()
                .collect();
            for id in ids {
                self.send(Event::Healthy { id });
            }
            self.tick(1_000);
        }
        panic!("did not settle; record: {:#?}", self.core.record);
    }
}

// === the simulation ===

/// A 64-bit LCG (Knuth's MMIX constants): deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One random step; returns what it did.
fn act(w: &mut World, rng: &mut Lcg) -> &'static str {
    match rng.below(100) {
        0..=34 if !w.tasks.is_empty() => {
            let i = rng.below(w.tasks.len() as u64) as usize;
            let ok = rng.chance(95);
            w.finish_task(i, ok);
            "task"
        }
        0..=54 => {
            // Probes report the truth about watched instances.
            let ids: Vec<String> = w.watched.iter().cloned().collect();
            if ids.is_empty() {
                w.tick(250);
                return "tick";
            }
            let id = ids[rng.below(ids.len() as u64) as usize].clone();
            w.probe(id);
            "probe"
        }
        55..=69 => {
            w.tick(rng.below(4_000));
            "tick"
        }
        70..=72 => {
            // Health flips (and the probe says so at once).
            let ids: Vec<String> = w.running.keys().cloned().collect();
            if ids.is_empty() {
                return "none";
            }
            let id = ids[rng.below(ids.len() as u64) as usize].clone();
            let healthy = {
                let entry = w.running.get_mut(&id).expect("picked from running");
                entry.1 = !entry.1;
                entry.1
            };
            w.faults += 1;
            if w.watched.contains(&id) {
                if healthy {
                    w.send(Event::Healthy { id });
                } else {
                    w.send(Event::Unhealthy {
                        id,
                        reason: "flipped".into(),
                    });
                }
            }
            "flip"
        }
        73..=74 => {
            let ids: Vec<String> = w.running.keys().cloned().collect();
            if ids.is_empty() {
                return "none";
            }
            let id = ids[rng.below(ids.len() as u64) as usize].clone();
            w.running.remove(&id);
            w.faults += 1;
            w.send(Event::Exited {
                why: format!("{id} exited with signal 9"),
                id,
            });
            "exit"
        }
        75..=82 => {
            let v = format!("v{}", 1 + rng.below(4));
            let t = w.deploy(&v);
            match w.replies.get(&t) {
                Some(Ok(_)) => "deployed",
                _ => "deploy",
            }
        }
        83..=90 => {
            let op = match rng.below(5) {
                0 => Op::Promote { to: None },
                1 => Op::Abort { force: false },
                2 => Op::Pause,
                3 => Op::Resume,
                _ => Op::Rollback { force: false },
            };
            w.op(op);
            "op"
        }
        91..=94 => {
            // The store fails for a while, mostly briefly.
            w.store_fails = !w.store_fails && rng.chance(60);
            if w.store_fails {
                w.faults += 1;
            }
            "store"
        }
        95 => {
            w.restart();
            "restart"
        }
        _ => {
            if let Some(id) = w
                .watched
                .iter()
                .find(|id| !w.core.healthy.contains(*id))
                .cloned()
            {
                w.faults += 1;
                w.send(Event::StartupTimeout {
                    id,
                    last_error: "connection refused".into(),
                });
            }
            "timeout"
        }
    }
}

/// What a run exercised: it must not be vacuous.
#[derive(Default)]
struct Exercised {
    deployed: u32,
    succeeded: u32,
    capacity_checks: u32,
}

fn simulate(strategy: &str, seed: u64, steps: usize, seen: &mut Exercised) {
    let mut rng = Lcg(seed);
    let mut w = World::new(config(strategy, ""));
    w.deploy("v1");
    w.settle();
    let mut served_since_deploy = !w.backends().is_empty();
    for step in 0..steps {
        let what = act(&mut w, &mut rng);
        if what == "deployed" {
            served_since_deploy = !w.backends().is_empty();
            w.faults = 0;
            seen.deployed += 1;
        }
        let context = format!("{strategy} seed {seed} step {step} ({what})");
        w.check(&context);
        // Without faults, a deployment never leaves the app without a backend (recreate
        // holds requests instead).
        let hold = w.published.as_ref().is_some_and(|s| s.hold.is_some());
        let all_healthy = w.running.values().all(|(_, h)| *h);
        if served_since_deploy
            && w.faults == 0
            && all_healthy
            && !w.store_fails
            && strategy != "recreate"
        {
            seen.capacity_checks += 1;
            assert!(
                !w.backends().is_empty() || hold,
                "{context}: no backend without any fault\n{:#?}\n{:#?}",
                w.published,
                w.trail
            );
        }
    }
    seen.succeeded += w
        .history
        .iter()
        .filter(|h| h.outcome == Outcome::Succeeded)
        .count() as u32;
    // Whatever happened, with the faults gone the app ends served by one version.
    w.store_fails = false;
    for (_, (_, healthy)) in w.running.iter_mut() {
        *healthy = true;
    }
    for _ in 0..4 {
        if w.core.record.deployment.is_some() {
            w.op(Op::Abort { force: false });
        }
        w.settle();
    }
    if w.core.record.stable_version.is_some() && w.core.record.deployment.is_none() {
        w.check(&format!("{strategy} seed {seed} at the end"));
    }
}

const STEPS_PER_STRATEGY: usize = 10_000;

fn simulate_strategy(strategy: &str) {
    let runs = 10;
    let mut seen = Exercised::default();
    for seed in 0..runs {
        let before = seen.deployed;
        simulate(
            strategy,
            0x5eed_0000 + seed,
            STEPS_PER_STRATEGY / runs as usize,
            &mut seen,
        );
        assert!(
            seen.deployed > before,
            "{strategy} seed {seed}: no deployment was accepted"
        );
    }
    assert!(
        seen.succeeded >= 10,
        "{strategy}: only {} deployments succeeded",
        seen.succeeded
    );
    assert!(
        strategy == "recreate" || seen.capacity_checks as usize >= STEPS_PER_STRATEGY / 20,
        "{strategy}: capacity checked at only {} steps",
        seen.capacity_checks
    );
}

#[test]
fn simulation_recreate() {
    simulate_strategy("recreate");
}

#[test]
fn simulation_blue_green() {
    simulate_strategy("blue_green");
}

#[test]
fn simulation_rolling() {
    simulate_strategy("rolling");
}

#[test]
fn simulation_canary() {
    simulate_strategy("canary");
}

#[test]
fn simulation_ab_test() {
    simulate_strategy("ab_test");
}

mod hooks;

/// The reconciler stays pure: no runtime, no clock, no spawning in its sources.
#[test]
fn the_reconciler_does_no_io_and_reads_no_clock() {
    let sources = [
        ("mod.rs", include_str!("mod.rs")),
        ("analysis.rs", include_str!("analysis.rs")),
        ("hooks.rs", include_str!("hooks.rs")),
        ("reconfigure.rs", include_str!("reconfigure.rs")),
        ("instances.rs", include_str!("instances.rs")),
        ("operator.rs", include_str!("operator.rs")),
        ("routing.rs", include_str!("routing.rs")),
        ("step.rs", include_str!("step.rs")),
        ("warm.rs", include_str!("warm.rs")),
    ];
    let banned = [
        "tokio::",
        "Millis::now",
        "Instant::now",
        "SystemTime",
        "std::fs",
        "std::net::TcpStream",
        "spawn(",
        ".await",
    ];
    for (file, text) in sources {
        for word in banned {
            assert!(!text.contains(word), "reconcile/{file} uses {word}");
        }
    }
}
