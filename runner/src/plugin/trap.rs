//! What a trap most likely means, for the task's error.
//!
//! ## Stack overflows in linear memory
//! wasmtime reports "overflowed its stack" only when wasm's own call stack
//! runs out. Rust and C keep most of their frames on a second stack in
//! linear memory, below the `__stack_pointer` global. Rust (and wasm-ld's
//! `--stack-first`) puts that stack at the bottom of memory, so running out
//! of it moves the stack pointer below address 0: it wraps to just under
//! 4 GiB and the next store traps as an out-of-bounds access there. The
//! stack pointer global is not exported from a component, but wasmtime adds
//! the faulting wasm address to the error (`memory fault at wasm address
//! 0x… in linear memory of size 0x…`) when the fault came from a guard page,
//! which is how our engine's memories are bounded. So:
//!
//! - fault address in the [`WRAP_WINDOW`] below 4 GiB: the stack overflowed;
//! - no address known, or the innermost frames of the backtrace are one
//!   function over and over: possibly a stack overflow;
//! - otherwise: an ordinary out-of-bounds access.

use wasmtime::{Trap, WasmBacktrace};

/// How far below 4 GiB a wrapped stack pointer may land: the frame that
/// crossed address 0, at most this large (frames of megabytes are rare).
pub const WRAP_WINDOW: u64 = 64 << 20;

/// Where a memory fault hit, as wasmtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub address: u64,
    pub memory_size: u64,
}

/// What an out-of-bounds trap most likely was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfBounds {
    /// The linear-memory stack ran out below address 0.
    StackOverflow,
    /// It cannot be told; it may have been a stack overflow.
    PossiblyStackOverflow,
    /// An access elsewhere: not the stack.
    Access,
}

/// Reads what the trap's error chain tells about an out-of-bounds access.
pub fn out_of_bounds(err: &wasmtime::Error) -> Option<OutOfBounds> {
    if err.downcast_ref::<Trap>() != Some(&Trap::MemoryOutOfBounds) {
        return None;
    }
    let fault = err
        .chain()
        .find_map(|cause| parse_fault(&cause.to_string()));
    let recursing = err.downcast_ref::<WasmBacktrace>().is_some_and(|trace| {
        recursing(
            &trace
                .frames()
                .iter()
                .map(|frame| frame.func_index())
                .collect::<Vec<_>>(),
        )
    });
    Some(judge(fault, recursing))
}

/// The verdict from the fault address (if known) and whether the stack
/// looked like runaway recursion.
pub fn judge(fault: Option<Fault>, recursing: bool) -> OutOfBounds {
    match fault {
        Some(fault) if below_zero(fault) => OutOfBounds::StackOverflow,
        Some(_) if !recursing => OutOfBounds::Access,
        _ => OutOfBounds::PossiblyStackOverflow,
    }
}

/// An address a stack pointer that went below 0 lands on: just under
/// 4 GiB (or a frame's offset past it), beyond the memory.
fn below_zero(fault: Fault) -> bool {
    const FOUR_GIB: u64 = 1 << 32;
    fault.address >= fault.memory_size
        && fault.address >= FOUR_GIB - WRAP_WINDOW
        && fault.address < FOUR_GIB + WRAP_WINDOW
}

/// wasmtime's `memory fault at wasm address 0x… in linear memory of size 0x…`.
pub fn parse_fault(text: &str) -> Option<Fault> {
    let rest = text.split_once("memory fault at wasm address 0x")?.1;
    let (address, rest) = rest.split_once(" in linear memory of size 0x")?;
    let size: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    Some(Fault {
        address: u64::from_str_radix(address, 16).ok()?,
        memory_size: u64::from_str_radix(&size, 16).ok()?,
    })
}

/// The innermost frames (wasmtime keeps 20) are mostly one function: a
/// recursion that had not ended.
fn recursing(functions: &[u32]) -> bool {
    const FRAMES: usize = 16;
    if functions.len() < FRAMES {
        return false;
    }
    let innermost = &functions[..FRAMES];
    innermost.iter().any(|f| {
        let calls = innermost.iter().filter(|g| *g == f).count();
        calls * 2 >= FRAMES
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fault_wasmtime_reports() {
        assert_eq!(
            parse_fault(
                "memory fault at wasm address 0xfffffff0 in linear memory of size 0x110000"
            ),
            Some(Fault {
                address: 0xffff_fff0,
                memory_size: 0x11_0000
            })
        );
        assert_eq!(parse_fault("out of bounds memory access"), None);
    }

    #[test]
    fn an_access_just_below_address_zero_is_a_stack_overflow() {
        let fault = |address| {
            Some(Fault {
                address,
                memory_size: 0x11_0000,
            })
        };
        assert_eq!(judge(fault(0xffff_ff00), false), OutOfBounds::StackOverflow);
        assert_eq!(
            judge(fault(0x1_0000_0010), false),
            OutOfBounds::StackOverflow
        );
        assert_eq!(judge(fault(0x20_0000), false), OutOfBounds::Access);
        assert_eq!(judge(fault(0x8000_0000), false), OutOfBounds::Access);
        assert_eq!(
            judge(fault(0x20_0000), true),
            OutOfBounds::PossiblyStackOverflow
        );
        assert_eq!(judge(None, false), OutOfBounds::PossiblyStackOverflow);
    }

    #[test]
    fn innermost_frames_of_one_function_are_a_recursion() {
        assert!(recursing(&[7; 20]));
        let alternating: Vec<u32> = (0..20).map(|i| 3 + i % 2).collect();
        assert!(recursing(&alternating));
        assert!(!recursing(&[1, 2, 3]));
        let distinct: Vec<u32> = (0..20).collect();
        assert!(!recursing(&distinct));
    }
}
