//! `[apps.NAME.hooks]`: commands run around a deployment. `release` runs once per deploy
//! with the new version before any new instance starts (a migration); `post_switch`
//! after traffic moved; `pre_stop` for each instance before it is drained; `on_event` on
//! baton's own host for notifications. Checks that need no runtime live here; whether the
//! runtime can run one-off tasks and whether the program exists are asked of the runtime
//! (`baton-controller`'s `check_hooks`), and placed at file:line with [`crate::locate_issues`].

use crate::locate::key;
use crate::validate::{positive, Issue};
use baton_core::HumanDuration;
use serde::{Deserialize, Serialize};

/// What a failed `post_switch` hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostSwitchFailure {
    /// An event and a history note; the new version keeps serving (the default).
    #[default]
    Report,
    /// Go back to the previous version, as `baton rollback` would (refused after an
    /// irreversible release step: the deployment is reported instead).
    Abort,
}

/// `[apps.NAME.hooks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Run once per deploy, by the app's runtime with the new version, before any new
    /// instance starts. A non-zero exit or a timeout fails the deploy with nothing changed.
    pub release: Option<String>,
    /// Run by the app's runtime with the new version once traffic moved to it.
    pub post_switch: Option<String>,
    /// `post_switch` failed: `"report"` (default) or `"abort"` (go back to the previous version).
    pub post_switch_failure: PostSwitchFailure,
    /// Run for each instance (same environment as it) before it is drained and stopped;
    /// a failure is logged and the stop proceeds.
    pub pre_stop: Option<String>,
    /// A shell command on baton's host, run for each deployment event with the event in
    /// `BATON_EVENT_*` variables and as JSON in `BATON_EVENT_JSON`.
    pub on_event: Option<String>,
    /// How long one hook may run. Default 5m.
    pub timeout: HumanDuration,
    /// `false`: once the release hook ran, going back to the previous version is unsafe
    /// (the schema changed); automatic rollbacks freeze the rollout instead. Default true.
    pub reversible: bool,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            release: None,
            post_switch: None,
            post_switch_failure: PostSwitchFailure::Report,
            pre_stop: None,
            on_event: None,
            timeout: HumanDuration::from_secs(300),
            reversible: true,
        }
    }
}

/// Which runtime-run hook (`on_event` runs on baton's host, not through the runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Release,
    PostSwitch,
    PreStop,
}

impl HookKind {
    pub const ALL: [HookKind; 3] = [HookKind::Release, HookKind::PostSwitch, HookKind::PreStop];

    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Release => "release",
            HookKind::PostSwitch => "post_switch",
            HookKind::PreStop => "pre_stop",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl HooksConfig ===

impl HooksConfig {
    /// The command of a runtime-run hook, if configured.
    pub fn command(&self, kind: HookKind) -> Option<&str> {
        match kind {
            HookKind::Release => self.release.as_deref(),
            HookKind::PostSwitch => self.post_switch.as_deref(),
            HookKind::PreStop => self.pre_stop.as_deref(),
        }
    }

    /// The runtime-run hooks configured, with their commands.
    pub fn runtime_hooks(&self) -> impl Iterator<Item = (HookKind, &str)> {
        HookKind::ALL
            .into_iter()
            .filter_map(|k| self.command(k).map(|c| (k, c)))
    }
}

/// The checks that need nothing but the file: a timeout of 0, an empty command.
pub(crate) fn check(name: &str, hooks: &HooksConfig, issues: &mut Vec<Issue>) {
    positive(
        key!["apps", name, "hooks", "timeout"],
        hooks.timeout,
        issues,
    );
    let commands = hooks
        .runtime_hooks()
        .map(|(k, c)| (k.as_str(), c))
        .chain(hooks.on_event.as_deref().map(|c| ("on_event", c)));
    for (k, command) in commands {
        if command.trim().is_empty() {
            issues.push((
                key!["apps", name, "hooks", k],
                format!(
                    "`{k}` in [apps.{name}.hooks] is empty: give the command to run, or remove the key"
                ),
            ));
        } else if shell_words::split(command).is_err() {
            issues.push((
                key!["apps", name, "hooks", k],
                format!(
                    "`{k}` in [apps.{name}.hooks] has a quote that is not closed: balance the ' and \" quotes"
                ),
            ));
        }
    }
}
