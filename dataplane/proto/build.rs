//! Generates the prost/tonic code from `proto/` at build time with the protoc
//! binary vendored by `protoc-bin-vendored`, so a clean machine needs no
//! system protoc; and, next to each public service's tonic server, its
//! Connect adapter (see `src/connect.rs`): the same trait served over
//! Connect's unary protocol, so a service is implemented once.

use std::fmt::Write as _;

/// Packages of the public API: their messages get protobuf-JSON (serde)
/// and their services a Connect adapter.
const PUBLIC: [&str; 10] = [
    "google.v1",
    "types.v1",
    "push.v1",
    "querier.v1",
    "settings.v1",
    "capabilities.v1",
    "version.v1",
    "adhocprofiles.v1",
    "debuginfo.v1alpha1",
    "grpc.health.v1",
];

/// tonic's service generator, followed for public services by the Connect
/// adapter: a `<Service>Connect<T>` that decodes each unary method's
/// request with the call's codec, calls the tonic trait method and encodes
/// its answer. The method table is generated from the descriptor, so
/// adding an RPC is writing one trait method.
struct WithConnect(Box<dyn prost_build::ServiceGenerator>);

/// The module tonic puts a service's server in: `FooBar` → `foo_bar_server`.
fn server_module(service: &str) -> String {
    let mut out = String::new();
    for (i, c) in service.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out + "_server"
}

impl prost_build::ServiceGenerator for WithConnect {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let public = PUBLIC.contains(&service.package.as_str());
        let copy = public.then(|| service.clone());
        self.0.generate(service, buf);
        if let Some(s) = copy {
            connect_adapter(&s, buf);
        }
    }

    fn finalize(&mut self, buf: &mut String) {
        self.0.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.0.finalize_package(package, buf);
    }
}

fn connect_adapter(s: &prost_build::Service, buf: &mut String) {
    let full = format!("{}.{}", s.package, s.proto_name);
    let adapter = format!("{}Connect", s.name);
    let server = server_module(&s.name);
    let unary: Vec<&prost_build::Method> =
        s.methods.iter().filter(|m| !m.client_streaming && !m.server_streaming).collect();
    let names: Vec<String> = unary.iter().map(|m| format!("{:?}", m.proto_name)).collect();
    let mut arms = String::new();
    for m in &unary {
        let _ = write!(
            arms,
            "            {name:?} => Box::pin(async move {{
                let (codec, request) = request.decode::<{input}>({message:?})?;
                let response = <T as {server}::{service}>::{method}(&inner, request).await?;
                crate::connect::encode(codec, response)
            }}),
",
            name = m.proto_name,
            input = m.input_type,
            message = m.input_proto_type.rsplit('.').next().unwrap_or_default(),
            service = s.name,
            method = m.name,
        );
    }
    let _ = write!(
        buf,
        "
/// `{full}` over Connect (unary, proto and JSON): generated from the same
/// descriptor as [`{server}`], calling the same trait.
pub struct {adapter}<T>(std::sync::Arc<T>);

impl<T> {adapter}<T> {{
    pub fn new(inner: T) -> Self {{
        Self(std::sync::Arc::new(inner))
    }}
    pub fn from_arc(inner: std::sync::Arc<T>) -> Self {{
        Self(inner)
    }}
}}

impl<T: {server}::{service}> crate::connect::Service for {adapter}<T> {{
    fn name(&self) -> &'static str {{
        {full:?}
    }}
    fn methods(&self) -> &'static [&'static str] {{
        &[{names}]
    }}
    fn call(&self, method: &str, request: crate::connect::Request) -> crate::connect::Call {{
        let inner = std::sync::Arc::clone(&self.0);
        match method {{
{arms}            other => crate::connect::unimplemented({full:?}, other),
        }}
    }}
}}
",
        service = s.name,
        names = names.join(", "),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protos = [
        "proto/google/v1/profile.proto",
        "proto/types/v1/types.proto",
        "proto/push/v1/push.proto",
        "proto/querier/v1/querier.proto",
        "proto/settings/v1/recording_rules.proto",
        "proto/capabilities/v1/feature_flags.proto",
        "proto/version/v1/version.proto",
        "proto/adhocprofiles/v1/adhocprofiles.proto",
        "proto/debuginfo/v1alpha1/debuginfo.proto",
        "proto/grpc/health/v1/health.proto",
        "proto/metastore/v1/metastore.proto",
        "proto/segmentwriter/v1/segmentwriter.proto",
        "proto/querybackend/v1/querybackend.proto",
        // OpenTelemetry profiles ingest (opentelemetry-proto v1.10.0, vendored).
        "proto/opentelemetry/proto/common/v1/common.proto",
        "proto/opentelemetry/proto/resource/v1/resource.proto",
        "proto/opentelemetry/proto/profiles/v1development/profiles.proto",
        "proto/opentelemetry/proto/collector/profiles/v1development/profiles_service.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("descriptors.bin");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.file_descriptor_set_path(&descriptors);
    config.bytes(["."]);
    config.type_attribute(".", "#[allow(clippy::all)]");
    let tonic = tonic_prost_build::configure().build_client(true).build_server(true).service_generator();
    config.service_generator(Box::new(WithConnect(tonic)));
    config.compile_protos(&protos, &["proto"])?;
    // Protobuf-JSON (serde) for the public API, as Connect's JSON codec needs:
    // lowerCamelCase names (original names accepted), 64-bit integers as
    // strings, enums by name, bytes as base64.
    let set = std::fs::read(&descriptors)?;
    let public: Vec<String> = PUBLIC.iter().map(|p| format!(".{p}")).collect();
    pbjson_build::Builder::new().register_descriptors(&set)?.ignore_unknown_fields().build(&public)?;
    Ok(())
}
