//! `runner check` and `runner plugins`: what the configuration declares.

use super::{Error, exit};
use crate::config::Config;
use crate::events::EventBus;
use crate::plugin::{Compiled, Plugins};
use crate::run::Runner;
use std::sync::Arc;

pub(super) async fn check(config: Arc<Config>) -> Result<i32, Error> {
    let plugins = Arc::new(Plugins::load(&config, None).await?);
    Runner::new(config.clone(), plugins.clone(), EventBus::new(1))?;
    let batches: usize = config.pipelines.values().map(|p| p.batches.len()).sum();
    let tasks: usize = config
        .pipelines
        .values()
        .flat_map(|p| &p.batches)
        .map(|b| b.tasks.len())
        .sum();
    println!(
        "{}: ok · {} pipelines, {batches} batches, {tasks} tasks, {} plugins",
        config.path.display(),
        config.pipelines.len(),
        plugins.iter().count()
    );
    Ok(exit::OK)
}

pub(super) async fn plugins(config: Arc<Config>, json: bool) -> Result<i32, Error> {
    let plugins = Plugins::load(&config, None).await?;
    if json {
        let list: Vec<serde_json::Value> = plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name(),
                    "world": p.world.name(),
                    "wit": p.wit_version,
                    "version": p.info.as_ref().map(|i| i.version.clone()),
                    "description": p.info.as_ref().map(|i| i.description.clone()),
                    "source": source(p),
                    "sha256": p.sha256,
                    "cached": p.compiled == Compiled::Cached,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("plain JSON")
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<12} {:<17} {:<20} {:<8} {:<22} DESCRIPTION",
        "NAME", "WORLD", "WIT", "VERSION", "SOURCE"
    );
    for p in plugins.iter() {
        let (version, description) = p
            .info
            .as_ref()
            .map_or(("-".to_string(), String::new()), |i| {
                (i.version.clone(), i.description.clone())
            });
        println!(
            "{:<12} {:<17} {:<20} {:<8} {:<22} {description}",
            p.name(),
            p.world.name(),
            p.wit_version,
            version,
            source(p)
        );
    }
    Ok(exit::OK)
}

fn source(plugin: &crate::plugin::Plugin) -> String {
    match &plugin.decl.source {
        crate::config::PluginSource::Builtin(name) => format!("built-in:{name}"),
        crate::config::PluginSource::Path(path) => path.display().to_string(),
    }
}
