# custos — build, test, bench and lint. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2

# Reproducible builds: no paths, no VCS stamp, no build id, and cgo's C file names mapped away, so two
# builds of one commit from different directories with empty caches have the same SHA-256.
export CGO_ENABLED := 1
export GOFLAGS := -buildvcs=false
REPRO_CFLAGS = -O2 -g0 -ffile-prefix-map=$(CURDIR)=/custos -fdebug-prefix-map=$(CURDIR)=/custos
BUILD_FLAGS = -trimpath -buildvcs=false -ldflags='-buildid= -s -w'

# Per-package time limits and the fuzzing budget keep `make test` well inside CI's 90 minutes.
TEST_TIMEOUT ?= 20m
FUZZ_TIME ?= 15s

.PHONY: all deps build rehearsal install-age-plugin test unit fuzz repro bench lint staticcheck clean

all: build

## deps: install missing Debian packages (idempotent; apt is called only when something is missing)
deps:
	@bash scripts/install-deps.sh

## build: the production custos and the custos-sim rehearsal tool, reproducibly, into bin/
build: deps
	@mkdir -p $(BIN)
	CGO_CFLAGS="$(REPRO_CFLAGS)" $(GO) build $(BUILD_FLAGS) -o $(BIN)/custos ./cmd/custos
	CGO_CFLAGS="$(REPRO_CFLAGS)" $(GO) build $(BUILD_FLAGS) -o $(BIN)/custos-sim ./cmd/custos-sim
	@sha256sum $(BIN)/custos

## rehearsal: the whole life cycle on virtual YubiKeys and software tokens (custos-sim rehearse)
REHEARSAL_FLAGS ?=
rehearsal: build
	$(BIN)/custos-sim rehearse $(REHEARSAL_FLAGS)

## install-age-plugin DIR=...: link custos as age-plugin-yubikey in a directory of its own
install-age-plugin: build
	@test -n "$(DIR)" || { echo "install-age-plugin: give DIR=..., a directory of its own (the first age-plugin-yubikey on PATH wins)" >&2; exit 2; }
	mkdir -p "$(DIR)"
	ln -sfn "$(BIN)/custos" "$(DIR)/age-plugin-yubikey"
	@echo "$(DIR)/age-plugin-yubikey -> $(BIN)/custos; put $(DIR) first on PATH only where custos should serve age"

## test: everything CI runs: lint, unit and integration tests, bounded fuzzing, the reproducible-build check
test: deps lint unit fuzz repro

unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

fuzz:
	@FUZZ_TIME=$(FUZZ_TIME) bash scripts/fuzz.sh

repro: deps
	@bash scripts/repro-check.sh

## bench: the speed and memory targets (docs/performance.md)
bench: deps
	$(GO) test -run='^$$' -bench=. -benchmem -timeout 30m ./...

## lint: gofmt, go vet, staticcheck
lint: staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

staticcheck:
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean:
	rm -rf $(BIN)
