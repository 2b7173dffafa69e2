# ifl: run 'make help' for the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ifl-project/ifl/internal/cli.Version=$(VERSION)
# An execution count, not a duration: a duration races the fuzz
# coordinator's deadline in Go 1.26 (golang/go#75804) and fails spuriously.
FUZZTIME ?= 200000x
STATICCHECK_VERSION ?= v0.8.2
NFPM_VERSION ?= v2.43.0
# A Debian version: the tag without its v, or 0.0.0~git<commit>.
DEB_VERSION ?= $(shell git describe --tags --exact-match 2>/dev/null | sed 's/^v//' | grep . || echo 0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo 0))

.PHONY: help build demo test fuzz lint bench install uninstall deb test-deb clean

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
	scripts/bench-agent.sh ./ifl
	@if [ "$$(id -u)" = 0 ]; then scripts/bench-arpscan.sh 5 && scripts/bench-synscan.sh 5; else echo "bench: side-by-side runs on virtual LANs need root: sudo make bench"; fi

install: build ## Install ifl, its units, config and keys (scripts/install.sh; CAP_NET_RAW=1 grants the fast path).
	scripts/install.sh --binary ./ifl $(if $(CAP_NET_RAW),--cap-net-raw)

uninstall: ## Remove what install put in place, keeping /etc/ifl (PURGE=1 removes it too).
	scripts/install.sh --uninstall $(if $(PURGE),--purge)

deb: build ## Build dist/ifl_VERSION_amd64.deb with nfpm.
	mkdir -p dist
	DEB_VERSION=$(DEB_VERSION) $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package -f scripts/nfpm.yaml -p deb -t dist/

test-deb: deb ## Install, reinstall, remove and purge the .deb with dpkg: changes this machine (CI).
	scripts/test-deb.sh dist/ifl_$(DEB_VERSION)_amd64.deb

clean: ## Remove the binary and the packages.
	rm -rf ifl dist .build
