//! `[cluster] state = "swarm"`: the controller that just took the lease brings its local
//! store up to date with the records in Swarm's store before it recovers anything, and
//! seeds Swarm with the records only it has (state kept locally until now).

use crate::ControlError;
use baton_runtime::{RuntimeError, SwarmState};
use baton_store::Store;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// Makes the store at `path` hold what Swarm's store holds for every app there (its
/// record, and its newest history entry when the store's newest differs), then writes to
/// Swarm the records of apps it does not know yet. Returns how many apps came from
/// Swarm. Call it with the lease held and the store closed.
pub async fn take_swarm_state(path: &Path, state: &SwarmState) -> Result<usize, ControlError> {
    let stored = state.load().await.map_err(RuntimeError::from)?;
    let taken = stored.len();
    let path = path.to_path_buf();
    let local_only = tokio::task::spawn_blocking(move || -> Result<_, ControlError> {
        let store = Store::open(&path)?;
        let bad = |app: &str, what: &str, e: serde_json::Error| {
            ControlError::StoreFailed(format!(
                "the {what} of app {app} in the swarm's store is not JSON ({e}); inspect its \
                 holder service's labels"
            ))
        };
        let mut known = HashSet::new();
        for s in &stored {
            known.insert(s.app.clone());
            let record: Value =
                serde_json::from_str(&s.record).map_err(|e| bad(&s.app, "record", e))?;
            let last: Option<Value> = s
                .last
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad(&s.app, "newest history entry", e))?;
            let newest = store.history::<Value>(&s.app, 1)?.pop();
            let history = last.filter(|l| Some(l) != newest.as_ref());
            store.commit::<_, _, Value>(&s.app, Some(&record), history.as_ref(), &[])?;
        }
        let mut local_only = Vec::new();
        for (app, record) in store.apps::<Value>()? {
            if !known.contains(&app) {
                let last = store.history::<Value>(&app, 1)?.pop();
                local_only.push((app, record.to_string(), last.map(|l| l.to_string())));
            }
        }
        Ok(local_only)
    })
    .await
    .map_err(|e| ControlError::StoreFailed(format!("the store task failed: {e}")))??;
    for (app, record, last) in local_only {
        tracing::info!(%app, "writing a record only this store had to the swarm's store");
        state
            .put(&app, &record, last.as_deref())
            .await
            .map_err(RuntimeError::from)?;
    }
    Ok(taken)
}
