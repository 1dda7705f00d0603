//! One integration-test binary, one module per topic.

mod support;

mod config_errors;
mod pipelines;
mod sandbox;
