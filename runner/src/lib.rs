//! `runner`: pipelines of batches and tasks whose every task type is a
//! WASI component.
//!
//! ## Module map
//! Layers go one way: a module imports only modules above it in this list
//! (`tests/all/layers.rs` checks it; the leaves need only `units`). `store` and `git` sit beside
//! `plugin`: they need only `config` and the leaves.
//!
//! - `units`: durations and sizes, as `runner.toml` writes them.
//! - `hash`: the SHA-256 a plugin is known by (beside `units`).
//! - [`builtin`]: the plugins shipped inside the binary.
//! - [`process`]: child processes in their own group, killed with it; output chunking.
//! - `slots`: a concurrency limit handed out by priority.
//! - `ids`: every id the runner mints (runs, agent commands, clients).
//! - [`events`]: what a run publishes, to every subscriber.
//! - `printer`: those events for people, or as JSON lines.
//! - [`config`]: reads and checks `runner.toml`, every table of it (`resolve/`: the checks, by table).
//! - [`plugin`]: loads components and calls them, sandboxed.
//! - [`store`]: the SQLite history of runs (beside `plugin`; `writer/`: the writer thread).
//! - [`queue`]: the PostgreSQL task queue `runner worker` claims from (beside `store`).
//! - [`git`]: batch worktrees (`workspace/`), merges and their retention (beside `plugin`).
//! - [`agents`]: the coding agents' CLIs, their queues (`queue`) and commands (`command`).
//! - [`run`]: schedules a pipeline's batches (`batch`: one batch and its scripts), and their tasks (`tasks`, `execute`).
//! - [`worker`]: what `runner worker` does with a claimed task (beside `run`).
//! - [`watch`]: re-runs what file changes affect (`runner watch`).
//! - [`service`]: what a server or the CLI asks of runs and agents.
//! - [`server`]: the WebSocket and HTTP server (`runner serve`).
//! - [`cli`]: the `runner` command (`args`, one file per group of commands).

pub mod units;

pub mod builtin;
pub mod events;
pub mod hash;
mod ids;
mod printer;
pub mod process;
mod slots;

pub mod config;

pub mod git;
pub mod plugin;
pub mod queue;
pub mod store;

pub mod agents;

pub mod run;
pub mod worker;

pub mod watch;

pub mod service;

pub mod server;

pub mod cli;
