//! Calls into an attempts batch plugin (0.2.0 `attempts`): `plan` the
//! attempts of a batch, `pick` the best of their reports.

use super::bindings::latest::attempts;
use super::call::guarded;
use super::{CallError, CallOptions, HOUSEKEEPING_TIMEOUT, Plugin, Pre, Sink, World};

pub use attempts::{AttemptPlan, AttemptReport, AttemptSpec, AttemptTask, CheckResult, Verdict};

impl Plugin {
    /// Whether the plugin plans attempts (the `attempts-batch-plugin` world).
    pub fn plans_attempts(&self) -> bool {
        matches!(
            self.pre,
            Pre::Batch {
                attempts: Some(_),
                ..
            }
        )
    }

    /// A fresh instance's `attempts` export.
    async fn attempts(
        &self,
        sink: Sink,
    ) -> Result<(wasmtime::Store<super::state::StoreState>, attempts::Guest), CallError> {
        let Pre::Batch {
            pre,
            attempts: Some(indices),
        } = &self.pre
        else {
            return Err(self.wrong_world(World::AttemptsBatch));
        };
        let mut store = self.store(sink, HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        let instance = guarded(
            HOUSEKEEPING_TIMEOUT,
            pre.instance_pre().instantiate_async(&mut store),
        )
        .await?;
        let guest = indices
            .load(&mut store, &instance)
            .map_err(|err| CallError::Other(format!("{err:#}")))?;
        Ok((store, guest))
    }

    /// The attempts of a batch: `Ok(Err(message))` when the plugin refused
    /// the batch's `with`.
    pub async fn plan(
        &self,
        spec: &str,
        tasks: &[AttemptTask],
        sink: Sink,
    ) -> Result<Result<AttemptPlan, String>, CallError> {
        let (mut store, guest) = self.attempts(sink).await?;
        guarded(
            HOUSEKEEPING_TIMEOUT,
            guest.call_plan(&mut store, spec, tasks),
        )
        .await
    }

    /// The winner of the attempts, and why.
    pub async fn pick(
        &self,
        spec: &str,
        reports: &[AttemptReport],
        sink: Sink,
    ) -> Result<Verdict, CallError> {
        let (mut store, guest) = self.attempts(sink).await?;
        guarded(
            HOUSEKEEPING_TIMEOUT,
            guest.call_pick(&mut store, spec, reports),
        )
        .await
    }
}
