//! The speedscope JSON file format (`/ingest?format=speedscope`): sampled
//! and evented profiles over a shared frame table, read as Pyroscope reads
//! them:
//!
//! - Profiles with the same name, type, unit and `startValue` are one
//!   profile; the rest are ordered by `startValue`. Each profile is its own
//!   series with a `profile_name` label.
//! - With one profile the upload's name picks the type as for other
//!   formats (`app` or `app.cpu` → CPU); with several, each is named
//!   `<name>.<unit>`, so `seconds`, `milliseconds`, … are wall time and
//!   `bytes` is `memory:samples:bytes`.
//! - A value is `weight × 100` (`× 1` for bytes): the hundredths keep
//!   fractions of a unit. The upload's default `sampleRate` of 100 becomes
//!   the unit's own rate (`none` 100 Hz: ×10000; `seconds` ×100;
//!   `milliseconds` ×1e5; `microseconds` ×1e8; `nanoseconds` ×1e11; `bytes`
//!   0, no time), so CPU and wall values are nanoseconds: `value × 1e9 / rate`.
//! - Evented profiles: the time between two events belongs to the frames
//!   open in between.
//!
//! Two deliberate differences from Pyroscope (ARCHITECTURE.md): Pyroscope
//! truncates the weight to a whole unit before taking hundredths (0.5 s
//! becomes 0) and adds the time before an `O` event without the ×100; and
//! its nanosecond rate overflows 32 bits, which zeroes every value. Phlox
//! keeps the hundredths and stores the nanoseconds.

use phlox_pprof::StackProfileBuilder;
use serde_json::Value;

/// A speedscope value unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    None,
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Bytes,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "none" => Unit::None,
            "nanoseconds" => Unit::Nanoseconds,
            "microseconds" => Unit::Microseconds,
            "milliseconds" => Unit::Milliseconds,
            "seconds" => Unit::Seconds,
            "bytes" => Unit::Bytes,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::None => "none",
            Unit::Nanoseconds => "nanoseconds",
            Unit::Microseconds => "microseconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
        }
    }

    /// Hundredths of a unit are kept; bytes are whole.
    fn precision(self) -> f64 {
        if self == Unit::Bytes { 1.0 } else { PRECISION as f64 }
    }

    /// Samples per second that the upload's default `sampleRate` (100)
    /// stands for: one value step per hundredth of the unit.
    pub(crate) fn default_sample_rate(self) -> u64 {
        match self {
            Unit::Nanoseconds => PRECISION * 1_000_000_000,
            Unit::Microseconds => PRECISION * 1_000_000,
            Unit::Milliseconds => PRECISION * 1_000,
            Unit::Seconds => PRECISION,
            Unit::None => PRECISION * 100,
            Unit::Bytes => 0,
        }
    }
}

const PRECISION: u64 = 100;

/// One profile of a file, after merging: its name, unit, and the JSON
/// profiles it is made of.
#[derive(Debug)]
pub(crate) struct Profile<'a> {
    pub(crate) name: &'a str,
    pub(crate) unit: Unit,
    parts: Vec<&'a Value>,
}

/// A parsed file: its frame names and its profiles.
#[derive(Debug)]
pub(crate) struct File<'a> {
    frames: Vec<&'a str>,
    pub(crate) profiles: Vec<Profile<'a>>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("speedscope profile is not JSON: {e}"))?;
    if !v["profiles"].is_array() || !v["shared"]["frames"].is_array() {
        return Err("speedscope profile lacks profiles[] or shared.frames[]".into());
    }
    Ok(v)
}

/// The profiles of a parsed file, merged and ordered.
pub(crate) fn file(v: &Value) -> Result<File<'_>, String> {
    let frames: Vec<&str> = v["shared"]["frames"]
        .as_array()
        .map(|f| f.iter().map(|f| f["name"].as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    // (name, type, unit, startValue) → index into `profiles`.
    let mut keys: Vec<(&str, &str, Unit, f64)> = Vec::new();
    let mut profiles: Vec<(f64, Profile<'_>)> = Vec::new();
    for (n, p) in v["profiles"].as_array().into_iter().flatten().enumerate() {
        let unit_name = p["unit"].as_str().unwrap_or("");
        let unit = Unit::parse(unit_name).ok_or_else(|| {
            format!(
                "profile {n}: unit {unit_name:?} is not one of none, nanoseconds, microseconds, milliseconds, seconds, bytes"
            )
        })?;
        let ty = p["type"].as_str().unwrap_or("");
        if !matches!(ty, "sampled" | "evented") {
            return Err(format!("profile {n}: unsupported speedscope profile type {ty:?} (sampled or evented)"));
        }
        let name = p["name"].as_str().unwrap_or("");
        let start = p["startValue"].as_f64().unwrap_or(0.0);
        let key = (name, ty, unit, start);
        match keys.iter().position(|k| *k == key) {
            Some(i) => profiles[i].1.parts.push(p),
            None => {
                keys.push(key);
                profiles.push((start, Profile { name, unit, parts: vec![p] }));
            }
        }
    }
    profiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(File { frames, profiles: profiles.into_iter().map(|(_, p)| p).collect() })
}

impl File<'_> {
    /// Adds a profile's stacks; each value (in hundredths of the unit, or
    /// bytes) is multiplied by `numerator / denominator` and truncated.
    pub(crate) fn add(
        &self,
        p: &Profile<'_>,
        b: &mut StackProfileBuilder,
        numerator: i64,
        denominator: i64,
    ) -> Result<(), String> {
        let precision = p.unit.precision();
        let value = |units: f64| -> i64 {
            let steps = (units * precision) as i64; // truncates; saturates on overflow
            (i128::from(steps) * i128::from(numerator) / i128::from(denominator.max(1))).clamp(0, i128::from(i64::MAX))
                as i64
        };
        let frame = |i: &Value| -> Result<&str, String> {
            i.as_u64()
                .and_then(|i| self.frames.get(i as usize).copied())
                .ok_or_else(|| format!("frame index {i} out of range"))
        };
        let n = p.name;
        for part in &p.parts {
            if part["type"] == "sampled" {
                let samples = part["samples"].as_array().ok_or_else(|| format!("profile {n:?}: samples[] missing"))?;
                let weights = part["weights"].as_array().ok_or_else(|| format!("profile {n:?}: weights[] missing"))?;
                if weights.len() != samples.len() {
                    return Err(format!(
                        "profile {n:?}: {} samples but {} weights (one weight per sample)",
                        samples.len(),
                        weights.len()
                    ));
                }
                for (i, (s, w)) in samples.iter().zip(weights).enumerate() {
                    let stack = s.as_array().ok_or_else(|| format!("profile {n:?}: sample {i} is not an array"))?;
                    let names = stack.iter().map(frame).collect::<Result<Vec<_>, _>>()?;
                    let w = w.as_f64().ok_or_else(|| format!("profile {n:?}: weight {i} is not a number"))?;
                    if w < 0.0 || !w.is_finite() {
                        return Err(format!("profile {n:?}: weight {i} is {w}, not a count or duration of 0 or more"));
                    }
                    let v = value(w);
                    if v > 0 {
                        b.add(names.into_iter(), &[v]).map_err(|e| e.to_string())?;
                    }
                }
            } else {
                let events = part["events"].as_array().ok_or_else(|| format!("profile {n:?}: events[] missing"))?;
                let mut stack: Vec<(u64, &str)> = Vec::new();
                let mut last = part["startValue"].as_f64().unwrap_or(0.0);
                for (i, e) in events.iter().enumerate() {
                    let at = e["at"].as_f64().ok_or_else(|| format!("profile {n:?}: event {i} has no time"))?;
                    if at < last || !at.is_finite() {
                        return Err(format!("profile {n:?}: event {i} at {at} is before the previous one ({last})"));
                    }
                    let id = e["frame"].as_u64().ok_or_else(|| format!("profile {n:?}: event {i} has no frame"))?;
                    let v = value(at - last);
                    if v > 0 && !stack.is_empty() {
                        b.add(stack.iter().map(|f| f.1), &[v]).map_err(|e| e.to_string())?;
                    }
                    last = at;
                    match e["type"].as_str() {
                        Some("O") => stack.push((id, frame(&e["frame"])?)),
                        Some("C") => match stack.pop() {
                            Some((open, _)) if open == id => {}
                            _ => {
                                return Err(format!(
                                    "profile {n:?}: event {i} closes frame {id}, which is not the innermost open frame"
                                ));
                            }
                        },
                        _ => return Err(format!("profile {n:?}: event {i} is neither O nor C")),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacks(b: StackProfileBuilder) -> Vec<i64> {
        let p = b.finish();
        let mut v: Vec<i64> = (0..p.sample_count()).map(|i| p.sample_value(i, 0)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn sampled_and_evented_profiles() {
        let v = parse(br#"{"shared":{"frames":[{"name":"main"},{"name":"work"}]},"profiles":[
            {"type":"sampled","name":"s","unit":"milliseconds","samples":[[0,1],[0]],"weights":[3,0.25]},
            {"type":"evented","name":"e","unit":"milliseconds","startValue":0,"events":[{"type":"O","frame":0,"at":0},{"type":"O","frame":1,"at":2},{"type":"C","frame":1,"at":7},{"type":"C","frame":0,"at":8}]},
            {"type":"sampled","name":"s","unit":"milliseconds","samples":[[0]],"weights":[1]}]}"#).unwrap();
        let f = file(&v).unwrap();
        // The two parts named "s" (same type, unit, start) are one profile.
        assert_eq!(f.profiles.iter().map(|p| p.name).collect::<Vec<_>>(), ["s", "e"]);
        assert_eq!(f.profiles[0].unit, Unit::Milliseconds);
        // Hundredths of a millisecond × 1e9 / 1e5 = nanoseconds.
        let mut b = StackProfileBuilder::new(&[("cpu", "nanoseconds")], None, 1 << 20);
        f.add(&f.profiles[0], &mut b, 1_000_000_000, 100_000).unwrap();
        assert_eq!(stacks(b), [250_000, 1_000_000, 3_000_000]);
        let mut b = StackProfileBuilder::new(&[("cpu", "nanoseconds")], None, 1 << 20);
        f.add(&f.profiles[1], &mut b, 10_000, 1).unwrap();
        // main 0..2 and 7..8 (3 ms), main;work 2..7 (5 ms).
        // Hundredths × 1e4: main 0..2 and 7..8, main;work 2..7 (the builder keeps each addition).
        assert_eq!(stacks(b), [1_000_000, 2_000_000, 5_000_000]);
    }

    #[test]
    fn malformed_files_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"shared":{"frames":[]},"profiles":[{"type":"sampled","unit":"none","samples":[[5]],"weights":[1]}]}"#,
                "out of range",
            ),
            (
                r#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"sampled","unit":"none","samples":[[0]]}]}"#,
                "weights[] missing",
            ),
            (
                r#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"sampled","unit":"none","samples":[[0]],"weights":[1,2]}]}"#,
                "1 samples but 2 weights",
            ),
            (
                r#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"sampled","unit":"parsecs","samples":[],"weights":[]}]}"#,
                "unit \"parsecs\"",
            ),
            (
                r#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"evented","unit":"none","events":[{"type":"O","frame":0,"at":5},{"type":"C","frame":0,"at":4}]}]}"#,
                "before the previous",
            ),
            (
                r#"{"shared":{"frames":[{"name":"a"},{"name":"b"}]},"profiles":[{"type":"evented","unit":"none","events":[{"type":"O","frame":0,"at":0},{"type":"C","frame":1,"at":4}]}]}"#,
                "not the innermost open frame",
            ),
        ];
        for (json, why) in cases {
            let v = parse(json.as_bytes()).unwrap();
            let err = file(&v).and_then(|f| {
                let mut b = StackProfileBuilder::new(&[("samples", "count")], None, 1 << 20);
                f.profiles.iter().try_for_each(|p| f.add(p, &mut b, 1, 1))
            });
            assert!(err.as_ref().unwrap_err().contains(why), "{json}: {err:?}");
        }
        assert!(parse(b"[]").is_err());
    }
}
