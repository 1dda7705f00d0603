//! Before a run: every task's plugin speaks the world its task type needs.

use super::{Plugins, World};
use crate::config::{Config, ConfigError, TaskKind};

pub fn check_worlds(config: &Config, plugins: &Plugins) -> Result<(), ConfigError> {
    for (name, agent) in &config.agents {
        if let Some(plugin) = plugins.get(&agent.adapter)
            && !plugin.world.is_agent()
        {
            return Err(config.error_at(
                agent.adapter_at,
                format!("agents.{name}.adapter"),
                format!(
                    "plugin `{}` is a {}, not an agent adapter",
                    plugin.name(),
                    plugin.world.name()
                ),
            ));
        }
    }
    for (name, pipeline) in &config.pipelines {
        for (b, batch) in pipeline.batches.iter().enumerate() {
            if let Some(plugin) = plugins.get(&batch.batch_type)
                && !plugin.world.is_batch()
            {
                return Err(config.error_at(
                    batch.type_at,
                    format!("pipelines.{name}.batches[{b}].type"),
                    format!(
                        "plugin `{}` is a {}, not a batch type",
                        plugin.name(),
                        plugin.world.name()
                    ),
                ));
            }
            for (t, task) in batch.tasks.iter().enumerate() {
                let key = format!("pipelines.{name}.batches[{b}].tasks[{t}]");
                let (plugin, allowed): (_, &[World]) = match &task.kind {
                    TaskKind::Exec | TaskKind::Agent(_) => continue,
                    TaskKind::Script(p) => (plugins.get(p), &[World::Command]),
                    TaskKind::Plugin(p) => (plugins.get(p), &[World::Block, World::Command]),
                };
                if let Some(plugin) = plugin
                    && !allowed.contains(&plugin.world)
                {
                    let (key, wanted) = match &task.kind {
                        TaskKind::Script(_) => (
                            format!("{key}.config.component"),
                            "a script (wasi:cli/command)",
                        ),
                        _ => (format!("{key}.type"), "a block type or a script"),
                    };
                    return Err(config.error_at(
                        task.type_at,
                        key,
                        format!(
                            "plugin `{}` is a {}, not {wanted}",
                            plugin.name(),
                            plugin.world.name()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
