//! Host-side bindings, one module per released `runner:plugin` version
//! (the approach of Zed's extension host).
//!
//! [`latest`] is generated from `wit/plugin.wit`; the rest of the plugin
//! module speaks only its types. An older version's module is generated
//! from its frozen copy (`wit/0.1.0/`) and converts its types to and from
//! the latest ones, so a component built against it loads and runs as it
//! always did.

pub mod v0_1_0;
pub mod v0_2_0;

pub use v0_2_0 as latest;
pub use v0_2_0::{host, types};
