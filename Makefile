# The two commands: `make run` (the whole system locally) and `make test`
# (everything CI checks). `make bench` measures and writes BENCHMARKS.md.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test lint unit bench deps

deps:
	@scripts/ensure-redis-server.sh

## Redis (yours at 127.0.0.1:6379, or a private one), the sandbox, the api and a worker.
run: deps
	$(CARGO) run -p gateway -- dev --config config/gateway.toml

## Formatting, lints, and every test (unit and end to end, each with its own Redis).
test: deps lint unit

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --test-threads=1; \
	fi

## Throughput figures against the reference, written to BENCHMARKS.md.
bench: deps
	scripts/bench.py
