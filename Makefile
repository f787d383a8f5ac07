# Every target works on a fresh clone with Rust installed; `make test` also needs
# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`), as on every machine here.

CARGO ?= cargo

.PHONY: actionlint heaptrack harness wait gate gate-baseline gate-check faults bench fuzz allocators heap-profile-test heap-profile-cost run test fmt lint check-pg chromium pgbouncer pooler release contract openapi settings-table replay-demo

SCENARIO ?= scenarios/railway-hobby.yaml

## harness: the main job: builds both binaries in release and runs $(SCENARIO) on SQLite and the built-in mocks
harness: release
	./target/release/harness run $(SCENARIO)

MAX_WAIT ?= 60s
## wait: the time question: scenarios/seed-real.yaml at lichess's real pace (10x faster), slots 2/3/4 x lichess
## streams 1/2; prints the fewest slots and lanes whose users' p95 wait is within $(MAX_WAIT) in 512 MB
wait: release
	./target/release/harness recommend scenarios/seed-real.yaml --budget 512MB --max-wait $(MAX_WAIT)

GATE_AGAINST ?= HEAD~1
## gate: the CI memory regression gate on scenarios/ci-gate.yaml: HEAD's importer against $(GATE_AGAINST)'s, both
## built the same way (target/gate-against) and measured in the same run (A/B; commit first: the working tree is
## not what is measured); against the committed baseline where $(GATE_AGAINST) does not exist
gate: release
	@if git rev-parse -q --verify "$(GATE_AGAINST)^{commit}" > /dev/null; then \
	  ./target/release/harness gate scenarios/ci-gate.yaml --candidate-ref HEAD --against-ref "$(GATE_AGAINST)" --no-progress; \
	else \
	  echo "gate: $(GATE_AGAINST) not in this clone; comparing with the committed baseline" >&2; \
	  ./target/release/harness gate scenarios/ci-gate.yaml --baseline reports/baselines/ci-gate.json --no-progress; \
	fi

## gate-baseline: re-measures reports/baselines/ci-gate.json, the fallback `make gate` uses where $(GATE_AGAINST) is
## not in the clone: this commit's release build, at least 3 repeats of scenarios/ci-gate.yaml (peak, anonymous,
## resident text, per import), with the machine it ran on. Refresh it when the scenario or the machine class changes,
## or after a change that moved memory on purpose passed the A/B gate (docs/harness.md)
gate-baseline: release
	./target/release/harness gate scenarios/ci-gate.yaml --baseline reports/baselines/ci-gate.json --update-baseline --no-progress

GATE_AA_RUNS ?= 10
## gate-check: the gate's own proof (not in CI): it fails IMPORT_BATCH_SIZE=200 and =400 and a hungrier
## build against this one, and passes $(GATE_AA_RUNS) A/A runs; prints the counts
gate-check: release heaptrack
	$(CARGO) build --release --workspace --features importer/hungry
	cp target/release/importer target/release/importer-hungry
	$(CARGO) build --release --workspace
	harness/gate-check.sh ./target/release/harness ./target/release/importer ./target/release/importer-hungry $(GATE_AA_RUNS)

## faults: every upstream fault and a kill -9 mid-import (SQLite), two importers on one PostgreSQL with one killed, then the
## providers' and the database's bad days (outages, streams cut every K games, a month served short, backends terminated
## mid-write; PostgreSQL, about 2 minutes); exact delivery or exit 1
faults: release check-pg
	./target/release/harness run scenarios/faults.yaml --no-progress
	./target/release/harness run scenarios/scale-out.yaml --no-progress
	./target/release/harness run scenarios/outages.yaml --no-progress

## replay-demo: makes a production-like database (scenarios/replay-source.yaml: Poisson arrivals at the providers'
## real pace, in real time, about 2 minutes), captures its busiest 10 minutes with `harness capture`, replays
## them (about 2 minutes) and prints production's waits and runs beside the replay's
replay-demo: release
	./target/release/harness run scenarios/replay-source.yaml --no-progress > /dev/null
	./target/release/harness capture --database-url "$$(cat reports/replay-source/latest/cells/*/database.url | head -1)" \
	  --busiest 10m --set MAX_CONCURRENT_IMPORTS=2 --set LICHESS_MAX_STREAMS=1 --set CHESSCOM_MAX_REQUESTS=1 \
	  --out reports/replay-demo/captured.yaml
	./target/release/harness run reports/replay-demo/captured.yaml --no-progress > /dev/null
	@cat reports/captured/latest/replay.md
	@echo "report: reports/captured/latest/report.html"

## bench: criterion benchmarks: parsing against pgn-reader over the same bytes, and store rows/s on SQLite and PostgreSQL
bench: check-pg
	$(CARGO) bench -p importer

FUZZ_SECS ?= 600
## fuzz: the splitter + parser fuzz target for $(FUZZ_SECS) s (installs cargo-fuzz; stable toolchain via RUSTC_BOOTSTRAP)
fuzz:
	command -v cargo-fuzz > /dev/null || $(CARGO) install cargo-fuzz
	mkdir -p importer/fuzz/corpus/split_parse
	cp -n importer/tests/data/real-pgn/* importer/fuzz/corpus/split_parse/
	cd importer/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run split_parse -- -max_total_time=$(FUZZ_SECS) -max_len=65536

## allocators: importer-jemalloc and importer-mimalloc beside target/release/importer, for the ALLOCATOR axis (scenarios/allocators.yaml)
allocators: release
	$(CARGO) build --release -p importer --features jemalloc
	cp target/release/importer target/release/importer-jemalloc
	$(CARGO) build --release -p importer --features mimalloc
	cp target/release/importer target/release/importer-mimalloc
	$(CARGO) build --release -p importer
	./target/release/importer-jemalloc --version
	./target/release/importer-mimalloc --version

## heap-profile-cost: what the heap-profile build costs: the default build and the heap-profile build (named
## importer-jemalloc for the ALLOCATOR axis) in target/heap-profile-cost/, measured in one run (scenarios/heap-profile-cost.yaml)
heap-profile-cost: release
	mkdir -p target/heap-profile-cost
	cp target/release/importer target/heap-profile-cost/importer
	$(CARGO) build --release -p importer --features heap-profile
	cp target/release/importer target/heap-profile-cost/importer-jemalloc
	$(CARGO) build --release -p importer
	./target/release/harness run scenarios/heap-profile-cost.yaml --importer target/heap-profile-cost/importer

## run: the importer alone, on SQLite (./importer.db), serving 127.0.0.1:8080
run:
	$(CARGO) run --release -p importer

## test: formatting, lints, every test on SQLite, PostgreSQL and PostgreSQL through PgBouncer, the scenarios, the
## heap-profile build's endpoint, the API contract (installs Chromium, PgBouncer and schemathesis when missing)
test: fmt lint check-pg chromium pgbouncer
	$(CARGO) test --workspace --all-targets
	$(CARGO) run -q -p harness -- check scenarios/*.yaml
	$(MAKE) heap-profile-test
	$(MAKE) contract
	$(MAKE) actionlint

## heap-profile-test: the `heap-profile` build's GET /debug/pprof/heap: a pprof that decodes, with the token only
## (its tests and its OpenAPI listing; they compile only with the feature)
heap-profile-test:
	$(CARGO) test -p importer --features heap-profile --lib openapi
	$(CARGO) test -p importer --features heap-profile --test it heap_profile

CONTRACT_VENV := target/contract-venv
## actionlint: the GitHub workflows checked by actionlint (pinned in importer/contract/requirements.txt, the contract's venv)
actionlint: $(CONTRACT_VENV)/.installed
	$(CONTRACT_VENV)/bin/actionlint .github/workflows/*.yml

## contract: schemathesis (pinned: importer/contract/requirements.txt) against the real importer on SQLite with the mocks; 45 s, loopback only
contract: $(CONTRACT_VENV)/.installed
	$(CARGO) build -q -p importer -p harness
	importer/contract/run.sh target/debug/importer target/debug/harness $(CONTRACT_VENV)/bin/st

$(CONTRACT_VENV)/.installed: importer/contract/requirements.txt
	python3 -m venv --clear $(CONTRACT_VENV)
	$(CONTRACT_VENV)/bin/pip install -q --disable-pip-version-check -r importer/contract/requirements.txt
	touch $@

## settings-table: regenerate README.md's configuration table from settings/src/table.rs
settings-table:
	$(CARGO) run -q -p settings --example readme-table -- README.md

## openapi: regenerate importer/openapi.json, the committed API contract, from the code
openapi:
	$(CARGO) run -q -p importer -- --openapi > importer/openapi.json

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p importer --all-targets --features heap-profile -- -D warnings

## check-pg: fail early, and clearly, when PostgreSQL is not reachable
check-pg:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432; the tests need it (they never skip)." >&2; exit 1; }

## chromium: Debian's Chromium, which the report.html browser test needs; installed when missing
chromium:
	@command -v chromium > /dev/null || { \
	  echo "installing Debian's chromium for the report.html browser test" >&2; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium > /dev/null; }

## heaptrack: Debian's heaptrack, which the gate's --where and `harness run --heap-profile` use; installed when missing
heaptrack:
	@command -v heaptrack_print > /dev/null || { \
	  echo "installing Debian's heaptrack for the gate's --where" >&2; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq heaptrack > /dev/null; }

## pgbouncer: Debian's PgBouncer (and openssl), which the pooled and TLS tests start on ports of their own; installed when missing
pgbouncer:
	@{ test -x /usr/sbin/pgbouncer || command -v pgbouncer > /dev/null; } && command -v openssl > /dev/null || { \
	  echo "installing Debian's pgbouncer and openssl for the tests through a pooler" >&2; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq pgbouncer openssl > /dev/null; }

## pooler: scenarios/pooler.yaml: four importers through PgBouncer in transaction mode (4 server connections) beside a direct connection
pooler: release check-pg pgbouncer
	./target/release/harness run scenarios/pooler.yaml

release:
	$(CARGO) build --release --workspace
