//! The CLI's side of the admin API: plain HTTP/1.1 over the Unix socket or TCP (with the
//! bearer token), the request and response types of [`crate::types`] in and out.

use crate::types::{
    AppStatus, DeployCreated, DeployRequest, ErrorBody, ForceRequest, HistoryEntry, InstanceLogs,
    PlanReport, PromoteRequest, ReloadReport, ReloadRequest, UpgradeDone, UpgradeRequest,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Clone)]
pub enum AdminAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            AdminAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach baton at {addr} ({source}); is `baton serve` running with this config? Start it with `baton serve -c baton.toml`, or pass --admin")]
    Unreachable {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API at {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    /// The server answered with an error status; `message` is its explanation.
    #[error("{message}")]
    Api { status: u16, message: String },
}

/// The operations on a running deployment that take no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `force`: even after an irreversible release step.
    Abort {
        force: bool,
    },
    Pause,
    Resume,
    Rollback {
        force: bool,
    },
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Abort { .. } => "abort",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Rollback { .. } => "rollback",
        }
    }
}

pub struct AdminClient {
    addr: AdminAddr,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(addr: AdminAddr, token: Option<String>) -> Self {
        AdminClient { addr, token }
    }

    /// `GET /v1/apps`.
    pub async fn apps(&self) -> Result<Vec<AppStatus>, ClientError> {
        self.get("/v1/apps").await
    }

    /// `GET /v1/cluster/proxies`: the proxies on other nodes following this controller.
    pub async fn cluster_proxies(
        &self,
    ) -> Result<Vec<baton_controller::fleet::ProxyView>, ClientError> {
        self.get("/v1/cluster/proxies").await
    }

    /// `GET /v1/apps/{app}`.
    pub async fn status(&self, app: &str) -> Result<AppStatus, ClientError> {
        self.get(&format!("/v1/apps/{app}")).await
    }

    /// `POST /v1/apps/{app}/deployments`.
    pub async fn deploy(
        &self,
        app: &str,
        req: &DeployRequest,
    ) -> Result<DeployCreated, ClientError> {
        self.post(&format!("/v1/apps/{app}/deployments"), Some(req))
            .await
    }

    /// `POST /v1/apps/{app}/promote`; `to` picks an A/B test's winner.
    pub async fn promote(&self, app: &str, to: Option<String>) -> Result<AppStatus, ClientError> {
        self.post(
            &format!("/v1/apps/{app}/promote"),
            Some(&PromoteRequest { to }),
        )
        .await
    }

    /// `POST /v1/apps/{app}/{action}` for the operations without a body: `abort`,
    /// `pause`, `resume`, `rollback`.
    pub async fn operate(&self, app: &str, action: Action) -> Result<AppStatus, ClientError> {
        let path = format!("/v1/apps/{app}/{}", action.path());
        match action {
            Action::Abort { force } | Action::Rollback { force } => {
                self.post(&path, Some(&ForceRequest { force })).await
            }
            Action::Pause | Action::Resume => self.post::<(), _>(&path, None).await,
        }
    }

    /// `GET /v1/apps/{app}/history`.
    pub async fn history(&self, app: &str, limit: usize) -> Result<Vec<HistoryEntry>, ClientError> {
        self.get(&format!("/v1/apps/{app}/history?limit={limit}"))
            .await
    }

    /// `GET /v1/apps/{app}/logs`.
    pub async fn logs(
        &self,
        app: &str,
        version: Option<&str>,
        lines: usize,
    ) -> Result<Vec<InstanceLogs>, ClientError> {
        let mut path = format!("/v1/apps/{app}/logs?lines={lines}");
        if let Some(v) = version {
            path.push_str(&format!("&version={v}"));
        }
        self.get(&path).await
    }

    /// `GET /v1/apps/{app}/plan`.
    pub async fn plan(
        &self,
        app: &str,
        version: &str,
        strategy: Option<&str>,
    ) -> Result<PlanReport, ClientError> {
        let mut path = format!("/v1/apps/{app}/plan?version={version}");
        if let Some(st) = strategy {
            path.push_str(&format!("&strategy={st}"));
        }
        self.get(&path).await
    }

    /// `POST /v1/upgrade`: the server starts the binary at its path, hands it the
    /// listeners and answers once the new process is ready (or failed to be).
    /// `timeout` bounds the wait for the new process, e.g. `"30s"`.
    pub async fn upgrade(&self, timeout: Option<&str>) -> Result<UpgradeDone, ClientError> {
        let req = UpgradeRequest {
            timeout: timeout.map(str::to_string),
        };
        self.post("/v1/upgrade", Some(&req)).await
    }

    /// `POST /v1/reload`: the server re-reads its configuration file and applies the
    /// difference (`dry_run`: only computes it). An invalid file is `Api { status: 422 }`
    /// with the file:line problems as the message.
    pub async fn reload(&self, dry_run: bool) -> Result<ReloadReport, ClientError> {
        self.post("/v1/reload", Some(&ReloadRequest { dry_run }))
            .await
    }

    /// `GET /v1/cluster/routes` on a controller's `[cluster] listen` (this client made
    /// with the cluster token): the table it serves, at once when it is not the one at
    /// `since`, else when it changes or after the controller's long-poll wait.
    pub async fn cluster_routes(
        &self,
        since: crate::cluster::Since,
    ) -> Result<baton_controller::fleet::RoutesFrame, ClientError> {
        self.get(&format!(
            "/v1/cluster/routes?epoch={}&generation={}",
            since.epoch, since.generation
        ))
        .await
    }

    /// `POST /v1/cluster/report`: a proxy's counters and drains; the answer is the
    /// controller's current position.
    pub async fn cluster_report(
        &self,
        report: &baton_controller::fleet::ProxyReport,
    ) -> Result<baton_controller::fleet::Position, ClientError> {
        self.post("/v1/cluster/report", Some(report)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("GET", path, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let payload =
            body.map(serde_json::to_vec)
                .transpose()
                .map_err(|e| ClientError::Protocol {
                    addr: self.addr.to_string(),
                    detail: format!("cannot encode the request: {e}"),
                })?;
        self.call("POST", path, payload).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        if status >= 400 {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            addr: self.addr.to_string(),
            detail: format!("unexpected answer to {method} {path}: {e}"),
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let addr = self.addr.to_string();
        let unreachable = |source| ClientError::Unreachable {
            addr: addr.clone(),
            source,
        };
        let proto = |detail: String| ClientError::Protocol {
            addr: addr.clone(),
            detail,
        };
        let payload = body.unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "baton")
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| proto(e.to_string()))?;
        let resp = match &self.addr {
            AdminAddr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(unreachable)?;
                exchange(TokioIo::new(s), req).await
            }
            AdminAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(unreachable)?;
                exchange(TokioIo::new(s), req).await
            }
        };
        resp.map_err(|e| proto(e.to_string()))
    }
}

async fn exchange<T>(io: T, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    ClientError::Api { status, message }
}
