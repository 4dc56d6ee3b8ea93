//! `[dashboard]`: the web dashboard (`baton-dashboard`) beside the admin API — on the
//! admin listener when `[dashboard] listen` is absent, else on a TCP listener of its own
//! that serves the admin API too (the pages call it). Either way it sits behind the
//! admin token's guard ([`baton_api::auth`]): the token, or a session made by logging
//! in with it. Its live feed reads the apps once a second while baton serves.

use crate::upgrade::Listeners;
use crate::Failure;
use axum::Router;
use baton_api::Access;
use baton_config::Config;
use baton_controller::Controller;
use baton_dashboard::feed::Feed;
use std::future::Future;
use std::sync::Arc;

/// The admin listener's router, and the dashboard listener's when it has its own.
pub fn routers(
    config: &Config,
    api: Router,
    controller: &Arc<Controller>,
    access: Option<&Arc<Access>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (Router, Option<Router>) {
    let (Some(d), Some(access)) = (&config.dashboard, access) else {
        // `baton validate` refuses a [dashboard] without [admin] token_file.
        return (api, None);
    };
    let feed = Feed::new(controller.clone());
    feed.clone().run(stop);
    let ui = baton_dashboard::router(access.clone(), feed);
    match d.listen {
        None => (api.merge(ui), None),
        Some(_) => {
            let own = baton_api::guarded(api.clone().merge(ui), access.clone());
            (api, Some(own))
        }
    }
}

/// Binds `[dashboard] listen` (or takes the listener handed over by an upgrade), keeps a
/// copy for the next upgrade and serves `app` on it until `stop`.
pub async fn serve_own(
    config: &Config,
    inherited: Option<std::net::TcpListener>,
    app: Router,
    copies: &mut Listeners,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let Some(addr) = config.dashboard.as_ref().and_then(|d| d.listen) else {
        return Err(Failure::failed("no [dashboard] listen address"));
    };
    let inherited = inherited.filter(|l| l.local_addr().is_ok_and(|a| a == addr));
    let listener = match inherited {
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(l))
            .map_err(|e| Failure::failed(format!("inherited dashboard listener: {e}")))?,
        None => tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::usage(format!(
                "cannot listen on {addr} for the dashboard ({e}); change [dashboard] listen"
            ))
        })?,
    };
    copies.add_dashboard(&listener).map_err(|e| {
        Failure::failed(format!(
            "cannot keep a copy of the dashboard listener ({e})"
        ))
    })?;
    tracing::info!(%addr, "dashboard at http://{addr}/ui/");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "dashboard listener stopped");
        }
    }))
}
