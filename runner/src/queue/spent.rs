//! What the agent tasks of a run spent, across every worker (`run_spent`).
//!
//! A completed or failed `agent` task adds the usage its result reports
//! (`usage.cost_usd`, `usage.input_tokens + usage.output_tokens`) to its
//! run's row in the transaction that records its end. A worker reads the
//! row after it claims a run's next agent task, so a task claimed after
//! another ended (its agent's pool freed by that end) sees what it spent:
//! a run over its budget starts no further agent command, as locally.

use super::{Queue, QueueError};
use serde_json::Value;

/// Adds an agent task's usage to its run's row, inside `tx`.
pub(super) async fn charge(
    tx: &tokio_postgres::Transaction<'_>,
    payload: &Value,
    result: &Value,
) -> Result<(), QueueError> {
    if payload.get("kind").and_then(Value::as_str) != Some("agent") {
        return Ok(());
    }
    let Some(run) = payload.get("run").and_then(Value::as_str) else {
        return Ok(());
    };
    let usage = &result["usage"];
    let cost = usage["cost_usd"].as_f64().unwrap_or(0.0);
    let tokens =
        usage["input_tokens"].as_u64().unwrap_or(0) + usage["output_tokens"].as_u64().unwrap_or(0);
    if cost <= 0.0 && tokens == 0 {
        return Ok(());
    }
    let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO run_spent (run, cost_usd, tokens) VALUES ($1, $2, $3)
         ON CONFLICT (run) DO UPDATE SET cost_usd = run_spent.cost_usd + EXCLUDED.cost_usd,
            tokens = run_spent.tokens + EXCLUDED.tokens",
        &[&run, &cost, &tokens],
    )
    .await?;
    Ok(())
}

impl Queue {
    /// What `run`'s agent tasks spent so far: (dollars, tokens).
    pub async fn run_spent(&self, run: &str) -> Result<(f64, u64), QueueError> {
        let row = self
            .client
            .query_opt(
                "SELECT cost_usd, tokens FROM run_spent WHERE run = $1",
                &[&run],
            )
            .await?;
        Ok(row.map_or((0.0, 0), |row| {
            let tokens: i64 = row.get(1);
            (row.get(0), u64::try_from(tokens).unwrap_or(0))
        }))
    }

    /// Forgets what an ended run spent.
    pub async fn forget_run_spent(&self, run: &str) -> Result<(), QueueError> {
        self.client
            .execute("DELETE FROM run_spent WHERE run = $1", &[&run])
            .await?;
        Ok(())
    }
}
