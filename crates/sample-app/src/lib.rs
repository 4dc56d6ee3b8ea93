//! The sample app baton deploys in its tests, `baton demo` and the benchmark.
//!
//! A small hyper server: `GET /` answers its version, `/health` can be made to fail at
//! runtime, `/slow` and `/bytes` exercise long requests and throughput, `/write` counts
//! writes, `/ws` echoes WebSocket messages. Flags simulate slow boots, crashes, injected
//! errors and backends that close idle connections early. SIGTERM drains gracefully.
//!
//! Endpoints (every response carries `X-Version` and `X-Instance`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | 200 `"<version>\n"` (after `--latency-ms`; 500 for `--error-rate` of them) |
//! | `GET /health` | 200 `ok`, or 503 while failing |
//! | `GET /headers` | the request line and every request header, `name: value` a line (what a proxy in front sent, e.g. `x-forwarded-proto`) |
//! | `GET /slow?ms=N` | waits N ms, then like `/` |
//! | `POST /write` | reads the body, 200 with the new write count |
//! | `GET /writes` | the write count |
//! | `GET /ws` | WebSocket echo |
//! | `GET /bytes?n=N` | N bytes |
//! | `POST /admin/health?fail=1\|0` | makes `/health` fail / succeed |
//! | `GET /users` | the rows of the `--db` SQLite file (`sample-app migrate --db FILE` creates and migrates it) |
//!
//! `sample-app fetch URL...` is a small GET client instead (the `FROM scratch` test image
//! as its own client inside a container network).

mod body;
mod cli;
pub mod db;
mod error;
mod fetch;
mod handlers;
mod options;
mod server;
mod ws;

pub use cli::{run_main, run_main_from};
pub use error::SampleAppError;
pub use handlers::{X_INSTANCE, X_VERSION};
pub use options::SampleOptions;
pub use server::run;
