//! `PushRequest` in protobuf-JSON (Connect `application/json`), as the
//! Grafana apps and JSON clients send it: lowerCamelCase or original field
//! names, `bytes` as base64 (standard or URL-safe, padded or not).

use base64::Engine;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::{LabelPair, ProfileAnnotation};
use serde_json::Value;

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n)).filter(|v| !v.is_null())
}

fn string(v: &Value, names: &[&str], what: &str) -> Result<String, String> {
    match field(v, names) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{what} must be a string")),
    }
}

fn array<'a>(v: &'a Value, names: &[&str], what: &str) -> Result<&'a [Value], String> {
    match field(v, names) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{what} must be an array")),
    }
}

fn bytes(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(b) = engine.decode(s) {
            return Ok(b);
        }
    }
    Err("rawProfile is not base64".into())
}

/// Decodes a JSON `PushRequest`; errors name the offending field.
pub(crate) fn decode(body: &[u8]) -> Result<PushRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON PushRequest: {e}"))?;
    if !v.is_object() {
        return Err("malformed JSON PushRequest: not an object".into());
    }
    let mut req = PushRequest::default();
    for s in array(&v, &["series"], "series")? {
        let mut series = RawProfileSeries::default();
        for l in array(s, &["labels"], "series.labels")? {
            series.labels.push(LabelPair {
                name: string(l, &["name"], "label name")?,
                value: string(l, &["value"], "label value")?,
            });
        }
        for a in array(s, &["annotations"], "series.annotations")? {
            series.annotations.push(ProfileAnnotation {
                key: string(a, &["key"], "annotation key")?,
                value: string(a, &["value"], "annotation value")?,
            });
        }
        for smp in array(s, &["samples"], "series.samples")? {
            let raw = string(smp, &["rawProfile", "raw_profile"], "rawProfile")?;
            series.samples.push(RawSample { raw_profile: bytes(&raw)?.into(), id: string(smp, &["ID", "id"], "ID")? });
        }
        req.series.push(series);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_push_requests_decode() {
        let body = br#"{"series":[{"labels":[{"name":"__name__","value":"process_cpu"}],"samples":[{"rawProfile":"AQID","ID":"x"},{"raw_profile":"AQI"}]}]}"#;
        let r = decode(body).unwrap();
        assert_eq!(r.series[0].labels[0].value, "process_cpu");
        assert_eq!(r.series[0].samples[0].raw_profile.as_ref(), &[1, 2, 3]);
        assert_eq!(r.series[0].samples[0].id, "x");
        assert_eq!(r.series[0].samples[1].raw_profile.as_ref(), &[1, 2]);
        assert!(decode(b"[]").unwrap_err().contains("not an object"));
        assert!(decode(br#"{"series":{}}"#).unwrap_err().contains("series must be an array"));
        assert!(decode(br#"{"series":[{"samples":[{"rawProfile":"%%%"}]}]}"#).unwrap_err().contains("base64"));
        assert!(decode(b"{").is_err());
    }
}
