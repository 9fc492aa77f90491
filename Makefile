# spotflow: `make run` starts the whole system, `make test` runs every test.
GO          ?= go
BIN         := bin/spotflow
DATA_DIR    ?= .data
TEST_DIR    ?= .data/test
GOTESTFLAGS ?= -race -count=1 -timeout 20m

.DEFAULT_GOAL := help
BROWSER_DIR := cmd/spotflow/testdata/browser
AGENCY_JS_DIR := cmd/spotflow/testdata/agency-js
ARTIFACTS   ?= $(CURDIR)/.data/test-artifacts
DEMO_RATE   ?= 20
DEMO_FOR    ?= 5m
FUZZTIME    ?= 1m
FUZZPARALLEL ?= 1

.PHONY: help build run test fuzz bench bench-publish bench-dashboard demo vet lint postgres-binaries browser-deps clean chaos cluster national-day deploy-deps

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/spotflow
	$(GO) build -o $(BIN) ./cmd/spotflow

run: build postgres-binaries ## start the whole system on embedded defaults (desk API on 127.0.0.1:8080)
	./$(BIN) run --data-dir $(DATA_DIR)

vet: ## go vet every package
	$(GO) vet ./...

lint: ## check formatting (gofmt), go.mod and go.sum (go mod tidy) and run staticcheck (pinned in go.mod's tool directive)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.data/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:" >&2; echo "$$unformatted" >&2; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy" >&2; exit 1; }
	$(GO) tool staticcheck ./...

test: build vet lint postgres-binaries browser-deps deploy-deps ## lint, then run every test with the race detector against a real Postgres (started here) and embedded NATS, the pages in headless Chromium
	@set -e; \
	url=$$(./$(BIN) postgres start --data-dir $(TEST_DIR) --log-level warn); \
	trap './$(BIN) postgres stop --data-dir $(TEST_DIR) --log-level warn' EXIT; \
	echo "test database: $$url"; \
	TEST_DATABASE_URL="$$url" SPOTFLOW_TEST_ARTIFACTS="$(ARTIFACTS)" $(GO) test $(GOTESTFLAGS) ./...

fuzz: ## run each fuzz target for FUZZTIME (default 1m), one after another on FUZZPARALLEL workers: desk API submissions, Open311 forms and queries, work items, status events
	$(GO) test -run '^$$' -fuzz '^FuzzDeskSubmission$$' -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) -fuzzminimizetime 10s ./workers/deskapi/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen311Submission$$' -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) -fuzzminimizetime 10s ./workers/open311/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen311RequestsQuery$$' -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) -fuzzminimizetime 10s ./workers/open311/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeWorkItem$$' -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) -fuzzminimizetime 10s ./workers/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeStatusEvent$$' -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) -fuzzminimizetime 10s ./workers/

bench-dashboard: build postgres-binaries ## load 10 million requests' dashboard roll-ups into Postgres and time every dashboard query (several minutes)
	@set -e; \
	url=$$(./$(BIN) postgres start --data-dir $(TEST_DIR) --log-level warn); \
	trap './$(BIN) postgres stop --data-dir $(TEST_DIR) --log-level warn' EXIT; \
	TEST_DATABASE_URL="$$url" $(GO) test -count=1 -timeout 60m -run '^$$' -bench BenchmarkDashboard -benchtime 20x -v \
		./workers/postgres/ -dashboard.requests 10000000

demo: build ## drive the running `make run` with desks submitting DEMO_RATE requests a second for DEMO_FOR; watch /dashboard
	./$(BIN) loadgen --data-dir $(DATA_DIR) --desks 24 --rate $(DEMO_RATE) --duration $(DEMO_FOR)

browser-deps: ## fetch axe-core for the browser test and the NATS client of the JavaScript agency test (npm ci, pinned by package-lock.json); Chromium is found or installed by the test
	@if ! command -v npm >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing npm (apt-get install npm)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
		else echo "npm not found: install it, or the browser test cannot check accessibility" >&2; exit 1; fi; \
	fi
	@npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund --loglevel=error
	@npm ci --prefix $(AGENCY_JS_DIR) --no-audit --no-fund --loglevel=error

deploy-deps: ## install systemd-analyze and promtool, which check deploy/systemd and deploy/prometheus, if this machine lacks them
	@if ! command -v systemd-analyze >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing systemd-analyze (apt-get install systemd)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
		else echo "systemd-analyze not found: install systemd, or the unit files cannot be checked" >&2; exit 1; fi; \
	fi
	@if ! command -v promtool >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing promtool (apt-get install --no-install-recommends prometheus)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
			systemctl disable --now prometheus >/dev/null 2>&1 || true; \
		else echo "promtool not found: install Debian's prometheus package, or the alert rules cannot be checked" >&2; exit 1; fi; \
	fi

bench: build postgres-binaries ## measure the whole system (max rate, 20/50/300/1,000 req/s, durable and not): completed/s, desk-felt p50/p99, CPU per request of spotflow and Postgres, idle CPU, peak RSS, against the targets, the raw limit and the floor (what JetStream and Postgres alone cost per request, and how long requests take through them, at 20, 50 and 1,000 req/s); full report in .data/bench/reports, one line in BENCHMARKS.md
	$(GO) run ./cmd/bench --spotflow $(BIN)

bench-publish: ## run the Go benchmarks of JetStream publishing (durability cost, group commit) and acknowledging
	$(GO) test -run '^$$' -bench BenchmarkPublish -benchtime 3s -count 5 ./events/natsbus/
	$(GO) test -run '^$$' -bench BenchmarkAck -benchtime 20000x -count 5 ./events/natsbus/

chaos: build postgres-binaries ## run the fault suite (kill -9, NATS and Postgres restarts, agency faults, poison, duplicates, a burst over a desk's limit) and print the ledger
	$(GO) run ./cmd/chaos --spotflow $(BIN)

cluster: build postgres-binaries ## run spotflow on a three-node NATS cluster (deploy/nats/cluster.conf, TLS, R3 streams) under load: leader killed every 15 s for 2 min, quorum lost for 30 s, three rounds of lame-duck restarts; print the ledger
	$(GO) run ./cmd/chaos --cluster --spotflow $(BIN)

national-day: build postgres-binaries ## a country's day of desks (765 desks, 308 municipalities, 45,900 requests, two peaks, desks offline for a while) compressed to ten minutes, on the three-node NATS cluster with three processes of every role; prints the ledger and checks the dashboard against Postgres
	$(GO) run ./cmd/chaos --cluster --national-day --spotflow $(BIN)

postgres-binaries: ## install PostgreSQL's server binaries if this machine has none
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing PostgreSQL server binaries (apt-get install postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL server binaries not found: install the postgresql package" >&2; exit 1; fi

clean: ## stop the local clusters and remove build output and local data
	-./$(BIN) postgres stop --data-dir $(TEST_DIR) --log-level warn 2>/dev/null
	-./$(BIN) postgres stop --data-dir $(DATA_DIR) --log-level warn 2>/dev/null
	rm -rf bin $(DATA_DIR)
