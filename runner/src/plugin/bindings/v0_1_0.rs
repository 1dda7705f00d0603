//! `runner:plugin@0.1.0` (frozen, `wit/0.1.0/plugin.wit`), converted to
//! and from the latest version's types.
//!
//! 0.2.0 only added to 0.1.0, so every type here has a latest twin of the
//! same shape and every conversion is field by field.

use super::latest;
use crate::plugin::state::StoreState;

pub mod block {
    wasmtime::component::bindgen!({
        world: "block-plugin",
        path: "../wit/0.1.0",
        exports: { default: async },
    });
}

pub mod batch {
    wasmtime::component::bindgen!({
        world: "batch-plugin",
        path: "../wit/0.1.0",
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
        path: "../wit/0.1.0",
        exports: { default: async },
        with: {
            "runner:plugin/host": super::block::runner::plugin::host,
            "runner:plugin/types": super::block::runner::plugin::types,
        },
    });
}

pub use block::runner::plugin::{host, types};

/// A 0.1.0 component linked and typed.
pub enum Pre {
    Block(block::BlockPluginPre<StoreState>),
    Batch(batch::BatchPluginPre<StoreState>),
    Agent(agent::AgentPluginPre<StoreState>),
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        latest::host::Host::log(self, level.convert(), message);
    }

    fn progress(&mut self, display_text: String, percent: Option<u8>) {
        latest::host::Host::progress(self, display_text, percent);
    }
}

/// A value of one version as the same value of another.
pub trait Convert<T> {
    fn convert(self) -> T;
}

macro_rules! unchanged {
    ($($ty:ty),*) => {$(
        impl Convert<$ty> for $ty {
            fn convert(self) -> $ty {
                self
            }
        }
    )*};
}

unchanged!(String, bool, u8, u64, i32, f64, (String, String));

impl<A: Convert<B>, B> Convert<Option<B>> for Option<A> {
    fn convert(self) -> Option<B> {
        self.map(Convert::convert)
    }
}

impl<A: Convert<B>, B> Convert<Vec<B>> for Vec<A> {
    fn convert(self) -> Vec<B> {
        self.into_iter().map(Convert::convert).collect()
    }
}

impl<A: Convert<B>, B, E> Convert<Result<B, E>> for Result<A, E> {
    fn convert(self) -> Result<B, E> {
        self.map(Convert::convert)
    }
}

/// Both directions for a record whose fields did not change.
macro_rules! record {
    ($old:ident, $new:ident, $name:ident { $($field:ident),* $(,)? }) => {
        impl Convert<$new::$name> for $old::$name {
            fn convert(self) -> $new::$name {
                $new::$name { $($field: self.$field.convert()),* }
            }
        }
        impl Convert<$old::$name> for $new::$name {
            fn convert(self) -> $old::$name {
                $old::$name { $($field: self.$field.convert()),* }
            }
        }
    };
}

/// Both directions for an enum (`cases`) or a variant (`payloads`, every
/// case with one) whose cases did not change.
macro_rules! cases {
    ($old:ident, $new:ident, $name:ident { $($case:ident),* $(,)? }) => {
        impl Convert<$new::$name> for $old::$name {
            fn convert(self) -> $new::$name {
                match self { $($old::$name::$case => $new::$name::$case),* }
            }
        }
        impl Convert<$old::$name> for $new::$name {
            fn convert(self) -> $old::$name {
                match self { $($new::$name::$case => $old::$name::$case),* }
            }
        }
    };
    ($old:ident, $new:ident, $name:ident payloads { $($case:ident),* $(,)? }) => {
        impl Convert<$new::$name> for $old::$name {
            fn convert(self) -> $new::$name {
                match self { $($old::$name::$case(value) => $new::$name::$case(value.convert())),* }
            }
        }
        impl Convert<$old::$name> for $new::$name {
            fn convert(self) -> $old::$name {
                match self { $($new::$name::$case(value) => $old::$name::$case(value.convert())),* }
            }
        }
    };
}

mod conversions {
    use super::Convert;

    use super::types as old_types;
    use crate::plugin::bindings::latest::types as new_types;
    record!(
        old_types,
        new_types,
        PluginInfo {
            name,
            version,
            description,
            config_schema
        }
    );
    cases!(
        old_types,
        new_types,
        LogLevel {
            Trace,
            Debug,
            Info,
            Warn,
            Error
        }
    );

    use super::batch::exports::runner::plugin::batch as old_batch;
    use crate::plugin::bindings::latest::batch::exports::runner::plugin::batch as new_batch;
    record!(
        old_batch,
        new_batch,
        TaskSpec {
            id,
            name,
            template,
            config
        }
    );
    cases!(
        old_batch,
        new_batch,
        ExecutionMode {
            Sequential,
            Parallel
        }
    );
    record!(
        old_batch,
        new_batch,
        Expansion {
            mode,
            fail_fast,
            tasks
        }
    );
    cases!(
        old_batch,
        new_batch,
        TaskState {
            Completed,
            Failed,
            Skipped
        }
    );
    record!(
        old_batch,
        new_batch,
        TaskResult {
            id,
            state,
            output,
            error
        }
    );
    record!(
        old_batch,
        new_batch,
        BatchOutcome {
            completed,
            summary,
            error,
            output
        }
    );

    use super::agent::exports::runner::plugin::agent_adapter as old_agent;
    use crate::plugin::bindings::latest::agent::exports::runner::plugin::agent_adapter as new_agent;
    record!(
        old_agent,
        new_agent,
        AgentRequest {
            prompt,
            model,
            working_dir,
            resume_session,
            program,
            extra_args,
            options,
        }
    );
    record!(
        old_agent,
        new_agent,
        Invocation {
            program,
            args,
            env,
            stdin
        }
    );
    cases!(old_agent, new_agent, OutputStream { Stdout, Stderr });
    record!(old_agent, new_agent, ToolUse { id, name, input });
    record!(
        old_agent,
        new_agent,
        ToolResult {
            id,
            output,
            is_error
        }
    );
    cases!(
        old_agent,
        new_agent,
        ChangeKind {
            Add,
            Update,
            Delete,
            Unknown
        }
    );
    record!(old_agent, new_agent, FileChange { path, kind });
    record!(
        old_agent,
        new_agent,
        CommandRun {
            command,
            exit_code,
            output
        }
    );
    record!(
        old_agent,
        new_agent,
        Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cost_usd
        }
    );
    record!(old_agent, new_agent, FinalResult { summary, is_error });
    cases!(old_agent, new_agent, AgentEvent payloads {
        SessionStarted, AssistantMessage, Thinking, ToolUse, ToolResult, FileChange,
        CommandRun, Usage, Error, FinalResult, Raw,
    });
    record!(
        old_agent,
        new_agent,
        Outcome {
            success,
            summary,
            error,
            session_id
        }
    );
}
