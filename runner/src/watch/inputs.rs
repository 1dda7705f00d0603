//! Which batches a changed file concerns: each batch's `inputs` globs, and
//! the batches that depend on them.

use super::*;

use crate::config::Pipeline;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::path::PathBuf;

/// Each batch's input matcher (`None`: the whole project).
pub(super) struct Inputs {
    pub(super) matchers: Vec<(String, Option<GlobSet>)>,
}

impl Inputs {
    pub(super) fn new(pipeline: &Pipeline) -> Result<Self, WatchError> {
        let mut matchers = Vec::new();
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
            matchers.push((batch.id.clone(), set));
        }
        Ok(Self { matchers })
    }

    /// How many counted files some batch reads.
    pub(super) fn watched(&self, snapshot: &Snapshot) -> usize {
        snapshot
            .keys()
            .filter(|path| self.matchers.iter().any(|(_, set)| matches(set, path)))
            .count()
    }

    /// The batches reading any of `paths`.
    pub(super) fn reading(&self, paths: &[PathBuf]) -> HashSet<String> {
        self.matchers
            .iter()
            .filter(|(_, set)| paths.iter().any(|p| matches(set, p)))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

pub(super) fn matches(set: &Option<GlobSet>, path: &std::path::Path) -> bool {
    set.as_ref().is_none_or(|set| set.is_match(path))
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
