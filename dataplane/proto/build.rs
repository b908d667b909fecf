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
        "proto/metastore/v1/metastore.proto",
        // OpenTelemetry profiles ingest (opentelemetry-proto v1.10.0, vendored).
        "proto/opentelemetry/proto/common/v1/common.proto",
        "proto/opentelemetry/proto/resource/v1/resource.proto",
        "proto/opentelemetry/proto/profiles/v1development/profiles.proto",
        "proto/opentelemetry/proto/collector/profiles/v1development/profiles_service.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &protos,
        &["proto"],
    )?;
    Ok(())
}
