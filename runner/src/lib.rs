//! `runner`: pipelines of batches and tasks whose every task type is a
//! WASI component.
//!
//! - [`config`] reads and checks `runner.toml`.
//! - [`plugin`] loads components and calls them, sandboxed.
//! - [`run`] schedules a pipeline's batches and tasks and publishes [`events`].
//! - [`watch`] re-runs what file changes affect (`runner watch`).
//! - [`printer`] shows those events to people, or prints them as JSON lines.

pub mod agents;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod events;
pub mod git;
pub mod ids;
pub mod plugin;
pub mod printer;
pub mod process;
pub mod run;
pub mod server;
pub mod service;
pub mod slots;
pub mod store;
pub mod units;
pub mod watch;
