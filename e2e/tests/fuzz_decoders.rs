//! A short mutation-fuzzing run of every decoder (`make fuzz` runs longer):
//! 2000 mutants each from a fixed seed; every one must be an error or a
//! bounded result, never a panic or an allocation past the budget.
#![allow(clippy::unwrap_used)]

use phlox_e2e::fuzz::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn every_decoder_survives_its_mutants() {
    std::panic::set_hook(Box::new(|_| {}));
    let targets = fuzz::targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "pprof",
            "push",
            "ingest-pprof",
            "jfr",
            "folded",
            "lines",
            "tree",
            "trie",
            "speedscope",
            "otlp-proto",
            "otlp-json",
            "block",
            "debuginfo"
        ]
    );
    let mut failures = Vec::new();
    for target in &targets {
        match fuzz::run(target, 42, Some(2000), None) {
            Ok(r) => {
                println!(
                    "{:<14} {} mutants, {} accepted, peak {} KiB",
                    r.name,
                    r.mutants,
                    r.accepted,
                    r.peak_bytes >> 10
                );
                // The unmutated seeds decode: the targets are wired as the server uses them.
                assert!(r.accepted >= target.seeds.len() as u64, "{}: its seeds are not accepted", r.name);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
