//! Host-side bindings of the `runner:plugin@0.1.0` worlds.
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

pub use block::runner::plugin::host;
pub use block::runner::plugin::types;
