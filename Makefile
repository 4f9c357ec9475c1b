# tapbridge — see README.md.  `make` alone prints this help.

PREFIX      ?= /usr/local
DESTDIR     ?=
CNI_BIN_DIR ?= /opt/cni/bin
BIN_DIR     ?= $(CURDIR)/bin
CNI_TOOLS_DIR ?= $(CURDIR)/.cache/cni-tools
# The version is the last tag (v1.2.3), with the commits since and the
# hash after it when HEAD is not tagged; 0.0.0-gHASH before the first tag.
VERSION     ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.0.0-g$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo -dirty))
GO          ?= go
# Upstream CNI tools for tests and benchmarks, from the module proxy.
CNI_VERSION     := v1.3.1
PLUGINS_VERSION := v1.10.0
DEB_PACKAGES := qemu-system-x86 dnsmasq-base busybox-static linux-image-cloud-amd64 \
	nftables cpio iperf3 tcpdump iproute2 xz-utils zstd kmod libcap2-bin util-linux lintian \
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients containerd \
	isc-dhcp-client
TEST_TIMEOUT ?= 15m

LDFLAGS := -s -w -X github.com/tapbridge/tapbridge/internal/cli.Version=$(VERSION)
# build-cover sets it; what build, install and deb ship is built without.
COVER_BUILD_FLAGS :=
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath $(COVER_BUILD_FLAGS) -ldflags '$(LDFLAGS)'
TEST_ENV := TAPBRIDGE_BIN_DIR=$(BIN_DIR) CNI_TOOLS_DIR=$(CNI_TOOLS_DIR)
# make test counts coverage of internal/ (docs/testing.md): the unit tests'
# own and that of the binaries the end-to-end suite runs, built with -cover
# into COVER_BIN_DIR (never what build, install or deb ship).
COVER_DIR     ?= $(CURDIR)/.cache/cover
COVER_BIN_DIR := $(COVER_DIR)/bin
COVER_MODULE  := github.com/tapbridge/tapbridge
# counted: internal/ (a binary also counts its main package, or it writes nothing)
COVER_PKG     := $(COVER_MODULE)/internal/...
COVER_ENV     := TAPBRIDGE_BIN_DIR=$(COVER_BIN_DIR) CNI_TOOLS_DIR=$(CNI_TOOLS_DIR) TAPBRIDGE_TEST_GOCOVERDIR=$(COVER_DIR)/e2e

# make install / uninstall (packaging/install.sh does the work).
SYSCONFDIR  ?= /etc
# HELPER: how the bridge helper gets its privileges: setuid (root:HELPER_GROUP,
# 4750), caps (cap_net_admin+ep) or none. Unset: keep what is installed.
HELPER      ?=
HELPER_GROUP ?=
INSTALL_ENV = DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' SYSCONFDIR='$(SYSCONFDIR)' CNI_BIN_DIR='$(CNI_BIN_DIR)' \
	BIN_DIR='$(BIN_DIR)' SRC_DIR='$(CURDIR)' HELPER='$(HELPER)' HELPER_GROUP='$(HELPER_GROUP)'
# make deb
DEB_DIR     ?= $(CURDIR)/.cache/deb
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; s/-([0-9]+)-g/+\1.g/; s/-/~/g')

.PHONY: help build build-cover install uninstall deb test test-unit test-kernel coverage deps tools lint bench bench-go demo clean

help: ## show this help
	@echo "tapbridge: QEMU VMs on the LAN through a Linux bridge"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) CNI_BIN_DIR=$(CNI_BIN_DIR) SYSCONFDIR=$(SYSCONFDIR) HELPER=setuid|caps|none"

build: ## build bin/tapbridge, bin/qemu-ifup, bin/qemu-ifdown, bin/tapbridge-bridge-helper
	@mkdir -p $(BIN_DIR)
	$(GOBUILD) -o $(BIN_DIR)/tapbridge ./plugins/tapbridge
	@if [ -f qemu-ifup/main.go ]; then \
		$(GOBUILD) -o $(BIN_DIR)/qemu-ifup ./qemu-ifup && \
		ln -sf qemu-ifup $(BIN_DIR)/qemu-ifdown && \
		ln -sf qemu-ifup $(BIN_DIR)/tapbridge-bridge-helper; fi

build-cover: ## the same binaries built with -cover into .cache/cover/bin, for make test only
	@$(MAKE) --no-print-directory build BIN_DIR=$(COVER_BIN_DIR) COVER_BUILD_FLAGS='-cover -coverpkg=$(COVER_MODULE)/...'

install: build ## install binaries, units, man pages, completion, example configs; HELPER=setuid|caps|none (default: keep)
	$(INSTALL_ENV) sh packaging/install.sh install

uninstall: ## remove what install put there (configurations you changed stay)
	$(INSTALL_ENV) sh packaging/install.sh uninstall

deb: build ## build the Debian package (dpkg-deb) into .cache/deb (DEB_DIR)
	BIN_DIR='$(BIN_DIR)' SRC_DIR='$(CURDIR)' DEB_DIR='$(DEB_DIR)' DEB_VERSION='$(DEB_VERSION)' sh packaging/deb.sh

deps: ## install what the tests need on a fresh Debian machine (apt-get, Go modules)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "apt-get install $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		fi; \
	fi
	$(GO) mod download

tools: ## build cnitool and the upstream CNI plugins (bridge, host-local, static) from the module proxy
	@mkdir -p $(CNI_TOOLS_DIR)
	GOBIN=$(CNI_TOOLS_DIR) CGO_ENABLED=0 $(GO) install github.com/containernetworking/cni/cnitool@$(CNI_VERSION)
	GOBIN=$(CNI_TOOLS_DIR) CGO_ENABLED=0 $(GO) install \
		github.com/containernetworking/plugins/plugins/main/bridge@$(PLUGINS_VERSION) \
		github.com/containernetworking/plugins/plugins/ipam/host-local@$(PLUGINS_VERSION) \
		github.com/containernetworking/plugins/plugins/ipam/static@$(PLUGINS_VERSION)

test: deps build build-cover tools ## install what is needed, then run every test (the privileged ones too when root) and print the coverage
	@rm -rf $(COVER_DIR)/unit $(COVER_DIR)/e2e && mkdir -p $(COVER_DIR)/unit $(COVER_DIR)/e2e
	$(COVER_ENV) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -cover -coverpkg=$(COVER_PKG) ./... -args -test.gocoverdir=$(COVER_DIR)/unit
	@$(MAKE) --no-print-directory coverage
	@$(MAKE) --no-print-directory test-kernel

coverage: ## the total coverage of internal/ that the last make test collected (unit + end-to-end)
	@$(GO) tool covdata textfmt -i=$(COVER_DIR)/unit,$(COVER_DIR)/e2e -pkg=$(COVER_PKG) -o $(COVER_DIR)/profile.txt
	@$(GO) tool cover -func=$(COVER_DIR)/profile.txt | awk '$$1 == "total:" {print "coverage: " $$3 " of statements in internal/ (unit + end-to-end)"}'

test-kernel: build tools ## the privileged tests again, on Debian's cloud kernel under QEMU (docs/kernel.md)
	$(TEST_ENV) TAPBRIDGE_TEST_KERNEL=1 $(GO) test -count=1 -v -timeout 30m -run '^TestKernel$$' ./test/kernel/

test-unit: ## run the tests that need neither root nor QEMU
	$(GO) test -count=1 -short ./...

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

bench: deps build tools ## docs/benchmarks.md and its plots: hooks, helper, CNI and frames/s side by side with their anchors
	GOBIN=$(CNI_TOOLS_DIR) CGO_ENABLED=0 $(GO) install github.com/containernetworking/plugins/plugins/main/tap@$(PLUGINS_VERSION)
	GOBIN=$(CNI_TOOLS_DIR) CGO_ENABLED=0 $(GO) install github.com/containernetworking/cni/plugins/test/noop@$(CNI_VERSION)
	$(GO) run ./test/bench -bin $(BIN_DIR) -tools $(CNI_TOOLS_DIR) -out docs/benchmarks.md $(BENCH_FLAGS)

bench-go: deps build tools ## the packages' Go benchmarks (go test -bench): attach cost, policy at 1000 ports, data path
	$(TEST_ENV) $(GO) test -count=1 -run '^$$' -bench . -benchtime 200x -timeout 30m ./...

demo: deps build ## a sandboxed LAN (netns router with dnsmasq), a QEMU VM attached through tapbridge getting its own address
	$(TEST_ENV) $(GO) run ./test/demo

clean: ## remove build outputs
	rm -rf $(BIN_DIR) .cache
