# Developer and CI entry points. `make test` is the one command CI runs.

GO ?= go

.PHONY: test deps bench build tidy mutants

# test installs what is missing (deps), fails on unformatted files, then vets,
# then checks that go.mod/go.sum are tidy (both modules), then runs every test
# with the race detector against real redis-server processes (see
# internal/redistest). The `container` tag adds deploy/container_test.go,
# which builds and runs the image with podman (.ci/install-deps installs it);
# a plain `go test ./...` leaves it out.
TEST_TAGS ?= container
test: deps tidy
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt -l lists files that need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet -tags $(TEST_TAGS) ./...
	$(GO) test -race -count=1 -tags $(TEST_TAGS) ./...

# tidy fails when `go mod tidy` would change go.mod or go.sum (of the module or
# of the separate bench module): every dependency is listed once, direct ones
# without `// indirect`.
tidy:
	$(GO) mod tidy -diff
	cd bench && $(GO) mod tidy -diff

# deps installs redis-server, chromium, podman and node/npm with apt-get when
# they are missing, and npm's openai package for the proxy's SDK test.
deps:
	@bash .ci/install-deps
	@redis-server --version
	@node --version
	@(command -v chromium >/dev/null && chromium --version) || chromium-browser --version || true

# bench runs every benchmark once, without the tests.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# build writes the allot binary to bin/allot, stamped with the version git
# describes (as make image does), so `allot --version` names the commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/allot ./cmd/allot

# chaos runs the long form of the chaos suite (e2e/): 64 then 30 node
# processes, kill -9, rolling restarts, zombies, Redis crashes and a Cluster
# failover under a group storm. The short form runs in `make test`.
.PHONY: chaos
chaos:
	ALLOT_CHAOS=long $(GO) test -race -count=1 -timeout 60m ./e2e/ -run Chaos -v

# image builds the container image allot:<version> and allot:latest (a static
# binary FROM scratch, no registry pull) with podman, else docker, and prints
# its size (limit 40 MB); image-node builds allot-node from examples/node.
# See deploy/build-image.sh and README's "Deploy".
.PHONY: image image-node
image:
	@bash deploy/build-image.sh allot
image-node:
	@bash deploy/build-image.sh node

# mutants plants each deliberate bug of e2e/mutants/mutants.go in a copy of
# the module, one at a time, runs the tests meant to catch it and fails if
# any survives (a table mutant -> killing test -> time). Slow: not in test.
mutants:
	$(GO) run ./e2e/mutants
