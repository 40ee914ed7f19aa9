# Release image: Debian bookworm with the system DPDK 22.11, switchyard as entrypoint.
# Run with --privileged (or the capabilities and devices your ports need) and
# mount your config: docker run --rm -v $PWD/conf:/conf switchyard run --config /conf/x.toml
FROM rust:1-bookworm AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        libdpdk-dev dpdk-dev clang libclang-dev libpcap-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p switchyard -p switchyard-vbd

FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        dpdk dpdk-dev libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchyard /src/target/release/switchyard-vbd /usr/local/bin/
COPY conf /usr/share/switchyard/conf
WORKDIR /usr/share/switchyard
ENTRYPOINT ["/usr/local/bin/switchyard"]
