//! Return addresses to function names, in process, with a cache: the same
//! few thousand addresses come back in every profile.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The names at one return address, innermost (inlined) first.
pub(crate) type Names = Arc<[String]>;

static CACHE: LazyLock<Mutex<HashMap<usize, Names>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The functions at a return address (a call site: the address of the
/// instruction after the call), innermost inlined frame first. Rust names
/// are demangled without their hash suffix.
pub(crate) fn resolve(return_address: usize) -> Names {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(names) = cache.get(&return_address) {
        return Arc::clone(names);
    }
    let mut names = Vec::new();
    // `resolve` looks up the instruction before the address, the call.
    backtrace::resolve(return_address as *mut std::ffi::c_void, |symbol| {
        names.push(match symbol.name() {
            Some(name) => format!("{name:#}"),
            None => format!("{return_address:#x}"),
        });
    });
    if names.is_empty() {
        names.push(format!("{return_address:#x}"));
    }
    let names: Names = names.into();
    cache.insert(return_address, Arc::clone(&names));
    names
}

#[cfg(test)]
mod tests {
    #[inline(never)]
    fn a_function_with_a_known_name() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn names_are_demangled_without_their_hash() {
        assert_eq!(a_function_with_a_known_name(), 42);
        // A "return address" one past the function's first instruction
        // resolves to the function.
        let names = super::resolve(a_function_with_a_known_name as *const () as usize + 1);
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names[0], "phlox_introspect::symbols::tests::a_function_with_a_known_name");
    }
}
