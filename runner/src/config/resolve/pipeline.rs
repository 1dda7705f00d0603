//! `[pipelines]`: batches, their dependency graph and its cycles.

use super::plugins::unknown_plugin;
use super::{Resolver, Result, check_id, to_json};
use crate::config::raw::*;
use crate::config::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

impl Resolver<'_> {
    pub(super) fn pipeline(
        &self,
        name: &str,
        raw: &RawPipeline,
        plugins: &IndexMap<String, PluginDecl>,
        agents: &IndexMap<String, AgentDecl>,
        defaults: &Defaults,
    ) -> Result<Pipeline> {
        let key = format!("pipelines.{name}");
        if raw.batches.is_empty() {
            let message = format!("a pipeline needs at least one `[[pipelines.{name}.batches]]`");
            return Err(self.table_at("pipelines", name, key, message));
        }
        let mut batch_ids: HashMap<&str, usize> = HashMap::new();
        let mut task_ids: HashSet<&str> = HashSet::new();
        let mut batches = Vec::new();
        for (index, batch) in raw.batches.iter().enumerate() {
            let batch_key = format!("{key}.batches[{index}]");
            let id = batch.id.get_ref();
            check_id(id).map_err(|msg| self.at(&batch.id, format!("{batch_key}.id"), msg))?;
            if batch_ids.insert(id, index).is_some() {
                return Err(self.at(
                    &batch.id,
                    format!("{batch_key}.id"),
                    format!("batch `{id}` is declared twice in this pipeline"),
                ));
            }
            let batch_type = match &batch.batch_type {
                Some(t) => {
                    if !plugins.contains_key(t.get_ref()) {
                        return Err(self.at(
                            t,
                            format!("{batch_key}.type"),
                            unknown_plugin(t.get_ref(), "batch type", plugins),
                        ));
                    }
                    t.get_ref().clone()
                }
                None => "sequential".to_string(),
            };
            let mut tasks = Vec::new();
            for (task_index, task) in batch.tasks.iter().enumerate() {
                let task_key = format!("{batch_key}.tasks[{task_index}]");
                let task_id = task.id.get_ref();
                check_id(task_id)
                    .map_err(|msg| self.at(&task.id, format!("{task_key}.id"), msg))?;
                if !task_ids.insert(task_id) {
                    return Err(self.at(
                        &task.id,
                        format!("{task_key}.id"),
                        format!("task `{task_id}` is declared twice in this pipeline"),
                    ));
                }
                tasks.push(self.task(task, &task_key, plugins, agents, defaults)?);
            }
            if tasks.is_empty() {
                return Err(self.at(
                    &batch.id,
                    batch_key,
                    format!(
                        "batch `{id}` has no tasks; add a `[[pipelines.{name}.batches.tasks]]`"
                    ),
                ));
            }
            let with = match &batch.with {
                Some(with) => to_json(with),
                None => Value::Object(Default::default()),
            };
            let type_at = self.location(batch.batch_type.as_ref().unwrap_or(&batch.id));
            let inputs = self.inputs(&batch.inputs, &batch_key)?;
            batches.push(Batch {
                inputs,
                type_at,
                id: id.clone(),
                name: batch.name.clone().unwrap_or_else(|| id.clone()),
                batch_type,
                depends_on: batch
                    .depends_on
                    .iter()
                    .map(|d| d.get_ref().clone())
                    .collect(),
                with,
                tasks,
            });
        }
        for (index, batch) in raw.batches.iter().enumerate() {
            for (dep_index, dep) in batch.depends_on.iter().enumerate() {
                let dep_key = format!("{key}.batches[{index}].depends_on[{dep_index}]");
                if dep.get_ref() == batch.id.get_ref() {
                    return Err(self.at(
                        dep,
                        dep_key,
                        format!("batch `{}` depends on itself", dep.get_ref()),
                    ));
                }
                if !batch_ids.contains_key(dep.get_ref().as_str()) {
                    let mut known: Vec<&str> = batch_ids.keys().copied().collect();
                    known.sort_unstable();
                    return Err(self.at(
                        dep,
                        dep_key,
                        format!(
                            "no batch `{}` in pipeline `{name}`; batches: {}",
                            dep.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        let order = self.order(name, raw, &batch_ids)?;
        let mut by_index: Vec<Option<Batch>> = batches.into_iter().map(Some).collect();
        let batches = order
            .into_iter()
            .map(|i| Arc::new(by_index[i].take().expect("each batch once")))
            .collect();
        Ok(Pipeline {
            name: name.to_string(),
            description: raw.description.clone(),
            batches,
        })
    }

    /// Orders batches after their dependencies (declaration order among
    /// equals), or reports a cycle with the dependency that closes it.
    pub(super) fn order(
        &self,
        name: &str,
        raw: &RawPipeline,
        ids: &HashMap<&str, usize>,
    ) -> Result<Vec<usize>> {
        let n = raw.batches.len();
        let deps: Vec<Vec<usize>> = raw
            .batches
            .iter()
            .map(|b| {
                b.depends_on
                    .iter()
                    .map(|d| ids[d.get_ref().as_str()])
                    .collect()
            })
            .collect();
        // Kahn's algorithm; the heap hands out the first declared of the
        // ready batches, so equals keep their declaration order.
        let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            match ready.pop() {
                Some(Reverse(i)) => {
                    done[i] = true;
                    order.push(i);
                    for &j in &dependents[i] {
                        waiting[j] -= 1;
                        if waiting[j] == 0 {
                            ready.push(Reverse(j));
                        }
                    }
                }
                None => {
                    let cycle = find_cycle(&deps, &done);
                    let names: Vec<&str> = cycle
                        .iter()
                        .map(|&i| raw.batches[i].id.get_ref().as_str())
                        .collect();
                    let (last, first) = (cycle[cycle.len() - 1], cycle[0]);
                    let dep_index = deps[last]
                        .iter()
                        .position(|&d| d == first)
                        .expect("cycle edge");
                    let at = &raw.batches[last].depends_on[dep_index];
                    return Err(self.at(
                        at,
                        format!("pipelines.{name}.batches[{last}].depends_on[{dep_index}]"),
                        format!("dependency cycle: {} → {}", names.join(" → "), names[0]),
                    ));
                }
            }
        }
        Ok(order)
    }
}

fn find_cycle(deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    // Every unfinished node has an unfinished dependency, so walking
    // dependencies from any of them must revisit a node.
    let start = (0..deps.len())
        .find(|&i| !done[i])
        .expect("an unfinished batch");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *deps[current]
            .iter()
            .find(|&&d| !done[d])
            .expect("unfinished dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            // Report it in dependency order: a depends on b ... depends on a.
            cycle.rotate_left(0);
            return cycle;
        }
        path.push(next);
        current = next;
    }
}
