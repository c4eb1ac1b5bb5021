# The otelcol-ebpf image. Build from the repository root:
#   docker build -t registry.example.com/otelcol-ebpf:0.1.0 .
# The builder runs the commands `make build` runs (scripts/deps.sh, then the core, the
# header check and the collector); the eBPF object is compiled for BPF CO-RE, so one
# image runs on any x86-64 kernel with BTF.

# Rust 1.95 (aya 0.14) and Go 1.26 on Debian 12, whose clang 14 / libbpf 1.1 the build expects.
FROM golang:1.26-bookworm AS go

FROM rust:1.95-bookworm AS builder
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH \
    CACHE_DIR=/cache CARGO_TARGET_DIR=/cache/target
WORKDIR /src
COPY scripts/deps.sh scripts/
RUN scripts/deps.sh --build-only
COPY . .
# vmlinux.h comes from the build host's /sys/kernel/btf/vmlinux (visible in the build
# container); CO-RE relocates the programs on each node, so any kernel's BTF will do. On a
# builder without BTF, put a vmlinux.h in the context and pass --build-arg VMLINUX_H=/src/<it>.
ARG VMLINUX_H=""
RUN if [ -z "$VMLINUX_H" ]; then unset VMLINUX_H; fi; \
    make core check-header collector && ldd bin/otelcol-ebpf

# bin/otelcol-ebpf links only libc and libgcc_s dynamically: distroless/cc has both.
FROM gcr.io/distroless/cc-debian12:nonroot
# At /: the opentelemetry-collector Helm chart runs /<command.name>.
COPY --from=builder /src/bin/otelcol-ebpf /otelcol-ebpf
COPY deploy/systemd/config.yaml /etc/otelcol-ebpf/config.yaml
# Non-root by default: a plain `docker run` cannot load eBPF. Kubernetes has no ambient
# capabilities, so deploy/kubernetes/daemonset.yaml runs it as uid 0 with exactly the
# measured capabilities (all others dropped); with Docker:
#   docker run --pid=host --user 0 --cap-drop ALL --cap-add BPF --cap-add PERFMON \
#     --cap-add NET_ADMIN --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH --cap-add SYS_ADMIN \
#     -v /sys/fs/cgroup:/sys/fs/cgroup:ro IMAGE
USER 65532:65532
ENTRYPOINT ["/otelcol-ebpf"]
CMD ["--config", "/etc/otelcol-ebpf/config.yaml"]
