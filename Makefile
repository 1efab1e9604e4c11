# Developer and CI entry points. `make test` is the one command CI runs.

GO ?= go

.PHONY: test deps bench build mutants

# test installs what is missing (deps), fails on unformatted files, then vets,
# then runs every test with the race detector against real redis-server
# processes (see internal/redistest).
test: deps
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt -l lists files that need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# deps installs redis-server and chromium with apt-get when they are missing.
deps:
	@bash .ci/install-deps
	@redis-server --version
	@(command -v chromium >/dev/null && chromium --version) || chromium-browser --version || true

# bench runs every benchmark once, without the tests.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# build writes the allot binary to bin/allot.
build:
	$(GO) build -o bin/allot ./cmd/allot

# chaos runs the long form of the chaos suite (e2e/): 64 then 30 node
# processes, kill -9, rolling restarts, zombies, Redis crashes and a Cluster
# failover under a group storm. The short form runs in `make test`.
.PHONY: chaos
chaos:
	ALLOT_CHAOS=long $(GO) test -race -count=1 -timeout 60m ./e2e/ -run Chaos -v

# mutants plants each deliberate bug of e2e/mutants/mutants.go in a copy of
# the module, one at a time, runs the tests meant to catch it and fails if
# any survives (a table mutant -> killing test -> time). Slow: not in test.
mutants:
	$(GO) run ./e2e/mutants
