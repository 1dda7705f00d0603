//! One integration-test binary, one module per topic.

mod support;

mod agents;
mod approvals;
mod best_of;
mod budgets;
mod cluster;
mod config_errors;
mod coordinator;
mod coordinator_agents;
mod coordinator_git;
mod coordinator_output;
mod coordinator_plugins;
mod dashboard;
mod dashboard_support;
mod git;
mod handoff;
mod ids;
mod languages;
mod layers;
mod orphans;
mod output;
mod pipelines;
mod plugins;
mod queue;
mod queue_plugins;
mod queue_support;
mod sandbox;
mod scaffold;
mod server;
mod server_support;
mod store;
mod toolchains;
mod watch;
mod worker_git;
