//! The speedscope JSON file format (`/ingest?format=speedscope`): sampled
//! and evented profiles over a shared frame table. Every profile of the
//! file is added to one pprof; time units become nanoseconds.

use phlox_pprof::StackProfileBuilder;
use serde_json::Value;

/// How to value the samples: nanoseconds per unit for time units, else a
/// plain multiplier (counts, bytes).
pub(crate) fn unit_scale(unit: &str) -> Option<i64> {
    Some(match unit {
        "nanoseconds" => 1,
        "microseconds" => 1_000,
        "milliseconds" => 1_000_000,
        "seconds" => 1_000_000_000,
        _ => return None,
    })
}

/// The unit of the file's profiles (the first one's; `none` if absent).
pub(crate) fn unit(body: &Value) -> &str {
    body["profiles"].as_array().and_then(|p| p.first()).and_then(|p| p["unit"].as_str()).unwrap_or("none")
}

pub(crate) fn parse(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("speedscope profile is not JSON: {e}"))?;
    if !v["profiles"].is_array() || !v["shared"]["frames"].is_array() {
        return Err("speedscope profile lacks profiles[] or shared.frames[]".into());
    }
    Ok(v)
}

/// Adds every profile of the file; `scale` multiplies each weight.
pub(crate) fn add(v: &Value, b: &mut StackProfileBuilder, scale: i64) -> Result<(), String> {
    let frames: Vec<&str> = v["shared"]["frames"]
        .as_array()
        .map(|f| f.iter().map(|f| f["name"].as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    let frame = |i: &Value| -> Result<&str, String> {
        i.as_u64().and_then(|i| frames.get(i as usize).copied()).ok_or_else(|| format!("frame index {i} out of range"))
    };
    for (n, p) in v["profiles"].as_array().into_iter().flatten().enumerate() {
        match p["type"].as_str() {
            Some("sampled") => {
                let samples = p["samples"].as_array().ok_or_else(|| format!("profile {n}: samples[] missing"))?;
                let weights = p["weights"].as_array();
                for (i, s) in samples.iter().enumerate() {
                    let stack = s.as_array().ok_or_else(|| format!("profile {n}: sample {i} is not an array"))?;
                    let names = stack.iter().map(frame).collect::<Result<Vec<_>, _>>()?;
                    let w = match weights {
                        Some(w) => w
                            .get(i)
                            .and_then(Value::as_f64)
                            .ok_or_else(|| format!("profile {n}: weight {i} missing"))?,
                        None => 1.0,
                    };
                    if w < 0.0 || !w.is_finite() {
                        return Err(format!("profile {n}: weight {i} is {w}, not a count or duration of 0 or more"));
                    }
                    let value = (w * scale as f64).round() as i64;
                    if value > 0 {
                        b.add(names.into_iter(), &[value]).map_err(|e| e.to_string())?;
                    }
                }
            }
            Some("evented") => {
                let events = p["events"].as_array().ok_or_else(|| format!("profile {n}: events[] missing"))?;
                let mut stack: Vec<&str> = Vec::new();
                let mut last = p["startValue"].as_f64().unwrap_or(0.0);
                for (i, e) in events.iter().enumerate() {
                    let at = e["at"].as_f64().ok_or_else(|| format!("profile {n}: event {i} has no time"))?;
                    let value = ((at - last) * scale as f64).round() as i64;
                    if value > 0 && !stack.is_empty() {
                        b.add(stack.iter().copied(), &[value]).map_err(|e| e.to_string())?;
                    }
                    last = at;
                    match e["type"].as_str() {
                        Some("O") => stack.push(frame(&e["frame"])?),
                        Some("C") => {
                            if stack.pop().is_none() {
                                return Err(format!("profile {n}: event {i} closes a frame that is not open"));
                            }
                        }
                        _ => return Err(format!("profile {n}: event {i} is neither O nor C")),
                    }
                }
            }
            other => return Err(format!("profile {n}: unsupported speedscope profile type {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(b: StackProfileBuilder) -> i64 {
        let p = b.finish();
        (0..p.sample_count()).map(|i| p.sample_value(i, 0)).sum()
    }

    #[test]
    fn sampled_and_evented_profiles() {
        let v = parse(br#"{"shared":{"frames":[{"name":"main"},{"name":"work"}]},"profiles":[
            {"type":"sampled","unit":"milliseconds","samples":[[0,1],[0]],"weights":[3,1]},
            {"type":"evented","unit":"milliseconds","startValue":0,"events":[{"type":"O","frame":0,"at":0},{"type":"O","frame":1,"at":2},{"type":"C","frame":1,"at":7},{"type":"C","frame":0,"at":8}]}]}"#).unwrap();
        assert_eq!(unit(&v), "milliseconds");
        let mut b = StackProfileBuilder::new(&[("cpu", "nanoseconds")], None, 1 << 20);
        add(&v, &mut b, 1_000_000).unwrap();
        assert_eq!(totals(b), (3 + 1 + 8) * 1_000_000);
        let bad = parse(br#"{"shared":{"frames":[]},"profiles":[{"type":"sampled","samples":[[5]]}]}"#).unwrap();
        let mut b = StackProfileBuilder::new(&[("cpu", "nanoseconds")], None, 1 << 20);
        assert!(add(&bad, &mut b, 1).unwrap_err().contains("out of range"));
        assert!(parse(b"[]").is_err());
    }
}
