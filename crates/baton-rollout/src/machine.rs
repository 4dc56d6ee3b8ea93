//! The `Rollout` state machine: public surface. (Internals are being written.)

use crate::{Command, Input, InstanceId, RolloutSpec, State};
use baton_core::Millis;
use serde::{Deserialize, Serialize};

/// One deployment in progress. `Serialize` so it can be stored after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    spec: RolloutSpec,
}

/// A read-only view for `status`, the progress display and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub state: State,
    /// Human description of the current step, e.g. `"step 3/4: weight 50%"`.
    pub step: String,
    /// Index of the current step (0-based; strategies without steps count phases).
    pub step_index: usize,
    pub total_steps: usize,
    /// Current target weights by version, newest first.
    pub weights: Vec<(String, u32)>,
    /// Why it failed / was aborted / is waiting.
    pub reason: Option<String>,
    /// Instances this deployment started or still owns, with their version.
    pub instances: Vec<(InstanceId, String)>,
}

impl Rollout {
    pub fn new(spec: RolloutSpec, _now: Millis) -> Rollout {
        Rollout { spec }
    }

    pub fn spec(&self) -> &RolloutSpec {
        &self.spec
    }

    pub fn handle(&mut self, _input: Input, _now: Millis) -> Vec<Command> {
        Vec::new()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        None
    }

    pub fn is_finished(&self) -> bool {
        false
    }

    pub fn status(&self) -> RolloutStatus {
        RolloutStatus {
            state: State::Running,
            step: String::new(),
            step_index: 0,
            total_steps: 0,
            weights: Vec::new(),
            reason: None,
            instances: Vec::new(),
        }
    }
}
