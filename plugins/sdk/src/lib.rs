//! Guest-side bindings for `runner:plugin`, newest version (`wit/plugin.wit`,
//! 0.2.0), one module per world. A plugin rebuilt against it keeps working
//! unchanged: 0.2.0 only adds (the `approvals` interface, bound in
//! [`approvals`]).
//!
//! A block type implements [`block::Guest`] and exports it with
//! [`export_block!`](crate::export_block); batch types and agent adapters do
//! the same with their own modules and macros.

/// Bindings for the `block-plugin` world.
pub mod block {
    wit_bindgen::generate!({
        world: "block-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_block",
        default_bindings_module: "runner_plugin_sdk::block",
    });
    pub use self::exports::runner::plugin::block::Guest;
    pub use self::runner::plugin::host;
    pub use self::runner::plugin::types::{LogLevel, PluginInfo};
}

/// Bindings for the `batch-plugin` world.
pub mod batch {
    wit_bindgen::generate!({
        world: "batch-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_batch",
        default_bindings_module: "runner_plugin_sdk::batch",
    });
    pub use self::exports::runner::plugin::batch::*;
    pub use self::runner::plugin::host;
    pub use self::runner::plugin::types::{LogLevel, PluginInfo};
}

/// Bindings for the `agent-plugin` world.
pub mod agent {
    wit_bindgen::generate!({
        world: "agent-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_agent_adapter",
        default_bindings_module: "runner_plugin_sdk::agent",
    });
    pub use self::exports::runner::plugin::agent_adapter::*;
    pub use self::runner::plugin::host;
    pub use self::runner::plugin::types::{LogLevel, PluginInfo};
}

/// Bindings for the 0.2.0 `approvals` interface alone. An adapter that
/// relays its CLI's permission prompts exports it beside the adapter, which
/// makes the component an `approving-agent-plugin`:
///
/// ```ignore
/// runner_plugin_sdk::export_agent_adapter!(MyAdapter);
/// runner_plugin_sdk::export_approvals!(MyAdapter);
/// ```
pub mod approvals {
    wit_bindgen::generate!({
        inline: "
            package runner:sdk-approvals;
            world approvals-export {
                export runner:plugin/approvals@0.2.0;
            }
        ",
        path: "../../wit",
        world: "runner:sdk-approvals/approvals-export",
        pub_export_macro: true,
        export_macro_name: "export_approvals",
        default_bindings_module: "runner_plugin_sdk::approvals",
    });
    pub use self::exports::runner::plugin::approvals::*;
}

pub use agent::export_agent_adapter;
pub use approvals::export_approvals;
pub use batch::export_batch;
pub use block::export_block;

/// Helpers shared by the shipped agent adapters: request checks, option
/// parsing, JSON access and readable errors.
pub mod adapter_support;
