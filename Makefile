# drift — see README.md. Builds are cached outside the clone under $(CACHE).
SHELL        := /bin/bash
CACHE        ?= $(HOME)/.cache/drift
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
DATA_DIR     ?= $(CURDIR)/.drift
UNIT_PKGS    := ./activities/... ./internal/... ./starter/... ./worker/... ./workflows/...
WORKFLOWCHECK_VERSION := v0.6.0
export GOFLAGS := -buildvcs=false

.PHONY: all build dev test test-integration test-all lint bench bench-mobility bench-upgrade docker-up kube-build temporal-build prometheus-build record-histories clean bench-install bench-port bench-pipeline bench-api bench-continuity

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/drift ./starter
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/drift-worker ./worker

# The main job on the embedded default: Temporal + Web UI + registry + worker.
dev: build
	bin/drift dev --demo --data-dir $(DATA_DIR)

# Fast unit tests: pure logic and workflow tests with mocked activities.
test:
	$(GO) test -count=1 $(UNIT_PKGS)

# Integration tests on real parts: Temporal, registry, Docker, Kubernetes.
test-integration: docker-up kube-build temporal-build prometheus-build
	$(GO) test -count=1 -p 1 -timeout 60m ./tests/...

# Everything CI runs.
test-all: lint test test-integration

lint: $(CACHE)/bin/workflowcheck
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if ls workflows/*.go >/dev/null 2>&1; then $(CACHE)/bin/workflowcheck ./workflows/...; else echo "workflowcheck: no workflow code yet"; fi

$(CACHE)/bin/workflowcheck:
	GOBIN=$(CACHE)/bin $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

# Each bench-<name> runs one benchmark and rewrites docs/bench/<name>.md.
bench: bench-mobility bench-upgrade bench-install bench-port bench-pipeline bench-api bench-continuity

bench-mobility: docker-up
	@$(call run-bench,mobility,^TestMobilityBench$$,./tests/bench)

bench-upgrade: docker-up
	@$(call run-bench,upgrade,^TestUpgradeBench$$,./tests/upgrade)

# Downloads through the gateway pair vs direct (needs root for namespaces).
bench-install:
	@$(call run-bench,install,^TestInstallBench$$,./tests/install)
# Cold and warm ports of the seed's program, then bolt's whole suite under qemu.
bench-port:
	@$(call run-bench,port,^TestPortBench$$,./tests/port,100m)
# Also a 100-target rollout in waves vs a bare parallel deploy (docs/bench/pipeline-rollout.md).
bench-pipeline: docker-up
	@$(call run-bench,pipeline,^(TestPipelineBench|TestRolloutBench)$$,./tests/pipeline)
# A client at 50 req/s following the counter app: warm, cold and reactive
# moves side by side, then failovers (DRIFT_BENCH_MOVES moves per mode).
bench-continuity: docker-up
	@$(call run-bench,continuity,^TestContinuityBench$$,./tests/mobility,40m,-parallel 4)
# A live API subscriber's notification delay beside 8 dead ones (about 15 minutes).
bench-api:
	@$(call run-bench,api,^TestIsolationBench$$,./tests/mecapi)

# run-bench,<name>,<test regexp>,<package>[,<timeout>]: a DRIFT_BENCH=1 go
# test whose report goes to docs/bench/<name>.md, timed as a whole.
define run-bench
start=$$(date +%s%N); cmd="DRIFT_BENCH=1 $(GO) test -count=1 -p 1 -timeout $(or $(4),60m) $(5) -run '$(2)' -v $(3)"; \
	echo "$$cmd"; \
	DRIFT_BENCH_START=$$start DRIFT_BENCH_REPORT=$(CURDIR)/docs/bench/$(1).md \
	DRIFT_BENCH_COMMAND="make bench-$(1)  →  $$cmd" bash -c "$$cmd"; rc=$$?; \
	echo "make bench-$(1): $$(( ($$(date +%s%N) - start) / 1000000000 ))s in total"; exit $$rc
endef

# Re-record the histories the replay test replays, from a real run.
record-histories: docker-up kube-build
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session.json \
		$(GO) test -count=1 -run TestSessionAcrossDockerKubernetesAndProcesses ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-project.json \
		$(GO) test -count=1 -run TestSessionOfAComposeProject ./tests/mobility
	# also mobility-session-api.json beside it: the session the API drove.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-state.json \
		$(GO) test -count=1 -run TestStateTransferAndDrainAcrossDockerClouds ./tests/mobility
	# mobility-session-failover.json is a failover from before its plan kept
	# the user's own cloud warm (kept as recorded); this one is of today's.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-failover-plan.json \
		$(GO) test -count=1 -run TestFailoverWhenTheServingInstanceIsKilled ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-failover-worker.json \
		$(GO) test -count=1 -run TestFailoverWhenTheCloudsWorkerStops ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-adopt.json \
		$(GO) test -count=1 -run TestSessionAdoptsAReleaseWithoutARestart ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-late-writes.json \
		$(GO) test -count=1 -run TestLateWritesOnHandoverAreKept ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-session-replace.json \
		$(GO) test -count=1 -run TestAQuietSessionGetsTheReleaseWithoutARestart ./tests/mobility
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-sessions.json \
		$(GO) test -count=1 -run TestAReleaseReachesALiveSessionAtItsNextMove ./tests/pipeline
	# also pipeline-wave-child.json beside it: the canary wave's child workflow.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-prometheus-gate.json \
		$(GO) test -count=1 -run TestAPrometheusQueryGatesAWave ./tests/pipeline
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-subscriptions.json \
		$(GO) test -count=1 -run TestConformanceOfResourcesAndNotifications ./tests/mecapi
	# component-upgrade.json is an upgrade from before hops and data (kept as
	# recorded: it replays the old path); these two are of today's.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/component-upgrade-data.json \
		$(GO) test -count=1 -run '^TestUpgradeWithDataOnProcesses$$' ./tests/upgrade
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/component-upgrade-rollback.json \
		$(GO) test -count=1 -run '^TestUpgradeRollbackOnProcesses$$' ./tests/upgrade
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/install-software.json \
		$(GO) test -count=1 -run TestInstallThroughGateways ./tests/install
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/install-software-update.json \
		$(GO) test -count=1 -run TestUpdateAndUninstall ./tests/install
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/install-fleet.json \
		$(GO) test -count=1 -run TestFleetStopsAtTheErrorBudget ./tests/install
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/inventory.json \
		$(GO) test -count=1 -run TestDesiredStateSurvivesRestartsAndReachesNewVMs ./tests/install
	# port-to-arch.json is a port from before it ran the program (kept as
	# recorded: it replays the old commands); this one is of today's.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/port-to-arch-runs-the-program.json \
		$(GO) test -count=1 -timeout 40m -run TestPortBoltAndGopsutilProgramToLoong64 ./tests/port
	# pipeline-run.json is a run from before the sign step (kept as
	# recorded: it replays without it); this one signs and attests.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-run-signed.json \
		$(GO) test -count=1 -run TestSignedReleaseIsVerifiedAtDeployAndTamperingIsRefused ./tests/pipeline
	# The production test writes the undeploy's history beside the session's, as pipeline-undeploy.json.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/mobility-noworker.json \
		$(GO) test -count=1 -run TestProductionShape ./tests/production
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-rollback.json \
		$(GO) test -count=1 -run TestFailedVerificationRollsBackToThePreviousImage ./tests/pipeline
	# pipeline-project.json is a project's run from before the sign step
	# (kept as recorded); this one signs every image of the project.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-project-signed.json \
		$(GO) test -count=1 -run TestPipelineReleasesAProject ./tests/pipeline
	# also pipeline-rollback-run.json beside it: the rollback command's workflow.
	DRIFT_RECORD_HISTORY=$(CURDIR)/workflows/testdata/pipeline-waves.json \
		$(GO) test -count=1 -run TestWavesRollTheFleetBackWhenAnAnalysisFails ./tests/pipeline

docker-up:
	bash tests/docker-up.sh

kube-build:
	bash tests/kube/build.sh

# temporal-server + temporal-sql-tool for the production-shape tests (~6 min cold, cached).
temporal-build:
	bash tests/production/build.sh

# prometheus for the test of a wave's Prometheus query gate (minutes cold, cached).
prometheus-build:
	bash tests/prometheus/build.sh

clean:
	rm -rf bin
