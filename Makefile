# Quick start: `make run` (the main job on conf/default.toml) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEBIAN_PACKAGES := libdpdk-dev dpdk-dev clang libclang-dev libpcap-dev pkg-config tshark python3 iproute2 iputils-ping ethtool procps iperf3 qemu-utils libnbd-bin fio nbdkit nftables tcpreplay
HUGEPAGES ?= 512
SWITCHYARD := target/release/switchyard
BENCH := target/release/switchyard-bench
SOAK_SECONDS ?= 600

.PHONY: all deps hugepages build units run test soak check-unsafe lint bench bench-storage fuzz fuzz-target fuzz-tool clean

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

# The switch (`switchyard`) and the block device driver alone (`switchyard-vbd`, no DPDK).
build: deps units
	$(CARGO) build --release -p switchyard -p switchyard-vbd

# Loadable switching units (docs/unit-abi.md), each build copied to its own
# file: a library at one path cannot be loaded twice, so an upgrade needs two.
# basic-v1/-v2 are the vRouter unit (v2 counts packets by side); the faulty-*
# libraries fail on purpose for the rollback tests.
UNITS := target/units
units: deps
	@mkdir -p $(UNITS)
	$(CARGO) build --release -p switchyard-unit-basic
	cp target/release/libswitchyard_unit_basic.so $(UNITS)/basic-v1.so
	$(CARGO) build --release -p switchyard-unit-basic --features v2
	cp target/release/libswitchyard_unit_basic.so $(UNITS)/basic-v2.so
	for fault in abi-mismatch reject-config unhealthy; do \
	  $(CARGO) build --release -p switchyard-unit-faulty --features $$fault && \
	  cp target/release/libswitchyard_unit_faulty.so $(UNITS)/faulty-$$fault.so || exit 1; \
	done

run: build
	@mkdir -p out
	$(SWITCHYARD) run --config conf/default.toml --stats-json out/default-stats.json
	@echo "output: out/default-out.pcap, stats: out/default-stats.json"

# The whole suite: unit tests (no EAL), the binary in pcap mode, bad configs,
# the bench harness smoke run, lints, and the unsafe boundary. The release
# binary too: tests/damaged_database.rs runs it (a release build aborts on a panic).
test: deps hugepages check-unsafe build
	$(CARGO) test --workspace --all-targets --features switchyard/testing
	$(CARGO) clippy --workspace --all-targets --features switchyard/testing -- -D warnings

# The soak run (as root): the daemon at 90% of its measured maximum for SOAK_SECONDS
# with config churn, upgrades and migrations; prints a report and fails on any check.
soak: deps hugepages units
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --release --test soak -- --ignored --nocapture

# `unsafe` is allowed only in the FFI and safe-wrapper crates: dpdk-ffi, crates/dpdk,
# crates/io-ring and crates/unit-abi; unit crates export through unit-abi.
UNSAFE_CRATES := ^crates/(dpdk|io-ring|unit-abi)/
check-unsafe:
	@if grep -rn unsafe src/ units/ crates/ | grep -vE '$(UNSAFE_CRATES)'; then \
	  echo "check-unsafe: unsafe outside $(UNSAFE_CRATES)"; exit 1; fi

bench: build
	$(CARGO) build --release -p switchyard-bench
	$(BENCH) --scenario forward --seconds 5
	$(BENCH) --scenario l2-switch --seconds 5 --churn 1000
	$(BENCH) --scenario vxlan-encap --seconds 5
	$(BENCH) --scenario vxlan-decap --seconds 5
	$(BENCH) --scenario migration-rewrite --seconds 5
	$(BENCH) --scenario gateway --seconds 5
	$(BENCH) --scenario upgrade --upgrades 100
	$(BENCH) --scenario board --updates 1000 --watchers 3
	$(CARGO) bench --bench wire
	$(MAKE) bench-storage

# fio through switchyard vbd and the block-I/O stage against nbdkit file on the same image (as root).
bench-storage: deps hugepages
	$(CARGO) test --release --test storage_bench -- --ignored --nocapture

# Coverage-guided fuzzing (docs/fuzzing.md): each target of fuzz/ for FUZZ_SECONDS or until it has run FUZZ_RUNS
# inputs (-1: no cap), FUZZ_JOBS targets at a time, then the executions libFuzzer ran. cargo-fuzz on stable Rust:
# without a sanitizer (`-s none`: safe Rust finds its bugs as panics) it passes only stable rustc flags. No EAL,
# no hugepages: the bodies run on byte vectors.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
FUZZ_JOBS ?= $(shell nproc)
FUZZ_TARGETS := $(sort $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs))))
FUZZ := cd fuzz && $(CARGO) fuzz
fuzz: fuzz-tool
	$(FUZZ) build -s none
	@mkdir -p out; rm -f out/fuzz-*.runs; \
	printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I{} $(MAKE) --no-print-directory fuzz-target T={}; \
	echo "fuzz: executions per target"; cat out/fuzz-*.runs; \
	crashed=$$(sed -n 's/: .*FINDING.*//p' out/fuzz-*.runs | tr '\n' ' '); \
	if [ -n "$$crashed" ]; then echo "fuzz: findings in $$crashed(inputs in fuzz/artifacts/)"; exit 1; fi

# One target: make fuzz-target T=pipeline [FUZZ_SECONDS=600] [FUZZ_RUNS=10000000]. A crash stops it, its input
# in fuzz/artifacts/T/, and its line in out/fuzz-T.runs says FINDING.
fuzz-target: fuzz-tool
	@test -n "$(T)" || { echo "fuzz-target: name a target, T=<one of $(FUZZ_TARGETS)>"; exit 2; }
	@mkdir -p out fuzz/corpus/$(T) fuzz/artifacts/$(T)
	@$(FUZZ) run -s none $(T) corpus/$(T) -- -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -max_len=9300 \
	  -artifact_prefix=artifacts/$(T)/ -print_final_stats=1 2>&1 | tee $(CURDIR)/out/fuzz-$(T).log | grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY|thread)' ; \
	status=$${PIPESTATUS[0]}; \
	runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(CURDIR)/out/fuzz-$(T).log); \
	rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(CURDIR)/out/fuzz-$(T).log); \
	verdict=$$( [ $$status = 0 ] && echo "no finding" || echo "FINDING (exit $$status)" ); \
	echo "$(T): $${runs:-?} executions, $${rate:-?} exec/s, $$verdict" | tee $(CURDIR)/out/fuzz-$(T).runs; exit $$status

# cargo-fuzz from crates.io when it is missing.
fuzz-tool:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

clean:
	$(CARGO) clean
	rm -rf out
