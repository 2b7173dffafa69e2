# ifl: run 'make help' for the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ifl-project/ifl/internal/cli.Version=$(VERSION)
PREFIX   ?= /usr/local
# An execution count, not a duration: a duration races the fuzz
# coordinator's deadline in Go 1.26 (golang/go#75804) and fails spuriously.
FUZZTIME ?= 200000x
STATICCHECK_VERSION ?= v0.8.2

.PHONY: help build demo test fuzz lint bench install clean

help: ## Show the targets.
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the static ifl binary.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o ifl ./cmd/ifl

demo: ## Build ifl, bring up a virtual LAN of agents, probe it, tear it down (root).
	scripts/demo.sh

test: ## Run every test, with the race detector (root runs the network tests too).
	$(GO) test -race -count=1 ./...

fuzz: ## Run each fuzz target for FUZZTIME executions (default 200000x).
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

lint: ## gofmt check, go vet and staticcheck.
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: build ## Run the benchmarks, measure the agent's memory; as root, race the peers on virtual LANs.
	$(GO) test -run '^$$' -bench . -benchtime 2s -cpu 1 ./proto ./agent
	scripts/bench-agent-rss.sh ./ifl
	@if [ "$$(id -u)" = 0 ]; then scripts/bench-arpscan.sh 5 && scripts/bench-synscan.sh 5; else echo "bench: side-by-side runs on virtual LANs need root: sudo make bench"; fi

install: build ## Install ifl into PREFIX/bin (default /usr/local).
	install -D -m 0755 ifl $(DESTDIR)$(PREFIX)/bin/ifl

clean: ## Remove the binary.
	rm -f ifl
