//! OTLP/JSON decoding of `ExportProfilesServiceRequest`.
//!
//! Protobuf's JSON mapping with the OTLP deviations (OTLP specification,
//! "JSON Protobuf Encoding"): keys are lowerCamelCase (the original
//! snake_case names are accepted too, as protojson parsers do), unknown keys
//! are ignored, `traceId`/`spanId` are case-insensitive hex rather than
//! base64 (so is `profileId`, as the collector writes it; base64 is accepted
//! when a value is not hex), enums would be numbers (the profiles messages
//! have none). A `null` field is its default; 64-bit integers are strings or
//! numbers; other `bytes` are base64 (standard or URL-safe, padding optional).
//! Nesting is bounded by `serde_json`'s recursion limit (128).

use prost::bytes::Bytes;
use serde_json::{Map, Value};

use phlox_proto::opentelemetry::proto::common::v1 as common;
use phlox_proto::opentelemetry::proto::profiles::v1development as otel;
use phlox_proto::opentelemetry::proto::resource::v1 as resource;

use super::{ExportProfilesServiceRequest, OtlpError};

type Result<T> = std::result::Result<T, OtlpError>;

fn err(msg: impl Into<String>) -> OtlpError {
    OtlpError::Json(msg.into())
}

pub(super) fn decode(body: &[u8]) -> Result<ExportProfilesServiceRequest> {
    let v: Value = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
    let o = Obj::new(&v, "ExportProfilesServiceRequest")?;
    Ok(ExportProfilesServiceRequest {
        resource_profiles: o.messages(("resourceProfiles", "resource_profiles"), resource_profiles)?,
        dictionary: o.message(("dictionary", "dictionary"), dictionary)?,
    })
}

/// A JSON field's names: lowerCamelCase, original.
type Name = (&'static str, &'static str);

/// A JSON object being read as a message.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    what: &'static str,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, what: &'static str) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Obj { map, what }),
            _ => Err(err(format!("{what}: expected an object"))),
        }
    }

    /// The field's value; `None` when absent or `null`.
    fn get(&self, (camel, snake): Name) -> Option<&'a Value> {
        self.map.get(camel).or_else(|| self.map.get(snake)).filter(|v| !v.is_null())
    }

    fn ctx(&self, (camel, _): Name) -> String {
        format!("{}.{camel}", self.what)
    }

    fn scalar<T: Default>(&self, n: Name, parse: fn(&Value) -> Option<T>, ty: &str) -> Result<T> {
        match self.get(n) {
            None => Ok(T::default()),
            Some(v) => parse(v).ok_or_else(|| err(format!("{}: invalid {ty} {v}", self.ctx(n)))),
        }
    }

    fn list<T>(&self, n: Name, parse: fn(&Value) -> Option<T>, ty: &str) -> Result<Vec<T>> {
        let Some(v) = self.get(n) else { return Ok(Vec::new()) };
        let Value::Array(a) = v else { return Err(err(format!("{}: expected an array", self.ctx(n)))) };
        a.iter().map(|e| parse(e).ok_or_else(|| err(format!("{}: invalid {ty} {e}", self.ctx(n))))).collect()
    }

    fn i32(&self, n: Name) -> Result<i32> {
        self.scalar(n, parse_i32, "int32")
    }
    fn u32(&self, n: Name) -> Result<u32> {
        self.scalar(n, parse_u32, "uint32")
    }
    fn i64(&self, n: Name) -> Result<i64> {
        self.scalar(n, parse_i64, "int64")
    }
    fn u64(&self, n: Name) -> Result<u64> {
        self.scalar(n, parse_u64, "uint64")
    }
    fn string(&self, n: Name) -> Result<String> {
        self.scalar(n, |v| v.as_str().map(str::to_owned), "string")
    }
    fn base64(&self, n: Name) -> Result<Bytes> {
        self.scalar(n, |v| v.as_str().and_then(decode_base64).map(Bytes::from), "base64 bytes")
    }
    fn id(&self, n: Name) -> Result<Bytes> {
        self.scalar(n, |v| v.as_str().and_then(|s| decode_hex(s).or_else(|| decode_base64(s))).map(Bytes::from), "id")
    }

    fn message<T>(&self, n: Name, parse: fn(&Value) -> Result<T>) -> Result<Option<T>> {
        self.get(n).map(parse).transpose()
    }

    fn messages<T>(&self, n: Name, parse: fn(&Value) -> Result<T>) -> Result<Vec<T>> {
        let Some(v) = self.get(n) else { return Ok(Vec::new()) };
        let Value::Array(a) = v else { return Err(err(format!("{}: expected an array", self.ctx(n)))) };
        a.iter().map(parse).collect()
    }
}

fn resource_profiles(v: &Value) -> Result<otel::ResourceProfiles> {
    let o = Obj::new(v, "ResourceProfiles")?;
    Ok(otel::ResourceProfiles {
        resource: o.message(("resource", "resource"), resource)?,
        scope_profiles: o.messages(("scopeProfiles", "scope_profiles"), scope_profiles)?,
        schema_url: o.string(("schemaUrl", "schema_url"))?,
    })
}

fn resource(v: &Value) -> Result<resource::Resource> {
    let o = Obj::new(v, "Resource")?;
    Ok(resource::Resource {
        attributes: o.messages(("attributes", "attributes"), key_value)?,
        dropped_attributes_count: o.u32(("droppedAttributesCount", "dropped_attributes_count"))?,
        entity_refs: o.messages(("entityRefs", "entity_refs"), entity_ref)?,
    })
}

fn entity_ref(v: &Value) -> Result<common::EntityRef> {
    let o = Obj::new(v, "EntityRef")?;
    Ok(common::EntityRef {
        schema_url: o.string(("schemaUrl", "schema_url"))?,
        r#type: o.string(("type", "type"))?,
        id_keys: o.list(("idKeys", "id_keys"), |v| v.as_str().map(str::to_owned), "string")?,
        description_keys: o.list(
            ("descriptionKeys", "description_keys"),
            |v| v.as_str().map(str::to_owned),
            "string",
        )?,
    })
}

fn key_value(v: &Value) -> Result<common::KeyValue> {
    let o = Obj::new(v, "KeyValue")?;
    Ok(common::KeyValue {
        key: o.string(("key", "key"))?,
        value: o.message(("value", "value"), any_value)?,
        key_strindex: o.i32(("keyStrindex", "key_strindex"))?,
    })
}

fn any_value(v: &Value) -> Result<common::AnyValue> {
    use common::any_value::Value as V;
    let o = Obj::new(v, "AnyValue")?;
    const STRING: Name = ("stringValue", "string_value");
    const BOOL: Name = ("boolValue", "bool_value");
    const INT: Name = ("intValue", "int_value");
    const DOUBLE: Name = ("doubleValue", "double_value");
    const ARRAY: Name = ("arrayValue", "array_value");
    const KVLIST: Name = ("kvlistValue", "kvlist_value");
    const BYTES: Name = ("bytesValue", "bytes_value");
    const STRINDEX: Name = ("stringValueStrindex", "string_value_strindex");
    let set = [STRING, BOOL, INT, DOUBLE, ARRAY, KVLIST, BYTES, STRINDEX].into_iter().filter(|&n| o.get(n).is_some());
    let value = match set.collect::<Vec<_>>().as_slice() {
        [] => None,
        [n] if *n == STRING => Some(V::StringValue(o.string(STRING)?)),
        [n] if *n == BOOL => Some(V::BoolValue(o.scalar(BOOL, Value::as_bool, "bool")?)),
        [n] if *n == INT => Some(V::IntValue(o.i64(INT)?)),
        [n] if *n == DOUBLE => Some(V::DoubleValue(o.scalar(DOUBLE, parse_f64, "double")?)),
        [n] if *n == ARRAY => {
            let a = Obj::new(o.get(ARRAY).unwrap_or(&Value::Null), "ArrayValue")?;
            Some(V::ArrayValue(common::ArrayValue { values: a.messages(("values", "values"), any_value)? }))
        }
        [n] if *n == KVLIST => {
            let a = Obj::new(o.get(KVLIST).unwrap_or(&Value::Null), "KeyValueList")?;
            Some(V::KvlistValue(common::KeyValueList { values: a.messages(("values", "values"), key_value)? }))
        }
        [n] if *n == BYTES => Some(V::BytesValue(o.base64(BYTES)?)),
        [n] if *n == STRINDEX => Some(V::StringValueStrindex(o.i32(STRINDEX)?)),
        _ => return Err(err("AnyValue: more than one value set")),
    };
    Ok(common::AnyValue { value })
}

fn scope(v: &Value) -> Result<common::InstrumentationScope> {
    let o = Obj::new(v, "InstrumentationScope")?;
    Ok(common::InstrumentationScope {
        name: o.string(("name", "name"))?,
        version: o.string(("version", "version"))?,
        attributes: o.messages(("attributes", "attributes"), key_value)?,
        dropped_attributes_count: o.u32(("droppedAttributesCount", "dropped_attributes_count"))?,
    })
}

fn scope_profiles(v: &Value) -> Result<otel::ScopeProfiles> {
    let o = Obj::new(v, "ScopeProfiles")?;
    Ok(otel::ScopeProfiles {
        scope: o.message(("scope", "scope"), scope)?,
        profiles: o.messages(("profiles", "profiles"), profile)?,
        schema_url: o.string(("schemaUrl", "schema_url"))?,
    })
}

fn profile(v: &Value) -> Result<otel::Profile> {
    let o = Obj::new(v, "Profile")?;
    Ok(otel::Profile {
        sample_type: o.message(("sampleType", "sample_type"), value_type)?,
        samples: o.messages(("samples", "samples"), sample)?,
        time_unix_nano: o.u64(("timeUnixNano", "time_unix_nano"))?,
        duration_nano: o.u64(("durationNano", "duration_nano"))?,
        period_type: o.message(("periodType", "period_type"), value_type)?,
        period: o.i64(("period", "period"))?,
        profile_id: o.id(("profileId", "profile_id"))?,
        dropped_attributes_count: o.u32(("droppedAttributesCount", "dropped_attributes_count"))?,
        original_payload_format: o.string(("originalPayloadFormat", "original_payload_format"))?,
        original_payload: o.base64(("originalPayload", "original_payload"))?,
        attribute_indices: o.list(("attributeIndices", "attribute_indices"), parse_i32, "int32")?,
    })
}

fn value_type(v: &Value) -> Result<otel::ValueType> {
    let o = Obj::new(v, "ValueType")?;
    Ok(otel::ValueType {
        type_strindex: o.i32(("typeStrindex", "type_strindex"))?,
        unit_strindex: o.i32(("unitStrindex", "unit_strindex"))?,
    })
}

fn sample(v: &Value) -> Result<otel::Sample> {
    let o = Obj::new(v, "Sample")?;
    Ok(otel::Sample {
        stack_index: o.i32(("stackIndex", "stack_index"))?,
        attribute_indices: o.list(("attributeIndices", "attribute_indices"), parse_i32, "int32")?,
        link_index: o.i32(("linkIndex", "link_index"))?,
        values: o.list(("values", "values"), parse_i64, "int64")?,
        timestamps_unix_nano: o.list(("timestampsUnixNano", "timestamps_unix_nano"), parse_u64, "fixed64")?,
    })
}

fn dictionary(v: &Value) -> Result<otel::ProfilesDictionary> {
    let o = Obj::new(v, "ProfilesDictionary")?;
    Ok(otel::ProfilesDictionary {
        mapping_table: o.messages(("mappingTable", "mapping_table"), mapping)?,
        location_table: o.messages(("locationTable", "location_table"), location)?,
        function_table: o.messages(("functionTable", "function_table"), function)?,
        link_table: o.messages(("linkTable", "link_table"), link)?,
        string_table: o.list(("stringTable", "string_table"), |v| v.as_str().map(str::to_owned), "string")?,
        attribute_table: o.messages(("attributeTable", "attribute_table"), key_value_and_unit)?,
        stack_table: o.messages(("stackTable", "stack_table"), stack)?,
    })
}

fn mapping(v: &Value) -> Result<otel::Mapping> {
    let o = Obj::new(v, "Mapping")?;
    Ok(otel::Mapping {
        memory_start: o.u64(("memoryStart", "memory_start"))?,
        memory_limit: o.u64(("memoryLimit", "memory_limit"))?,
        file_offset: o.u64(("fileOffset", "file_offset"))?,
        filename_strindex: o.i32(("filenameStrindex", "filename_strindex"))?,
        attribute_indices: o.list(("attributeIndices", "attribute_indices"), parse_i32, "int32")?,
    })
}

fn location(v: &Value) -> Result<otel::Location> {
    let o = Obj::new(v, "Location")?;
    Ok(otel::Location {
        mapping_index: o.i32(("mappingIndex", "mapping_index"))?,
        address: o.u64(("address", "address"))?,
        lines: o.messages(("lines", "lines"), line)?,
        attribute_indices: o.list(("attributeIndices", "attribute_indices"), parse_i32, "int32")?,
    })
}

fn line(v: &Value) -> Result<otel::Line> {
    let o = Obj::new(v, "Line")?;
    Ok(otel::Line {
        function_index: o.i32(("functionIndex", "function_index"))?,
        line: o.i64(("line", "line"))?,
        column: o.i64(("column", "column"))?,
    })
}

fn function(v: &Value) -> Result<otel::Function> {
    let o = Obj::new(v, "Function")?;
    Ok(otel::Function {
        name_strindex: o.i32(("nameStrindex", "name_strindex"))?,
        system_name_strindex: o.i32(("systemNameStrindex", "system_name_strindex"))?,
        filename_strindex: o.i32(("filenameStrindex", "filename_strindex"))?,
        start_line: o.i64(("startLine", "start_line"))?,
    })
}

fn link(v: &Value) -> Result<otel::Link> {
    let o = Obj::new(v, "Link")?;
    Ok(otel::Link { trace_id: o.id(("traceId", "trace_id"))?, span_id: o.id(("spanId", "span_id"))? })
}

fn stack(v: &Value) -> Result<otel::Stack> {
    let o = Obj::new(v, "Stack")?;
    Ok(otel::Stack { location_indices: o.list(("locationIndices", "location_indices"), parse_i32, "int32")? })
}

fn key_value_and_unit(v: &Value) -> Result<otel::KeyValueAndUnit> {
    let o = Obj::new(v, "KeyValueAndUnit")?;
    Ok(otel::KeyValueAndUnit {
        key_strindex: o.i32(("keyStrindex", "key_strindex"))?,
        value: o.message(("value", "value"), any_value)?,
        unit_strindex: o.i32(("unitStrindex", "unit_strindex"))?,
    })
}

/// An integer from a JSON number (an integral float such as `1e3` too) or a
/// decimal string, as protojson accepts.
fn parse_integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(i128::from(u))
            } else {
                float_to_int(n.as_f64()?)
            }
        }
        Value::String(s) => match s.parse::<i128>() {
            Ok(i) => Some(i),
            Err(_) => float_to_int(s.parse::<f64>().ok()?),
        },
        _ => None,
    }
}

fn float_to_int(f: f64) -> Option<i128> {
    // |f| < 2^64 keeps the cast exact for every integral value accepted.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0).then_some(f as i128)
}

fn parse_i32(v: &Value) -> Option<i32> {
    parse_integer(v).and_then(|i| i32::try_from(i).ok())
}
fn parse_u32(v: &Value) -> Option<u32> {
    parse_integer(v).and_then(|i| u32::try_from(i).ok())
}
fn parse_i64(v: &Value) -> Option<i64> {
    parse_integer(v).and_then(|i| i64::try_from(i).ok())
}
fn parse_u64(v: &Value) -> Option<u64> {
    parse_integer(v).and_then(|i| u64::try_from(i).ok())
}

fn parse_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// Case-insensitive hex; `None` when `s` is not hex of even length.
pub(super) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// Base64, standard or URL-safe alphabet, padding optional.
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    }
    let b = s.as_bytes();
    let data = match b {
        [rest @ .., b'=', b'='] if b.len().is_multiple_of(4) => rest,
        [rest @ .., b'='] if b.len().is_multiple_of(4) => rest,
        _ => b,
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | sextet(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn hex_and_base64() {
        assert_eq!(decode_hex("00aB1f").unwrap(), vec![0x00, 0xab, 0x1f]);
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
        assert!(decode_hex("abc").is_none());
        assert!(decode_hex("zz").is_none());
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("").unwrap(), Vec::<u8>::new());
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a=b=").is_none());
        assert!(decode_base64("====").is_none());
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(&json!("-9223372036854775808")), Some(i64::MIN));
        assert_eq!(parse_u64(&json!("18446744073709551615")), Some(u64::MAX));
        assert_eq!(parse_u64(&json!(18446744073709551615u64)), Some(u64::MAX));
        assert_eq!(parse_u64(&json!(-1)), None);
        assert_eq!(parse_i32(&json!(1e3)), Some(1000));
        assert_eq!(parse_i32(&json!("1e3")), Some(1000));
        assert_eq!(parse_i32(&json!(1.5)), None);
        assert_eq!(parse_i32(&json!(2147483648i64)), None);
        assert_eq!(parse_i32(&json!(true)), None);
        assert_eq!(parse_i32(&json!("x")), None);
        assert_eq!(parse_f64(&json!("NaN")).map(f64::is_nan), Some(true));
        assert_eq!(parse_f64(&json!("-Infinity")), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn any_value_oneof() {
        let v = any_value(&json!({"intValue": "5"})).unwrap();
        assert_eq!(v.value, Some(common::any_value::Value::IntValue(5)));
        let v = any_value(&json!({"string_value": "s"})).unwrap();
        assert_eq!(v.value, Some(common::any_value::Value::StringValue("s".into())));
        let v = any_value(&json!({"bytesValue": "aGk="})).unwrap();
        assert_eq!(v.value, Some(common::any_value::Value::BytesValue(Bytes::from_static(b"hi"))));
        let v = any_value(&json!({"arrayValue": {"values": [{"boolValue": true}]}})).unwrap();
        let Some(common::any_value::Value::ArrayValue(a)) = v.value else { panic!("not an array") };
        assert_eq!(a.values[0].value, Some(common::any_value::Value::BoolValue(true)));
        assert_eq!(any_value(&json!({})).unwrap().value, None);
        assert_eq!(any_value(&json!({"intValue": null})).unwrap().value, None);
        assert!(any_value(&json!({"intValue": 1, "stringValue": "x"})).is_err());
        assert!(any_value(&json!({"intValue": "x"})).is_err());
        assert!(any_value(&json!([])).is_err());
    }

    #[test]
    fn ids_are_hex_with_base64_fallback() {
        let l = link(&json!({"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "eee19b7ec3c1b174"})).unwrap();
        assert_eq!(l.trace_id.len(), 16);
        assert_eq!(l.trace_id[0], 0x5b);
        assert_eq!(&l.span_id[..], &[0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
        let l = link(&json!({"spanId": "7uGbfsPBsXQ="})).unwrap();
        assert_eq!(&l.span_id[..], &[0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
        assert!(link(&json!({"spanId": "not an id!"})).is_err());
    }

    #[test]
    fn unknown_fields_ignored_and_type_errors_reported() {
        let s = sample(&json!({"stackIndex": 1, "futureField": {"x": 1}, "values": ["3", 4]})).unwrap();
        assert_eq!(s.stack_index, 1);
        assert_eq!(s.values, vec![3, 4]);
        let e = sample(&json!({"values": "3"})).unwrap_err();
        assert_eq!(e.to_string(), "failed to parse JSON request: Sample.values: expected an array");
        let e = sample(&json!({"linkIndex": [1]})).unwrap_err();
        assert!(e.to_string().contains("Sample.linkIndex: invalid int32"), "{e}");
    }
}
