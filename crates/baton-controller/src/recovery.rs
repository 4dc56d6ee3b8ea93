//! Start-up is "apply the stored state": load each app's record, re-adopt the instances
//! still running (same pid *and* start time, or the same container), stop processes and
//! remove containers no record owns, probe the survivors, and hand the rest to the app
//! actor as lost.

use crate::model::{AppRecord, HistoryEntry};
use baton_config::AppConfig;
use baton_runtime::Runtime;
use baton_store::Store;
use std::collections::{BTreeSet, HashSet};

pub struct Recovered {
    pub record: AppRecord,
    pub healthy: BTreeSet<String>,
    /// (instance id, why it is gone)
    pub lost: Vec<(String, String)>,
    pub last_finished: Option<HistoryEntry>,
}

pub async fn recover(
    name: &str,
    cfg: &AppConfig,
    runtime: &dyn Runtime,
    store: &Store,
) -> Result<Recovered, crate::ControlError> {
    let mut record: AppRecord = store.get_app(name)?.unwrap_or_else(|| AppRecord::new(name));
    let last_finished = store.history::<HistoryEntry>(name, 1)?.pop();
    let mut lost = Vec::new();
    let mut alive = Vec::new();
    for h in std::mem::take(&mut record.instances) {
        match runtime.adopt(&h).await {
            Ok(true) => alive.push(h),
            Ok(false) => lost.push((
                h.id.clone(),
                format!("{} was gone when baton restarted", h.id),
            )),
            Err(e) => lost.push((
                h.id.clone(),
                format!("{} could not be re-adopted: {e}", h.id),
            )),
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
    // Instances of this baton that no record owns (started, then baton died before
    // storing them): each runtime finds and removes its own.
    let known: HashSet<String> = record.instances.iter().map(|h| h.id.clone()).collect();
    runtime.remove_strays(name, &known).await?;
    // Probe before routing: only instances that answer now get traffic at once.
    let mut probes = tokio::task::JoinSet::new();
    for h in &record.instances {
        let spec = cfg.health.clone();
        let (id, addr) = (h.id.clone(), h.addr);
        probes.spawn(async move { (id, baton_health::probe(addr, &spec).await.is_ok()) });
    }
    let mut healthy = BTreeSet::new();
    while let Some(done) = probes.join_next().await {
        if let Ok((id, true)) = done {
            healthy.insert(id);
        }
    }
    Ok(Recovered {
        record,
        healthy,
        lost,
        last_finished,
    })
}
