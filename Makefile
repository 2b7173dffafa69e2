# ifl: run 'make help' for the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ifl-project/ifl/internal/cli.Version=$(VERSION)
# An execution count, not a duration: a duration races the fuzz
# coordinator's deadline in Go 1.26 (golang/go#75804) and fails spuriously.
FUZZTIME ?= 200000x
# Minimizing a new input runs the target again and again, counted apart
# from FUZZTIME: a slow target spent minutes there with the default (60s).
FUZZMINIMIZETIME ?= 500x
# Targets that cost a millisecond an execution or more (a YAML round
# trip each) get fewer, so that make fuzz stays minutes long.
FUZZ_SLOW     ?= FuzzAnsible
FUZZTIME_SLOW ?= 20000x
STATICCHECK_VERSION ?= v0.8.2
NFPM_VERSION ?= v2.43.0
# A Debian version: the tag without its v, or 0.0.0~git<commit>.
DEB_VERSION ?= $(shell git describe --tags --exact-match 2>/dev/null | sed 's/^v//' | grep . || echo 0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo 0))

# The architectures of 'make deb': one static binary each.
DEB_ARCHES ?= amd64 arm64
DEB_ARCH   ?= $(shell $(GO) env GOARCH)

# The Ansible collection ifl.fleet, and where make collection puts its
# tarball.
COLLECTION     := scripts/ansible_collections/ifl/fleet
COLLECTION_OUT ?= dist

.PHONY: help build docs demo test fuzz lint bench soak install uninstall deb test-deb collection clean

# Targets that need root run $(1) as root: directly for root, else through
# sudo, saying so. A minimal Debian has no sudo, but there one is root.
as_root = if [ "$$(id -u)" = 0 ]; then $(1); \
	elif command -v sudo >/dev/null; then echo "make $@: needs root: running it with sudo" >&2; sudo -H env "PATH=$$PATH" $(1); \
	else echo "make $@: needs root, and there is no sudo here: run it as root" >&2; exit 2; fi

help: ## Show the targets.
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the static ifl binary.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o ifl ./cmd/ifl

docs: ## Regenerate the man page and the shell completion from the command line (scripts/).
	$(GO) test ./internal/clidoc -run TestGeneratedFilesAreCurrent -update

demo: build ## Build ifl, bring up a virtual LAN of agents, probe it, tear it down (as root, through sudo if need be).
	mkdir -p .build
	$(GO) build -o .build/ifl-testnet ./internal/testbed/testnet/cmd/ifl-testnet
	@$(call as_root,scripts/demo.sh)

# The end-to-end tests time hosts a few dozen milliseconds away through
# relays on this machine's CPUs: they run on their own, after the others,
# not beside them. They build dozens of LANs one after another, past go
# test's default limit of 10 minutes on a loaded machine: a hang is still
# caught, after E2E_TIMEOUT.
E2E   := ./internal/testbed/e2e
E2E_TIMEOUT ?= 50m
UNITS  = $$($(GO) list ./... | grep -v /internal/testbed/e2e)

test: ## Run every test with the race detector; the network tests need root (through sudo if need be).
	@if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
		echo "make test: not root and no sudo: the end-to-end tests on virtual LANs will skip" >&2; \
		$(GO) test -race -count=1 -timeout $(E2E_TIMEOUT) ./...; \
	else $(call as_root,sh -c '$(GO) test -race -count=1 $(UNITS) && $(GO) test -race -count=1 -timeout $(E2E_TIMEOUT) $(E2E)'); fi

fuzz: ## Run each fuzz target for FUZZTIME executions (default 200000x; FUZZ_SLOW ones FUZZTIME_SLOW).
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    n=$(FUZZTIME); case " $(FUZZ_SLOW) " in *" $$t "*) n=$(FUZZTIME_SLOW) ;; esac; \
	    echo "fuzz $$pkg $$t ($$n)"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$t\$$" -fuzztime $$n -fuzzminimizetime $(FUZZMINIMIZETIME); \
	  done; \
	done

lint: ## gofmt check, go vet and staticcheck.
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: build ## Run the benchmarks, measure the agent's memory (idle, and under a hostile load); as root, race the peers on virtual LANs, and on a responder's /24, /20 and /16.
	$(GO) test -run '^$$' -bench . -benchtime 2s -cpu 1 ./proto ./agent
	scripts/bench-agent-rss.sh ./ifl
	scripts/bench-agent.sh ./ifl
	@$(call as_root,scripts/bench-arpscan.sh 5 && scripts/bench-synscan.sh 5 && scripts/bench-ports.sh 10 && scripts/bench-loss.sh 20 && scripts/bench-broadcast.sh 5 && scripts/bench-scale.sh 3)

soak: ## Soak the etcd store: 3 controllers writing every 5 s for 10 minutes while a member is killed every minute (needs etcd).
	scripts/soak-etcd.sh 10m 5s

install: build ## Install ifl, its units, config and keys (scripts/install.sh; NETWORK_KEY=FILE the fleet's key, CAP_NET_RAW=1 the fast path).
	@$(call as_root,scripts/install.sh --binary ./ifl $(if $(NETWORK_KEY),--network-key $(NETWORK_KEY)) $(if $(CAP_NET_RAW),--cap-net-raw))

uninstall: ## Remove what install put in place, keeping /etc/ifl (PURGE=1 removes it too).
	@$(call as_root,scripts/install.sh --uninstall $(if $(PURGE),--purge))

deb: ## Build dist/ifl_VERSION_ARCH.deb for each of DEB_ARCHES (amd64 arm64) with nfpm.
	rm -rf .build/deb && mkdir -p .build/deb dist
	gzip -9n < scripts/ifl.1 > .build/deb/ifl.1.gz
	{ printf 'ifl (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n' '$(DEB_VERSION)' "$$(git log -1 --format='commit %h' 2>/dev/null || echo 'an unknown commit')"; \
	  printf ' -- ifl developers <dev@ifl.invalid>  %s\n' "$$(git log -1 --format=%cD 2>/dev/null || date -R)"; } | gzip -9n > .build/deb/changelog.gz
	@set -e; for arch in $(DEB_ARCHES); do \
	  echo "deb: $$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o .build/deb/ifl ./cmd/ifl; \
	  DEB_ARCH=$$arch DEB_VERSION=$(DEB_VERSION) $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package -f scripts/nfpm.yaml -p deb -t dist/; \
	done

collection: ## Build dist/ifl-fleet-VERSION.tar.gz (COLLECTION_OUT=DIR: there), the Ansible collection ifl.fleet, with ansible-galaxy.
	@mkdir -p $(COLLECTION_OUT)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  cp -R $(COLLECTION)/. "$$tmp"/ && cp LICENSE "$$tmp"/LICENSE && \
	  ansible-galaxy collection build "$$tmp" --output-path $(COLLECTION_OUT) --force

test-deb: build deb ## Lintian, scripts/install.sh in a temporary root, then install, reinstall, remove and purge the .deb with dpkg: changes this machine (CI).
	lintian --fail-on error,warning $(foreach a,$(DEB_ARCHES),dist/ifl_$(DEB_VERSION)_$(a).deb)
	@$(call as_root,scripts/test-install.sh && scripts/test-deb.sh dist/ifl_$(DEB_VERSION)_$(DEB_ARCH).deb)

clean: ## Remove the binary and the packages.
	rm -rf ifl dist .build
