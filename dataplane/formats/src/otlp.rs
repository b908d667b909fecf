//! OpenTelemetry profiles ingest: an OTLP `ExportProfilesServiceRequest`
//! (opentelemetry-proto v1.10.0, package
//! `opentelemetry.proto.profiles.v1development`) converted to pprof profiles
//! plus series labels, as Pyroscope maps OTLP profiles to its series.
//!
//! - [`decode_request`]: the request body, binary protobuf or OTLP/JSON.
//! - [`convert`]: one [`OtlpProfile`] per (OTLP profile × distinct sample-level
//!   `service.name`), each a valid pprof with a single sample type.
//!
//! The transport (gRPC `ProfilesService/Export`, OTLP/HTTP
//! `/v1development/profiles`, gzip, body limits, status codes) is not here.
//!
//! ## Conversion rules (§5)
//!
//! Series labels, in this order, the first occurrence of a name winning:
//! `__delta__="false"`, `__otel__="true"`, `__name__`, every resource
//! attribute, every scope attribute (keys verbatim; values that are a string,
//! an int as decimal, or a one-element array of those; others skipped), then
//! `service_name`: the sample-level `service.name`, else the resource's, else
//! `unknown_service:<process.executable.name>`, else `unknown_service`.
//!
//! `__name__` comes from the key `<type>:<unit>:<period type>:<period unit>`
//! (period parts empty when `period` is 0 or `period_type` is unset):
//! `samples:count:cpu:nanoseconds` becomes sample type `cpu`/`nanoseconds`
//! with every value multiplied by `period`, named `process_cpu`;
//! `off_cpu:nanoseconds::` is named `off_cpu`; any other key is named after
//! its third `:`-separated part (the period type, as Pyroscope does), or
//! `process_cpu` when that part is empty.
//!
//! A sample's value is the sum of its `values` (one per observation, OTLP's
//! "shape" rule; Pyroscope sums them for `off_cpu` and rejects several values
//! otherwise), else the number of its timestamps; a sample with neither is an
//! error. `time_unix_nano` 0 is `now`, `duration_nano` 0 is 10 s. Sample
//! attributes other than `service.name` become string sample labels; a
//! non-zero `link_index` adds `span_id` (hex) and, for a 16-byte trace id,
//! `trace_id` (hex). The mapping attribute `process.executable.build_id.gnu`
//! is the pprof build id; locations whose `profile.frame.type` is `kernel`
//! get a copy of their mapping whose file name is prefixed with `[kernel]`.
//! Profiles without samples produce nothing.
//!
//! Every index into the dictionary is bounds-checked: hostile input gives an
//! [`OtlpError`], never a panic. Dictionary-referenced attribute keys and
//! string values (`KeyValue.key_strindex`, `AnyValue.string_value_strindex`,
//! new in v1.10.0) are resolved through the string table.
//!
//! ## OTLP/JSON
//!
//! [`decode_request`] with `json = true` implements the OTLP JSON encoding
//! (protojson with OTLP's deviations) by hand over `serde_json::Value`, for
//! exactly the messages of the request: lowerCamelCase keys (original
//! names accepted too), unknown keys ignored, `null` as the default, 64-bit
//! integers as strings or numbers, `traceId`/`spanId`/`profileId` as hex
//! (base64 accepted as a fallback), other `bytes` as base64.
//!
//! ## Vendored protos
//!
//! `dataplane/proto/proto/opentelemetry/...` (Apache-2.0). No copy of the
//! v1.10.0 tag itself was readable when they were vendored, so each file says
//! where its text came from: `profiles.proto` from upstream `main` after
//! v1.9.0 with the v1.10.0 `Sample` renumbering, as mirrored in
//! `escbeargew99-gif/opentelemetry-proto@7c34c11a`; `resource.proto` from the
//! same mirror (unchanged since v1.9.0); `common.proto` from a verbatim copy
//! of the v1.10.0 file with `string_value_strindex`/`key_strindex`;
//! `profiles_service.proto` from upstream `open-telemetry/opentelemetry-proto`
//! at `3436bbcb` with field 2 as `ProfilesDictionary dictionary` (v1.7.0+).
//! All field numbers match the v1.10.0 list in §5.

mod convert;
mod json;

use prost::Message;

pub use phlox_proto::opentelemetry::proto::collector::profiles::v1development::{
    ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};

/// One converted profile: the series labels and a pprof with one sample type.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpProfile {
    /// Series labels in §5 order: `__delta__`, `__otel__`, `__name__`,
    /// resource attributes, scope attributes, `service_name`. Names are unique.
    pub labels: Vec<(String, String)>,
    /// A valid pprof: `string_table[0] == ""`, ids from 1, one sample type.
    pub profile: phlox_proto::google::v1::Profile,
    /// The OTLP `profile_id` as a UUID string, or empty when it has none.
    pub id: String,
}

/// Why an OTLP request was rejected. Every variant is the client's fault
/// (gRPC `INVALID_ARGUMENT`); [`is_decode_error`](Self::is_decode_error)
/// separates undecodable bodies from conversion failures, which Pyroscope's
/// OTLP/HTTP handler reports with different statuses (§5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    #[error("missing profile metadata dictionary")]
    MissingDictionary,
    #[error("missing resource profiles")]
    MissingResourceProfiles,
    #[error("failed to convert otel profile: {table} index {index} out of range (table has {len} entries)")]
    IndexOutOfRange { table: &'static str, index: i64, len: usize },
    #[error("failed to convert otel profile: sample type is missing")]
    MissingSampleType,
    #[error("failed to convert otel profile: sample has no values and no timestamps")]
    NoValues,
    /// pprof sample type names may not contain `-` (a `malformed_profile` rule).
    #[error("failed to convert otel profile: sample type {0:?} contains '-'")]
    InvalidSampleType(String),
    /// Totals are 64-bit sums (absolute values, so no subset overflows).
    #[error("failed to convert otel profile: the values of sample type {0:?} overflow a 64-bit total")]
    ValuesOverflow(String),
    /// A converted profile would be larger than the per-profile limit.
    #[error(
        "failed to convert otel profile: its samples' stacks would make a profile of more than {limit} bytes (max_profile_size_bytes)"
    )]
    ProfileTooLarge { limit: usize },
    /// All converted profiles together would take more than the request budget.
    #[error(
        "failed to convert otel profile: the request's profiles would take more than {limit} bytes of memory once converted (max_request_memory)"
    )]
    RequestTooLarge { limit: usize },
    #[error("failed to parse protobuf request: {0}")]
    Protobuf(String),
    #[error("failed to parse JSON request: {0}")]
    Json(String),
}

impl OtlpError {
    /// The body could not be decoded (as opposed to a decoded request that
    /// could not be converted).
    pub fn is_decode_error(&self) -> bool {
        matches!(self, OtlpError::Protobuf(_) | OtlpError::Json(_))
    }
}

/// Decodes an `ExportProfilesServiceRequest` body (already decompressed):
/// binary protobuf, or OTLP/JSON when `json` is true.
pub fn decode_request(body: &[u8], json: bool) -> Result<ExportProfilesServiceRequest, OtlpError> {
    if json {
        json::decode(body)
    } else {
        ExportProfilesServiceRequest::decode(body).map_err(|e| OtlpError::Protobuf(e.to_string()))
    }
}

/// Converts every profile of the request (in request order; one output per
/// distinct sample-level `service.name` within a profile, in order of first
/// appearance). `now_nanos` stands in for a zero `time_unix_nano`. Stacks are
/// shared in OTLP and copied per sample in pprof: `budget` is checked before
/// each copy is made.
pub fn convert(
    request: &ExportProfilesServiceRequest,
    now_nanos: i64,
    budget: &crate::Budget,
) -> Result<Vec<OtlpProfile>, OtlpError> {
    let out = convert::convert(request, now_nanos, budget)?;
    for p in &out {
        let types = p.profile.sample_type.len();
        for t in 0..types {
            let sum = p.profile.sample.iter().try_fold(0i64, |sum, s| {
                s.value.get(t).map_or(Some(sum), |v| v.checked_abs().and_then(|a| sum.checked_add(a)))
            });
            if sum.is_none() {
                let name = p.profile.sample_type[t].r#type;
                let name = usize::try_from(name).ok().and_then(|i| p.profile.string_table.get(i)).cloned();
                return Err(OtlpError::ValuesOverflow(name.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}
