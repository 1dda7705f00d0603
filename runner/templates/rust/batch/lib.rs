//! `{{name}}`: a batch type (world `batch-plugin` of runner:plugin@0.2.0):
//! runs the declared tasks in order and completes when all of them did.

wit_bindgen::generate!({ world: "batch-plugin", path: "wit" });

use exports::runner::plugin::batch::{
    BatchOutcome, ExecutionMode, Expansion, Guest, TaskResult, TaskSpec, TaskState,
};
use runner::plugin::types::PluginInfo;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            description: "A batch type".into(),
            config_schema: "{}".into(),
        }
    }

    fn expand(_spec: String, tasks: Vec<TaskSpec>) -> Result<Expansion, String> {
        Ok(Expansion { mode: ExecutionMode::Sequential, fail_fast: true, tasks })
    }

    fn reduce(_spec: String, results: Vec<TaskResult>) -> BatchOutcome {
        let done = results.iter().filter(|r| r.state == TaskState::Completed).count();
        let completed = done == results.len();
        BatchOutcome {
            completed,
            summary: format!("{done} of {} tasks completed", results.len()),
            error: (!completed).then(|| "a task did not complete".to_string()),
            output: format!("{{\"completed\": {done}}}"),
        }
    }
}

export!(Plugin);
