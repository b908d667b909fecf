//! Generates the prost/tonic code from `proto/` at build time with the protoc
//! binary vendored by `protoc-bin-vendored`, so a clean machine needs no
//! system protoc.

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
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.file_descriptor_set_path(&descriptors);
    config.bytes(["."]);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &protos,
        &["proto"],
    )?;
    // Protobuf-JSON (serde) for the public API, as Connect's JSON codec needs:
    // lowerCamelCase names (original names accepted), 64-bit integers as
    // strings, enums by name, bytes as base64.
    let set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new().register_descriptors(&set)?.ignore_unknown_fields().build(&[
        ".google.v1",
        ".types.v1",
        ".push.v1",
        ".querier.v1",
        ".settings.v1",
        ".capabilities.v1",
        ".version.v1",
        ".adhocprofiles.v1",
        ".grpc.health.v1",
    ])?;
    Ok(())
}
