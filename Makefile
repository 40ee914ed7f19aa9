# Quick start: `make run` (the main job on conf/default.toml) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEBIAN_PACKAGES := libdpdk-dev dpdk-dev clang libclang-dev libpcap-dev pkg-config tshark python3 iproute2 iputils-ping ethtool procps
HUGEPAGES ?= 512
SWITCHYARD := target/release/switchyard

.PHONY: all deps hugepages build run test check-unsafe lint bench clean

all: build

# Installs what is missing (as root, with apt-get); otherwise names it and stops.
deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make deps: missing Debian packages:" $$missing "(run make deps as root)"; exit 1; fi; \
	echo "make deps: installing" $$missing; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

# Reserves 2 MiB hugepages and mounts hugetlbfs when it can (TAP/vhost ports want
# them; pcap/null ports run without). Never fails: it reports what it could not do.
hugepages:
	@if [ "$$(id -u)" = 0 ] && [ -w /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages ]; then \
	  have=$$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages); \
	  [ "$$have" -ge $(HUGEPAGES) ] || echo $(HUGEPAGES) > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; \
	  mkdir -p /dev/hugepages; mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages || true; \
	  echo "hugepages: $$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) x 2 MiB"; \
	else echo "hugepages: not reserved (needs root); pcap/null ports run without"; fi

build: deps
	$(CARGO) build --release

run: build
	@mkdir -p out
	$(SWITCHYARD) run --config conf/default.toml --stats-json out/default-stats.json
	@echo "output: out/default-out.pcap, stats: out/default-stats.json"

# The whole suite: unit tests (no EAL), the binary in pcap mode, bad configs,
# the bench harness smoke run, lints, and the unsafe boundary.
test: deps hugepages check-unsafe
	$(CARGO) test --all-targets
	$(CARGO) clippy --all-targets -- -D warnings

# `unsafe` is allowed only in src/dpdk/ (and the dpdk-ffi crate).
check-unsafe:
	@if grep -rn unsafe src/ | grep -v '^src/dpdk/'; then \
	  echo "check-unsafe: unsafe outside src/dpdk/"; exit 1; fi

bench: build
	$(SWITCHYARD) bench --scenario forward --seconds 5
	$(SWITCHYARD) bench --scenario l2-switch --seconds 5 --churn 1000
	$(SWITCHYARD) bench --scenario vxlan-encap --seconds 5
	$(SWITCHYARD) bench --scenario vxlan-decap --seconds 5
	$(CARGO) bench --bench wire

clean:
	$(CARGO) clean
	rm -rf out
