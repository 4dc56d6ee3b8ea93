//! The static runtime: instances run by someone else at addresses given with
//! `--target HOST:PORT`. baton only health-checks them and moves traffic (what
//! kamal-proxy's `deploy --target` does), so stop and adopt have nothing to do.

use crate::{HandleDetail, InstanceHandle, Runtime, RuntimeError, StartRequest};
use async_trait::async_trait;
use baton_core::Millis;

/// Instances at fixed addresses, started and stopped elsewhere.
#[derive(Debug, Default, Clone)]
pub struct StaticRuntime;

impl StaticRuntime {
    pub fn new() -> Self {
        StaticRuntime
    }
}

#[async_trait]
impl Runtime for StaticRuntime {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn operator_targets(&self) -> bool {
        true
    }

    async fn start(&self, req: StartRequest) -> Result<InstanceHandle, RuntimeError> {
        let Some(addr) = req.target else {
            return Err(RuntimeError::NoTarget {
                app: req.app,
                id: req.id,
            });
        };
        Ok(InstanceHandle {
            id: req.id,
            app: req.app,
            version: req.version,
            addr,
            started_at: Millis::now(),
            detail: HandleDetail::Static {},
        })
    }

    /// Nothing to stop: the instance is someone else's; it simply leaves routing.
    async fn stop(&self, _handle: &InstanceHandle) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Always `true`: whether the address still answers is for the health checks to say.
    async fn adopt(&self, _handle: &InstanceHandle) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    async fn logs(
        &self,
        handle: &InstanceHandle,
        _max_lines: usize,
    ) -> Result<Vec<String>, RuntimeError> {
        Err(RuntimeError::NoLogs {
            id: handle.id.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(target: Option<&str>) -> StartRequest {
        StartRequest {
            id: "web-v1-1".into(),
            app: "web".into(),
            version: "v1".into(),
            target: target.map(|t| t.parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn start_returns_the_target_address() {
        let rt = StaticRuntime::new();
        let h = rt.start(req(Some("10.0.0.5:8080"))).await.unwrap();
        assert_eq!(h.addr, "10.0.0.5:8080".parse().unwrap());
        assert_eq!(h.detail, HandleDetail::Static {});
        assert!(rt.adopt(&h).await.unwrap());
        rt.stop(&h).await.unwrap();
        let err = rt.logs(&h, 10).await.unwrap_err().to_string();
        assert!(err.contains("run by someone else"), "{err}");
    }

    #[tokio::test]
    async fn start_without_target_says_how_to_give_one() {
        let err = StaticRuntime::new().start(req(None)).await.unwrap_err();
        assert!(matches!(err, RuntimeError::NoTarget { .. }));
        assert!(err.to_string().contains("--target HOST:PORT"), "{err}");
    }

    #[test]
    fn handles_round_trip_through_json() {
        let h = InstanceHandle {
            id: "web-v1-1".into(),
            app: "web".into(),
            version: "v1".into(),
            addr: "127.0.0.1:20001".parse().unwrap(),
            started_at: Millis(1),
            detail: HandleDetail::Process {
                pid: 42,
                pgid: 42,
                proc_start_ticks: 7,
                log_path: "/tmp/x.log".into(),
            },
        };
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains(r#""kind":"process""#), "{json}");
        assert_eq!(serde_json::from_str::<InstanceHandle>(&json).unwrap(), h);
        let s = HandleDetail::Static {};
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"static"}"#);
        assert_eq!(serde_json::from_str::<HandleDetail>(&json).unwrap(), s);
    }
}
