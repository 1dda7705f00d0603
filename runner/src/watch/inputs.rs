//! Which batches a changed file concerns: each batch's `inputs` globs, and
//! the batches that depend on them.

use super::*;

use crate::config::Pipeline;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::path::PathBuf;

/// What one batch reads: its `inputs` globs (`None`: the whole project)
/// and its plugins' files and granted directories (snapshot keys).
pub(super) struct BatchInputs {
    id: String,
    globs: Option<GlobSet>,
    implicit: Vec<PathBuf>,
}

impl BatchInputs {
    fn reads(&self, path: &std::path::Path) -> bool {
        // Keys outside the project are absolute: only plugin files.
        (path.is_relative() && self.globs.as_ref().is_none_or(|set| set.is_match(path)))
            || self.implicit.iter().any(|p| path.starts_with(p))
    }
}

/// Each batch's inputs.
pub(super) struct Inputs {
    batches: Vec<BatchInputs>,
}

impl Inputs {
    pub(super) fn new(
        config: &Config,
        pipeline: &Pipeline,
        root: &std::path::Path,
    ) -> Result<Self, WatchError> {
        let mut implicit = super::plugins::implicit_inputs(config, pipeline, root);
        let mut batches = Vec::new();
        for batch in &pipeline.batches {
            let set = match &batch.inputs {
                None => None,
                Some(globs) => {
                    let mut builder = GlobSetBuilder::new();
                    for glob in globs {
                        // Checked when runner.toml was loaded.
                        // `*` stays within a directory; `**` crosses them.
                        let glob = GlobBuilder::new(glob)
                            .literal_separator(true)
                            .build()
                            .map_err(|err| {
                                WatchError::Ignore(format!("batch `{}`: {err}", batch.id))
                            })?;
                        builder.add(glob);
                    }
                    Some(
                        builder
                            .build()
                            .map_err(|err| WatchError::Ignore(err.to_string()))?,
                    )
                }
            };
            batches.push(BatchInputs {
                id: batch.id.clone(),
                globs: set,
                implicit: implicit.remove(&batch.id).unwrap_or_default(),
            });
        }
        Ok(Self { batches })
    }

    /// How many counted files some batch reads.
    pub(super) fn watched(&self, snapshot: &Snapshot) -> usize {
        snapshot
            .keys()
            .filter(|path| self.batches.iter().any(|b| b.reads(path)))
            .count()
    }

    /// The batches reading any of `paths`.
    pub(super) fn reading(&self, paths: &[PathBuf]) -> HashSet<String> {
        self.batches
            .iter()
            .filter(|b| paths.iter().any(|p| b.reads(p)))
            .map(|b| b.id.clone())
            .collect()
    }
}

/// `seeds` plus every batch depending on one of them, in pipeline order.
pub fn with_dependents(pipeline: &Pipeline, seeds: &HashSet<String>) -> Vec<String> {
    let mut selected: Vec<String> = Vec::new();
    for batch in &pipeline.batches {
        if seeds.contains(&batch.id) || batch.depends_on.iter().any(|d| selected.contains(d)) {
            selected.push(batch.id.clone());
        }
    }
    selected
}
