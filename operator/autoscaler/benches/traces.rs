//! Replays every trace of `traces/` through the autoscaler and prints, per
//! trace: steps, scale events, flaps, the worst reaction time and whether
//! it meets the targets (every sustained overload resolved within 30 s, no
//! flap), then the replicas after each step (run-length: `5×3` = three
//! steps at 5). Then times the algorithm itself.
//!
//! `cargo bench -p phlox-autoscaler --bench traces`

use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phlox_autoscaler::simulate::{self, Reaction, Step, Trace};
use phlox_autoscaler::{History, Observation, Settings, evaluate};

/// Every sustained overload must be resolved within this.
const REACTION_TARGET_SECONDS: u64 = 30;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();

    let mut traces: Vec<(String, Trace)> = Vec::new();
    for path in &files {
        let json = std::fs::read_to_string(path)?;
        let trace = simulate::parse_trace(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        traces.push((trace.name.clone().unwrap_or(stem), trace));
    }

    println!(
        "{:<30} {:>5} {:>6} {:>4} {:>5} {:>6} {:>8} {:>5}  replicas after each step",
        "trace", "steps", "events", "ups", "downs", "flaps", "reaction", "meets"
    );
    let mut missed = 0;
    for (name, trace) in &traces {
        let steps = simulate::run(trace)?;
        let s = simulate::summarize(trace, &steps)?;
        let reaction = match s.worst_reaction {
            Reaction::NoOverload => "-".to_string(),
            Reaction::Within(seconds) => format!("{seconds} s"),
            Reaction::Never => "never".to_string(),
        };
        let meets = s.worst_reaction.within(REACTION_TARGET_SECONDS) && s.flaps == 0;
        if !meets {
            missed += 1;
        }
        println!(
            "{:<30} {:>5} {:>6} {:>4} {:>5} {:>6} {:>8} {:>5}  {}",
            name,
            s.steps,
            s.scale_events,
            s.scale_ups,
            s.scale_downs,
            s.flaps,
            reaction,
            if meets { "yes" } else { "NO" },
            run_length(&steps)
        );
    }
    println!(
        "targets: reaction ≤ {REACTION_TARGET_SECONDS} s and 0 flaps; {} of {} traces meet them",
        traces.len() - missed,
        traces.len()
    );

    // One evaluation on a full history (a 300 s down window at one call
    // per 15 s), message included.
    let settings = Settings { enabled: true, ..Settings::default() };
    let mut history = History::new();
    let mut current = 5;
    let (evaluations, elapsed) = timed(|i| {
        let now = i * 15;
        let total = if i % 40 < 20 { 40.0 } else { 31.0 + (i % 7) as f64 };
        let d =
            evaluate(&mut history, &settings, 8.0, now, current, Some(Observation { total, reporting_pods: current }));
        if d.changed() {
            history.record_scale(now, current, d.desired);
            current = d.desired;
        }
        black_box(d);
    });
    println!(
        "evaluate: {:.0} ns per evaluation ({:.1} M evaluations/s)",
        elapsed.as_nanos() as f64 / evaluations as f64,
        evaluations as f64 / elapsed.as_secs_f64() / 1e6
    );

    // Whole simulations of every trace.
    let total_steps: usize = traces.iter().map(|(_, t)| t.load.len()).sum();
    let mut failed = None;
    let (runs, elapsed) = timed(|_| {
        for (_, trace) in &traces {
            match simulate::run(trace) {
                Ok(steps) => {
                    black_box(steps);
                }
                Err(e) => failed = Some(e),
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    println!(
        "simulate: all {} traces ({total_steps} steps) in {:.1} µs ({:.1} M steps/s)",
        traces.len(),
        elapsed.as_secs_f64() * 1e6 / runs as f64,
        (runs as f64 * total_steps as f64) / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}

/// Calls `f(i)` for i = 0, 1, … for about half a second: (calls, elapsed).
fn timed(mut f: impl FnMut(u64)) -> (u64, Duration) {
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        for _ in 0..1000 {
            f(i);
            i += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_millis(500) {
            return (i, elapsed);
        }
    }
}

/// The replicas after each step, run-length encoded: "1×4 5 7×19".
fn run_length(steps: &[Step]) -> String {
    let mut runs: Vec<(i32, usize)> = Vec::new();
    for s in steps {
        match runs.last_mut() {
            Some((r, n)) if *r == s.desired => *n += 1,
            _ => runs.push((s.desired, 1)),
        }
    }
    runs.iter().map(|&(r, n)| if n == 1 { r.to_string() } else { format!("{r}×{n}") }).collect::<Vec<_>>().join(" ")
}
