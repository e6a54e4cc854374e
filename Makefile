# tandem: the two commands a fresh Debian 12 machine needs (as root):
#   make run    install dependencies, build release, serve DHCPv6 on the embedded default config
#   make test   install dependencies, run the whole test suite (unit, property, integration
#               tests with real clients in network namespaces) and build the fuzz targets
# Other targets: deps, build, release, check (fmt + clippy), fuzz-build, ci.

CARGO ?= cargo
# Extra arguments for `tandem serve`, e.g. make run ARGS="--interface eth1 --shards 2"
ARGS ?=
FUZZ_MANIFEST := tests/fuzz/Cargo.toml

.PHONY: run test deps build release check fuzz-build ci

run: deps release
	./target/release/tandem serve $(ARGS)

test: deps
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) fuzz-build

deps:
	bash .ci/deps.sh

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --bin tandem

check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The fuzz targets (cargo-fuzz layout, own workspace under tests/fuzz) must at least compile.
# RUSTC_BOOTSTRAP=1: libfuzzer-sys uses nightly-only flags; only the stable toolchain exists.
# Running them: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz <target> (docs/TESTING.md).
fuzz-build:
	@if [ -f $(FUZZ_MANIFEST) ]; then \
		echo "building fuzz targets ($(FUZZ_MANIFEST))"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) build --manifest-path $(FUZZ_MANIFEST) --bins; \
	else \
		echo "no $(FUZZ_MANIFEST): no fuzz targets to build"; \
	fi

ci: deps check test
