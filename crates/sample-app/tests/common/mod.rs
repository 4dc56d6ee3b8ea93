//! Test harness: an in-process sample app on 127.0.0.1:0 and a minimal HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sample_app::SampleOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits on, so a broken server fails the test instead
/// of hanging it. Not a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A sample app served by `sample_app::run` inside the test's runtime.
pub struct TestApp {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn start(opts: SampleOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sample_app::run(opts, listener, async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits until `run` has returned.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.client().await.send("GET", path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.client().await.send("POST", path, body).await
    }
}

/// A response read fully.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn send(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "sample.test")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let exchange = async {
            self.sender.ready().await.unwrap();
            let response = self.sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(PATIENCE, exchange).await.unwrap()
    }
}
