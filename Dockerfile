# syntax=docker/dockerfile:1
#
# The two images of Phlox, built from one (shared, cached) builder stage:
#   docker build --target phlox          -t ghcr.io/phlox-dev/phlox:0.1.0 .
#   docker build --target phlox-operator -t ghcr.io/phlox-dev/phlox-operator:0.1.0 .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 --target phlox ...
# Run the database alone:
#   docker run -p 4040:4040 -v phlox-data:/data ghcr.io/phlox-dev/phlox:0.1.0
# Both run as the distroless nonroot user (uid/gid 65532, numeric so that
# Kubernetes' runAsNonRoot can verify it) and hold only the binary, glibc,
# libgcc/libstdc++ and CA certificates.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# protoc is vendored by protoc-bin-vendored; rust-toolchain.toml pins 1.95.0.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p phlox-server -p phlox-operator \
    && mkdir -p /out \
    && cp target/release/phlox target/release/phlox-operator /out/
# The data directory, owned by nonroot (the final images have no shell).
RUN mkdir -p /data && chown 65532:65532 /data

FROM gcr.io/distroless/cc-debian12:nonroot AS phlox-operator
COPY --from=builder /out/phlox-operator /usr/bin/phlox-operator
USER 65532:65532
ENTRYPOINT ["/usr/bin/phlox-operator"]
CMD ["run"]

# Last, so that a plain `docker build .` gives the database.
FROM gcr.io/distroless/cc-debian12:nonroot AS phlox
COPY --from=builder /out/phlox /usr/bin/phlox
COPY --from=builder --chown=65532:65532 /data /data
ENV PHLOX_DATA_DIR=/data
WORKDIR /data
USER 65532:65532
# 4040: HTTP (Pyroscope APIs, /ready, /metrics); 9095: gRPC (metastore, Raft).
EXPOSE 4040 9095
ENTRYPOINT ["/usr/bin/phlox"]
