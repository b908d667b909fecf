//! OTLP profile → pprof + series labels (§5).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use phlox_proto::google::v1 as pprof;
use phlox_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use phlox_proto::opentelemetry::proto::profiles::v1development as otel;

use super::{ExportProfilesServiceRequest, OtlpError, OtlpProfile};
use crate::Budget;

/// The request's budget and what its converted profiles take so far.
struct Spent<'b> {
    budget: &'b Budget,
    request_bytes: usize,
}

const SERVICE_NAME: &str = "service.name";
const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
const BUILD_ID_GNU: &str = "process.executable.build_id.gnu";
const FRAME_TYPE: &str = "profile.frame.type";
const UNKNOWN_SERVICE: &str = "unknown_service";
const DEFAULT_DURATION_NANOS: i64 = 10_000_000_000;

pub(super) fn convert(
    req: &ExportProfilesServiceRequest,
    now_nanos: i64,
    budget: &Budget,
) -> Result<Vec<OtlpProfile>, OtlpError> {
    let dict = Dict(req.dictionary.as_ref().ok_or(OtlpError::MissingDictionary)?);
    let mut spent = Spent { budget, request_bytes: 0 };
    if req.resource_profiles.is_empty() {
        return Err(OtlpError::MissingResourceProfiles);
    }
    let mut out = Vec::new();
    for rp in &req.resource_profiles {
        let resource = resolve_attributes(rp.resource.as_ref().map_or(&[][..], |r| &r.attributes), dict)?;
        let resource_service = resource_service_name(&resource);
        for sp in &rp.scope_profiles {
            let scope = resolve_attributes(sp.scope.as_ref().map_or(&[][..], |s| &s.attributes), dict)?;
            for p in &sp.profiles {
                for group in convert_profile(p, dict, now_nanos, &mut spent)? {
                    let mut labels = Labels::default();
                    labels.push("__delta__", "false");
                    labels.push("__otel__", "true");
                    labels.push("__name__", &group.name);
                    for (k, v) in resource.iter().chain(scope.iter()) {
                        labels.push(k, v);
                    }
                    let service = if group.service.is_empty() { &resource_service } else { &group.service };
                    labels.push("service_name", service);
                    out.push(OtlpProfile {
                        labels: labels.list,
                        profile: group.profile,
                        id: profile_id(&p.profile_id),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Series labels with first-wins deduplication by name.
#[derive(Default)]
struct Labels {
    list: Vec<(String, String)>,
}

impl Labels {
    fn push(&mut self, name: &str, value: &str) {
        if !self.list.iter().any(|(n, _)| n == name) {
            self.list.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// `service.name`, else `unknown_service:<process.executable.name>`, else
/// `unknown_service`, from resolved resource attributes.
fn resource_service_name(attrs: &[(String, String)]) -> String {
    let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if let Some(s) = get(SERVICE_NAME) {
        return s.to_owned();
    }
    match get(PROCESS_EXECUTABLE_NAME) {
        Some(exe) => format!("{UNKNOWN_SERVICE}:{exe}"),
        None => UNKNOWN_SERVICE.to_owned(),
    }
}

/// Resource/scope attributes as (key, value) strings, skipping empty keys
/// and values that are not label-like (see [`label_value`]).
fn resolve_attributes(attrs: &[KeyValue], dict: Dict<'_>) -> Result<Vec<(String, String)>, OtlpError> {
    let mut out = Vec::with_capacity(attrs.len());
    for kv in attrs {
        let key = if kv.key.is_empty() && kv.key_strindex != 0 { dict.str(kv.key_strindex)? } else { &kv.key };
        if key.is_empty() {
            continue;
        }
        if let Some(v) = label_value(kv.value.as_ref(), dict)? {
            out.push((key.to_owned(), v));
        }
    }
    Ok(out)
}

/// An attribute value as a label value: a non-empty string, an int in
/// decimal, or a one-element array of those. `None` for anything else.
fn label_value(v: Option<&AnyValue>, dict: Dict<'_>) -> Result<Option<String>, OtlpError> {
    fn scalar(v: &any_value::Value, dict: Dict<'_>) -> Result<Option<String>, OtlpError> {
        Ok(match v {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::StringValueStrindex(i) => Some(dict.str(*i)?.to_owned()),
            _ => None,
        })
    }
    let s = match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::ArrayValue(a)) => match a.values.as_slice() {
            [one] => match one.value.as_ref() {
                Some(v) => scalar(v, dict)?,
                None => None,
            },
            _ => None,
        },
        Some(v) => scalar(v, dict)?,
        None => None,
    };
    Ok(s.filter(|s| !s.is_empty()))
}

/// The request's dictionary with bounds-checked accessors.
#[derive(Clone, Copy)]
struct Dict<'a>(&'a otel::ProfilesDictionary);

fn at<'a, T>(table: &'a [T], index: i32, name: &'static str) -> Result<&'a T, OtlpError> {
    usize::try_from(index).ok().and_then(|i| table.get(i)).ok_or(OtlpError::IndexOutOfRange {
        table: name,
        index: i64::from(index),
        len: table.len(),
    })
}

impl<'a> Dict<'a> {
    fn str(self, i: i32) -> Result<&'a str, OtlpError> {
        at(&self.0.string_table, i, "string_table").map(String::as_str)
    }
    fn attribute(self, i: i32) -> Result<&'a otel::KeyValueAndUnit, OtlpError> {
        at(&self.0.attribute_table, i, "attribute_table")
    }
    fn stack(self, i: i32) -> Result<&'a otel::Stack, OtlpError> {
        at(&self.0.stack_table, i, "stack_table")
    }
    fn location(self, i: i32) -> Result<&'a otel::Location, OtlpError> {
        at(&self.0.location_table, i, "location_table")
    }
    fn function(self, i: i32) -> Result<&'a otel::Function, OtlpError> {
        at(&self.0.function_table, i, "function_table")
    }
    fn link(self, i: i32) -> Result<&'a otel::Link, OtlpError> {
        at(&self.0.link_table, i, "link_table")
    }
    /// The mapping of a location; `None` for index 0 when `mapping_table[0]`
    /// is absent or the zero value (no mapping).
    fn mapping(self, i: i32) -> Result<Option<&'a otel::Mapping>, OtlpError> {
        if i == 0 && self.0.mapping_table.first().is_none_or(|m| *m == otel::Mapping::default()) {
            return Ok(None);
        }
        at(&self.0.mapping_table, i, "mapping_table").map(Some)
    }

    /// The value of the first attribute named `key` among `indices`, as a
    /// label value ("" when it has none). Every index up to the match is
    /// checked.
    fn attribute_value(self, indices: &[i32], key: &str) -> Result<Option<String>, OtlpError> {
        for &i in indices {
            let attr = self.attribute(i)?;
            if self.str(attr.key_strindex)? == key {
                return Ok(Some(label_value(attr.value.as_ref(), self)?.unwrap_or_default()));
            }
        }
        Ok(None)
    }
}

/// One pprof of an OTLP profile: the samples of one sample-level `service.name`.
struct Group {
    service: String,
    name: String,
    profile: pprof::Profile,
}

/// How sample values are rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueRule {
    Keep,
    /// `samples:count` with period `cpu:nanoseconds`: count × period.
    TimesPeriod,
}

/// The client's profile id as a UUID string: 16 bytes, not all zero; else
/// empty (the distributor then gives each accepted profile its own id).
fn profile_id(bytes: &[u8]) -> String {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) if b != [0; 16] => uuid::Uuid::from_bytes(b).hyphenated().to_string(),
        _ => String::new(),
    }
}

fn convert_profile(
    p: &otel::Profile,
    dict: Dict<'_>,
    now_nanos: i64,
    spent: &mut Spent<'_>,
) -> Result<Vec<Group>, OtlpError> {
    if p.samples.is_empty() {
        return Ok(Vec::new());
    }
    let st = p.sample_type.as_ref().ok_or(OtlpError::MissingSampleType)?;
    let (mut sample_type, mut sample_unit) = (dict.str(st.type_strindex)?, dict.str(st.unit_strindex)?);
    let period_type = match &p.period_type {
        Some(vt) => Some((dict.str(vt.type_strindex)?, dict.str(vt.unit_strindex)?)),
        None => None,
    };
    let (key_pt, key_pu) = match period_type {
        Some(pt) if p.period != 0 => pt,
        _ => ("", ""),
    };
    let key = format!("{sample_type}:{sample_unit}:{key_pt}:{key_pu}");
    let (name, rule) = if key == "samples:count:cpu:nanoseconds" {
        (sample_type, sample_unit) = ("cpu", "nanoseconds");
        ("process_cpu".to_owned(), ValueRule::TimesPeriod)
    } else if key == "off_cpu:nanoseconds::" {
        ("off_cpu".to_owned(), ValueRule::Keep)
    } else {
        match key.split(':').nth(2) {
            Some(n) if !n.is_empty() => (n.to_owned(), ValueRule::Keep),
            _ => ("process_cpu".to_owned(), ValueRule::Keep),
        }
    };
    if sample_type.contains('-') {
        return Err(OtlpError::InvalidSampleType(sample_type.to_owned()));
    }
    let header = Header {
        sample_type: (sample_type, sample_unit),
        period_type,
        period: p.period,
        time_nanos: match p.time_unix_nano as i64 {
            0 => now_nanos,
            t => t,
        },
        duration_nanos: match p.duration_nano as i64 {
            0 => DEFAULT_DURATION_NANOS,
            d => d,
        },
    };

    let mut groups: Vec<(String, Builder<'_>)> = Vec::new();
    let mut by_service: HashMap<String, usize> = HashMap::new();
    for s in &p.samples {
        let service = dict.attribute_value(&s.attribute_indices, SERVICE_NAME)?.unwrap_or_default();
        let g = match by_service.get(&service) {
            Some(&g) => g,
            None => {
                groups.push((service.clone(), Builder::new(dict, &header)));
                by_service.insert(service, groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[g].1.add_sample(s, rule, p.period, spent)?;
    }
    Ok(groups.into_iter().map(|(service, b)| Group { service, name: name.clone(), profile: b.finish() }).collect())
}

/// The profile-level fields every group's pprof shares.
struct Header<'a> {
    sample_type: (&'a str, &'a str),
    period_type: Option<(&'a str, &'a str)>,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
}

/// Symbol availability of a pprof mapping, over the locations that use it.
#[derive(Clone, Copy)]
struct MappingFlags {
    functions: bool,
    filenames: bool,
    line_numbers: bool,
    inline_frames: bool,
}

/// Builds one pprof, copying only the dictionary entries its samples use.
struct Builder<'a> {
    dict: Dict<'a>,
    out: pprof::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<i32, u64>,
    locations: HashMap<i32, u64>,
    /// (mapping index, kernel copy) → pprof mapping id.
    mappings: HashMap<(i32, bool), u64>,
    /// Parallel to `out.mapping`.
    flags: Vec<MappingFlags>,
    /// Least encoded size of the samples so far (a byte per location id and per sample).
    encoded_bytes: usize,
}

impl<'a> Builder<'a> {
    fn new(dict: Dict<'a>, h: &Header<'_>) -> Self {
        let mut b = Builder {
            dict,
            out: pprof::Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            mappings: HashMap::new(),
            flags: Vec::new(),
            encoded_bytes: 0,
        };
        b.string("");
        let st = pprof::ValueType { r#type: b.string(h.sample_type.0), unit: b.string(h.sample_type.1) };
        b.out.default_sample_type = st.r#type;
        b.out.sample_type = vec![st];
        b.out.period_type = h.period_type.map(|(t, u)| pprof::ValueType { r#type: b.string(t), unit: b.string(u) });
        b.out.period = h.period;
        b.out.time_nanos = h.time_nanos;
        b.out.duration_nanos = h.duration_nanos;
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn add_sample(
        &mut self,
        s: &otel::Sample,
        rule: ValueRule,
        period: i64,
        spent: &mut Spent<'_>,
    ) -> Result<(), OtlpError> {
        let mut value = if !s.values.is_empty() {
            s.values.iter().fold(0i64, |acc, v| acc.wrapping_add(*v))
        } else if !s.timestamps_unix_nano.is_empty() {
            s.timestamps_unix_nano.len() as i64
        } else {
            return Err(OtlpError::NoValues);
        };
        if rule == ValueRule::TimesPeriod {
            value = value.wrapping_mul(period);
        }

        let dict = self.dict;
        let mut label = Vec::with_capacity(s.attribute_indices.len() + 2);
        for &i in &s.attribute_indices {
            let attr = dict.attribute(i)?;
            let key = dict.str(attr.key_strindex)?;
            if key.is_empty() || key == SERVICE_NAME {
                continue;
            }
            if let Some(v) = label_value(attr.value.as_ref(), dict)? {
                label.push(pprof::Label { key: self.string(key), str: self.string(&v), ..Default::default() });
            }
        }
        if s.link_index != 0 {
            let link = dict.link(s.link_index)?;
            if !link.span_id.is_empty() {
                let v = hex(&link.span_id);
                label.push(pprof::Label { key: self.string("span_id"), str: self.string(&v), ..Default::default() });
            }
            if link.trace_id.len() == 16 {
                let v = hex(&link.trace_id);
                label.push(pprof::Label { key: self.string("trace_id"), str: self.string(&v), ..Default::default() });
            }
        }

        let stack = dict.stack(s.stack_index)?;
        // Charge the copy of the (shared) stack before making it.
        let n = stack.location_indices.len();
        self.encoded_bytes = self.encoded_bytes.saturating_add(n).saturating_add(1);
        if self.encoded_bytes > spent.budget.max_profile_bytes {
            return Err(OtlpError::ProfileTooLarge { limit: spent.budget.max_profile_bytes });
        }
        spent.request_bytes = spent.request_bytes.saturating_add(Budget::sample_bytes(n));
        if spent.request_bytes > spent.budget.max_request_bytes {
            return Err(OtlpError::RequestTooLarge { limit: spent.budget.max_request_bytes });
        }
        let mut location_id = Vec::with_capacity(n);
        for &li in &stack.location_indices {
            location_id.push(self.location(li)?);
        }
        self.out.sample.push(pprof::Sample { location_id, value: vec![value], label });
        Ok(())
    }

    fn location(&mut self, index: i32) -> Result<u64, OtlpError> {
        if let Some(&id) = self.locations.get(&index) {
            return Ok(id);
        }
        let dict = self.dict;
        let loc = dict.location(index)?;
        let kernel = dict.attribute_value(&loc.attribute_indices, FRAME_TYPE)?.is_some_and(|t| t == "kernel");
        let mapping_id = self.mapping(loc.mapping_index, kernel)?;
        let mut line = Vec::with_capacity(loc.lines.len());
        for l in &loc.lines {
            line.push(pprof::Line { function_id: self.function(l.function_index)?, line: l.line });
        }
        if mapping_id != 0 {
            let mut functions = !loc.lines.is_empty();
            let mut filenames = !loc.lines.is_empty();
            let mut line_numbers = !loc.lines.is_empty();
            for l in &loc.lines {
                functions &= l.function_index > 0;
                line_numbers &= l.line > 0;
                filenames &= l.function_index > 0 && dict.function(l.function_index)?.filename_strindex > 0;
            }
            let f = &mut self.flags[(mapping_id - 1) as usize];
            f.functions &= functions;
            f.filenames &= filenames;
            f.line_numbers &= line_numbers;
            f.inline_frames |= loc.lines.len() > 1;
        }
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(pprof::Location { id, mapping_id, address: loc.address, line, is_folded: false });
        self.locations.insert(index, id);
        Ok(id)
    }

    /// The pprof mapping id of a location (0 for none).
    fn mapping(&mut self, index: i32, kernel: bool) -> Result<u64, OtlpError> {
        let dict = self.dict;
        let m = dict.mapping(index)?;
        if m.is_none() && !kernel {
            return Ok(0);
        }
        let filename = match m {
            Some(m) => dict.str(m.filename_strindex)?,
            None => "",
        };
        let kernel = kernel && !filename.starts_with("[kernel]");
        let id = match self.mappings.entry((index, kernel)) {
            Entry::Occupied(e) => return Ok(*e.get()),
            Entry::Vacant(e) => *e.insert(self.out.mapping.len() as u64 + 1),
        };
        let filename = match (kernel, filename) {
            (false, f) => f.to_owned(),
            (true, "") => "[kernel]".to_owned(),
            (true, f) => format!("[kernel] {f}"),
        };
        let build_id = match m {
            Some(m) => dict.attribute_value(&m.attribute_indices, BUILD_ID_GNU)?.unwrap_or_default(),
            None => String::new(),
        };
        let mapping = pprof::Mapping {
            id,
            memory_start: m.map_or(0, |m| m.memory_start),
            memory_limit: m.map_or(0, |m| m.memory_limit),
            file_offset: m.map_or(0, |m| m.file_offset),
            filename: self.string(&filename),
            build_id: self.string(&build_id),
            ..Default::default()
        };
        self.out.mapping.push(mapping);
        self.flags.push(MappingFlags { functions: true, filenames: true, line_numbers: true, inline_frames: false });
        Ok(id)
    }

    fn function(&mut self, index: i32) -> Result<u64, OtlpError> {
        if let Some(&id) = self.functions.get(&index) {
            return Ok(id);
        }
        let dict = self.dict;
        let f = dict.function(index)?;
        let (name, system_name, filename) =
            (dict.str(f.name_strindex)?, dict.str(f.system_name_strindex)?, dict.str(f.filename_strindex)?);
        let id = self.out.function.len() as u64 + 1;
        let function = pprof::Function {
            id,
            name: self.string(name),
            system_name: self.string(system_name),
            filename: self.string(filename),
            start_line: f.start_line,
        };
        self.out.function.push(function);
        self.functions.insert(index, id);
        Ok(id)
    }

    fn finish(mut self) -> pprof::Profile {
        for (m, f) in self.out.mapping.iter_mut().zip(&self.flags) {
            m.has_functions = f.functions;
            m.has_filenames = f.filenames;
            m.has_line_numbers = f.line_numbers;
            m.has_inline_frames = f.inline_frames;
        }
        self.out
    }
}

/// Lower-case hex.
pub(super) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use phlox_proto::opentelemetry::proto::common::v1::ArrayValue;

    fn any(v: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    #[test]
    fn label_values() {
        let d = otel::ProfilesDictionary { string_table: vec!["".into(), "x".into()], ..Default::default() };
        let dict = Dict(&d);
        let lv = |v: Option<AnyValue>| label_value(v.as_ref(), dict);
        assert_eq!(lv(any(any_value::Value::StringValue("a".into()))).unwrap().as_deref(), Some("a"));
        assert_eq!(lv(any(any_value::Value::StringValue(String::new()))).unwrap(), None);
        assert_eq!(lv(any(any_value::Value::IntValue(-42))).unwrap().as_deref(), Some("-42"));
        assert_eq!(lv(any(any_value::Value::BoolValue(true))).unwrap(), None);
        assert_eq!(lv(any(any_value::Value::DoubleValue(1.5))).unwrap(), None);
        assert_eq!(lv(any(any_value::Value::StringValueStrindex(1))).unwrap().as_deref(), Some("x"));
        assert!(matches!(
            lv(any(any_value::Value::StringValueStrindex(9))),
            Err(OtlpError::IndexOutOfRange { table: "string_table", index: 9, len: 2 })
        ));
        let one = ArrayValue { values: vec![AnyValue { value: Some(any_value::Value::IntValue(7)) }] };
        assert_eq!(lv(any(any_value::Value::ArrayValue(one))).unwrap().as_deref(), Some("7"));
        let two = ArrayValue {
            values: vec![
                AnyValue { value: Some(any_value::Value::StringValue("a".into())) },
                AnyValue { value: Some(any_value::Value::StringValue("b".into())) },
            ],
        };
        assert_eq!(lv(any(any_value::Value::ArrayValue(two))).unwrap(), None);
        assert_eq!(lv(None).unwrap(), None);
        assert_eq!(lv(Some(AnyValue { value: None })).unwrap(), None);
    }

    #[test]
    fn service_name_fallbacks() {
        let a = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(resource_service_name(&a(&[("service.name", "svc")])), "svc");
        assert_eq!(resource_service_name(&a(&[("process.executable.name", "java")])), "unknown_service:java");
        assert_eq!(resource_service_name(&a(&[("process.executable.name", "java"), ("service.name", "svc")])), "svc");
        assert_eq!(resource_service_name(&[]), "unknown_service");
    }

    #[test]
    fn index_checks() {
        let v = vec![1, 2, 3];
        assert_eq!(*at(&v, 2, "t").unwrap(), 3);
        assert_eq!(at(&v, 3, "t"), Err(OtlpError::IndexOutOfRange { table: "t", index: 3, len: 3 }));
        assert_eq!(at(&v, -1, "t"), Err(OtlpError::IndexOutOfRange { table: "t", index: -1, len: 3 }));
        assert!(at(&v, i32::MIN, "t").unwrap_err().to_string().contains("-2147483648"));
    }

    #[test]
    fn mapping_zero_is_no_mapping() {
        let empty = otel::ProfilesDictionary::default();
        assert!(Dict(&empty).mapping(0).unwrap().is_none());
        assert!(Dict(&empty).mapping(1).is_err());
        let zero = otel::ProfilesDictionary { mapping_table: vec![otel::Mapping::default()], ..Default::default() };
        assert!(Dict(&zero).mapping(0).unwrap().is_none());
        let real = otel::ProfilesDictionary {
            mapping_table: vec![otel::Mapping { memory_start: 1, ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(Dict(&real).mapping(0).unwrap().map(|m| m.memory_start), Some(1));
    }

    #[test]
    fn hex_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x1f]), "00ab1f");
        assert_eq!(hex(&[]), "");
    }
}
