//! Return addresses to function names, in process. This executable's
//! functions come from its ELF symbol table, read once through a small
//! cache of the file (a few MB of names, never the DWARF sections, which
//! take as much memory as the binary once parsed: 215 MB measured for a
//! release `phlox`); other objects' (the C library's) from the dynamic
//! linker (`dladdr`). Inlined calls show as their caller, as in a profile
//! read without debug info. Rust names are demangled without their hash.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Arc, LazyLock, Mutex};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// The names at one return address (one: inlined frames are not split).
pub(crate) type Names = Arc<[String]>;

static CACHE: LazyLock<Mutex<HashMap<usize, Names>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The functions of this executable, by link-time address.
struct Executable {
    /// Runtime address minus link-time address.
    bias: usize,
    /// (start, end, name), sorted by start.
    functions: Vec<(u64, u64, Box<str>)>,
}

static EXECUTABLE: LazyLock<Option<Executable>> = LazyLock::new(load_executable);

fn load_executable() -> Option<Executable> {
    // Where this code is loaded: the base the dynamic linker reports for
    // an address of this executable.
    // SAFETY: dladdr only reads the loader's tables; `info` is an out slot.
    let base = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(load_executable as *const () as *const libc::c_void, &raw mut info) == 0 {
            return None;
        }
        info.dli_fbase as usize
    };
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let lowest = elf.segments().map(|s| s.address()).min().unwrap_or(0);
    let mut functions: Vec<(u64, u64, Box<str>)> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?)))
        .map(|(start, size, name)| (start, start + size, format!("{:#}", rustc_demangle::demangle(name)).into()))
        .collect();
    functions.sort_unstable_by_key(|f| f.0);
    // A symbol without a size ends where the next one starts (the last
    // one covers nothing).
    for i in 0..functions.len().saturating_sub(1) {
        if functions[i].1 == functions[i].0 {
            functions[i].1 = functions[i + 1].0;
        }
    }
    Some(Executable { bias: base.wrapping_sub(lowest as usize), functions })
}

fn in_executable(pc: usize) -> Option<String> {
    let exe = EXECUTABLE.as_ref()?;
    let address = pc.wrapping_sub(exe.bias) as u64;
    let i = exe.functions.partition_point(|f| f.0 <= address).checked_sub(1)?;
    let (_, end, name) = &exe.functions[i];
    (address < *end).then(|| name.to_string())
}

fn in_shared_object(pc: usize) -> Option<String> {
    // SAFETY: as in `load_executable`; the name is copied before return.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(pc as *const libc::c_void, &raw mut info) == 0 || info.dli_sname.is_null() {
            return None;
        }
        let name = CStr::from_ptr(info.dli_sname).to_string_lossy();
        Some(format!("{:#}", rustc_demangle::demangle(&name)))
    }
}

/// The function at a return address (a call site: the address of the
/// instruction after the call, so the call is the byte before).
pub(crate) fn resolve(return_address: usize) -> Names {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(names) = cache.get(&return_address) {
        return Arc::clone(names);
    }
    let pc = return_address.saturating_sub(1);
    let name = in_executable(pc).or_else(|| in_shared_object(pc)).unwrap_or_else(|| format!("{return_address:#x}"));
    let names: Names = vec![name].into();
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
        assert_eq!(&names[..], ["phlox_introspect::symbols::tests::a_function_with_a_known_name"]);
    }

    #[test]
    fn the_c_library_is_named_by_the_dynamic_linker() {
        // SAFETY: dlsym looks a name up; the address is only resolved.
        let getpid = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) };
        assert!(!getpid.is_null());
        let names = super::resolve(getpid as usize + 1);
        assert!(names[0].contains("getpid"), "{names:?}");
    }
}
