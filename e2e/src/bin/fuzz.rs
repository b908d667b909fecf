//! `make fuzz`: mutation fuzzing of every decoder for a time budget
//! (`--seconds`, per decoder; default 30) from a seed (`--seed`; default
//! 1), optionally one decoder (`--only NAME`). Prints mutants per second,
//! the peak memory and the slowest mutant of each; exits 1 on the first
//! panic or allocation past the budget (the input is saved and named).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use phlox_e2e::fuzz::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: u64 = arg("--seconds").map_or(30, |s| s.parse().expect("--seconds N"));
    let seed: u64 = arg("--seed").map_or(1, |s| s.parse().expect("--seed N"));
    let only = arg("--only");
    // Panics are reported per mutant, not printed by the default hook.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for target in fuzz::targets().iter().filter(|t| only.as_deref().is_none_or(|o| o == t.name)) {
        match fuzz::run(target, seed, None, Some(Duration::from_secs(seconds))) {
            Ok(r) => println!(
                "{:<14} {:>9} mutants {:>9.0}/s  accepted {:>7}  peak {:>6} KiB  slowest {:>7.1} ms",
                r.name,
                r.mutants,
                r.per_second(),
                r.accepted,
                r.peak_bytes >> 10,
                r.slowest.as_secs_f64() * 1e3
            ),
            Err(e) => {
                println!("FAIL {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
