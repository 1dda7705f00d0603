//! `runner:plugin@0.2.0`, the newest version (`wit/plugin.wit`).
//!
//! The `host` and `types` interfaces are generated once (with the block
//! world) and shared by the other worlds.

pub mod block {
    wasmtime::component::bindgen!({
        world: "block-plugin",
        path: "../wit",
        exports: { default: async },
    });
}

pub mod batch {
    wasmtime::component::bindgen!({
        world: "batch-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "runner:plugin/host": super::block::runner::plugin::host,
            "runner:plugin/types": super::block::runner::plugin::types,
        },
    });
}

pub mod agent {
    wasmtime::component::bindgen!({
        world: "agent-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "runner:plugin/host": super::block::runner::plugin::host,
            "runner:plugin/types": super::block::runner::plugin::types,
        },
    });
}

/// Only its `approvals` export is used: an approving adapter is
/// instantiated as an agent plugin, and its approvals are looked up in the
/// same instance.
pub mod approving_agent {
    wasmtime::component::bindgen!({
        world: "approving-agent-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "runner:plugin/host": super::block::runner::plugin::host,
            "runner:plugin/types": super::block::runner::plugin::types,
        },
    });
}

/// Only its `attempts` export is used: an attempts batch plugin is
/// instantiated as a batch plugin, and its attempts are looked up in the
/// same instance.
pub mod attempts_batch {
    wasmtime::component::bindgen!({
        world: "attempts-batch-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "runner:plugin/host": super::block::runner::plugin::host,
            "runner:plugin/types": super::block::runner::plugin::types,
        },
    });
}

pub use approving_agent::exports::runner::plugin::approvals;
pub use attempts_batch::exports::runner::plugin::attempts;
pub use block::runner::plugin::host;
pub use block::runner::plugin::types;
