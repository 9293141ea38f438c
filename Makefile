# Croft: two commands do everything on a fresh machine: `make run` and `make test`.
GO        ?= go
BIN       := bin/croft
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Tests run with the race detector; CI has 2 cores, so keep parallelism modest.
TESTFLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build run test vet fmt-check cover clean docker-image e2e-docker chaos

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/croft

# The embedded farm: a one-node coordinator and a local agent, data in ./croft-data.
run: build
	./$(BIN) dev

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# vet, formatting, then every test (unit, in-process clusters, end-to-end
# with the built binary) under -race.
test: fmt-check vet build
	CROFT_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) ./...

cover:
	$(GO) test -coverprofile=coverage.out ./... && $(GO) tool cover -func=coverage.out | tail -1

clean:
	rm -rf bin coverage.out

# Container image, built offline from bin/croft and Debian's static busybox.
docker-image: build
	CROFT_BIN=$(CURDIR)/$(BIN) deploy/build-image.sh $(or $(IMAGE),croft:local)

# Network partition test in Docker (deploy/docker-compose.yml). Prints SKIP
# and succeeds when no Docker engine answers or busybox-static is missing.
e2e-docker: build
	CROFT_BIN=$(CURDIR)/$(BIN) scripts/e2e-docker.sh

# The chaos test, long: 3 coordinator and 3 agent processes, kill -9 and
# restarts while jobs stream in (chaos/README.md). `make test` runs a short one.
CHAOS_DURATION ?= 5m
chaos: build
	CROFT_BIN=$(CURDIR)/$(BIN) CROFT_CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test ./chaos/ -run TestChaos -count=1 -v -timeout 60m
