# SPDX-License-Identifier: GPL-2.0
#
# virtio-vfio-mig: build and test entry points. See README.md.
#
#   make run     build everything, boot the test VM, live-migrate a nested guest with QEMU
#   make check   build everything and run every test suite

VM := tools/testing/vm
IN_ROOT := $(VM)/in-root.sh
DEVSIM := tools/testing/virtio-devsim
CORE := rust/virtio_mig_core
SELFTESTS := tools/testing/selftests/vfio/virtio_mig
E2E := tools/testing/qemu-e2e
export VVM_CACHE ?= /var/cache/virtio-vfio-mig
LOGS := $(VVM_CACHE)/build/logs
# Per-suite TAP files the guest writes (see tools/testing/vm/guest/lib.sh).
RESULTS := $(VVM_CACHE)/build/results

.PHONY: all deps kernel modules devsim selftests run demo e2e check check-debug check-kasan bench vm \
	rustfmtcheck clippy \
	clean distclean

all: kernel devsim selftests

# The toolchain root and the host tools the scripts use.
deps:
	@$(VM)/toolchain.sh >/dev/null

# Kernel image, kernel crate overlay and virtio_vfio_mig.ko, built incrementally.
kernel modules: deps
	$(VM)/kernel-overlay.sh
	$(IN_ROOT) $(VM)/kernel-build.sh bzImage modules

devsim: deps
	$(IN_ROOT) $(VM)/cargo.sh build --release --manifest-path $(DEVSIM)/Cargo.toml

selftests: kernel
	$(IN_ROOT) $(VM)/selftests-build.sh

# QEMU in the test VM live-migrates a nested guest that owns a passthrough function.
run: all
	$(IN_ROOT) $(E2E)/run-e2e.sh --suites migrate --report

# The same device-state migration driven by a small C program instead of QEMU.
demo: all
	$(IN_ROOT) $(VM)/run-vm.sh --timeout 600 --devsim-args "--request-delay-ms 100" -- \
		$(VM)/guest/demo.sh

# The QEMU end-to-end suites alone.
e2e: all
	$(IN_ROOT) $(E2E)/run-e2e.sh --report

vm: all
	$(IN_ROOT) $(VM)/run-vm.sh --interactive

# Host suites first (seconds), then the VM suites; the summary sums them all.
check: all
	@mkdir -p $(LOGS)
	@rm -rf $(LOGS)/*.log $(RESULTS)
	-{ echo "@@suite summarize-selftest"; $(IN_ROOT) python3 $(VM)/summarize_test.py; \
		echo "@@end summarize-selftest rc=$$?"; } 2>&1 | tee $(LOGS)/summarize.log
	-$(IN_ROOT) $(VM)/cargo.sh test --manifest-path $(CORE)/Cargo.toml 2>&1 | tee $(LOGS)/core.log
	-$(IN_ROOT) $(VM)/cargo.sh test --release --manifest-path $(DEVSIM)/Cargo.toml 2>&1 | tee $(LOGS)/devsim.log
	-$(IN_ROOT) $(VM)/run-vm.sh --timeout 900 -- $(VM)/guest/run-tests.sh 2>&1 | tee $(LOGS)/vm.log
	-$(IN_ROOT) $(VM)/run-vm.sh --viommu --timeout 600 -- $(VM)/guest/run-tests.sh viommu 2>&1 \
		| tee $(LOGS)/vm-viommu.log
	-$(IN_ROOT) $(VM)/run-variant-tests.sh 2>&1 | tee $(LOGS)/vm-variants.log
	-$(IN_ROOT) $(VM)/run-admin-tests.sh 2>&1 | tee $(LOGS)/vm-admin.log
	-{ echo "@@suite blkcheck-host"; $(IN_ROOT) $(E2E)/blkcheck-host-test.sh; \
		echo "@@end blkcheck-host rc=$$?"; } 2>&1 | tee $(LOGS)/l2.log
	-{ echo "@@suite l2-smoke"; $(IN_ROOT) $(E2E)/l2-smoke.sh; echo "@@end l2-smoke rc=$$?"; } \
		2>&1 | tee -a $(LOGS)/l2.log
	-$(IN_ROOT) $(E2E)/run-e2e.sh --timeout 720 --report 2>&1 | tee $(LOGS)/e2e.log
	@$(IN_ROOT) python3 $(VM)/summarize.py --results $(RESULTS) $(LOGS)/summarize.log \
		$(LOGS)/core.log $(LOGS)/devsim.log $(LOGS)/vm.log $(LOGS)/vm-viommu.log \
		$(LOGS)/vm-variants.log $(LOGS)/vm-admin.log $(LOGS)/l2.log $(LOGS)/e2e.log

# The VM suites again on a kernel variant built in a directory of its own (build/kout-NAME):
#   check-debug  lockdep, sleep-in-atomic, DMA API, kmemleak, hung-task, soft-lockup and list
#                debugging (debug.config)
#   check-kasan  those and KASAN and UBSAN (debug.config, kasan.config)
# Not part of 'check': each is a second kernel build, and the kernel runs several times slower.
check-debug check-kasan: all
	@mkdir -p $(LOGS)
	@rm -rf $(LOGS)/$@-*.log $(RESULTS)
	$(IN_ROOT) $(VM)/kernel-build.sh --variant $(@:check-%=%) bzImage modules
	-$(IN_ROOT) $(VM)/run-vm.sh --kernel-variant $(@:check-%=%) --timeout 2400 -- \
		$(VM)/guest/run-tests.sh 2>&1 | tee $(LOGS)/$@-vm.log
	-$(IN_ROOT) $(VM)/run-vm.sh --kernel-variant $(@:check-%=%) --viommu --timeout 1800 -- \
		$(VM)/guest/run-tests.sh viommu 2>&1 | tee $(LOGS)/$@-vm-viommu.log
	-$(IN_ROOT) $(VM)/run-variant-tests.sh --kernel-variant $(@:check-%=%) --timeout 1800 2>&1 \
		| tee $(LOGS)/$@-vm-variants.log
	-$(IN_ROOT) $(VM)/run-admin-tests.sh --kernel-variant $(@:check-%=%) --timeout 1800 2>&1 \
		| tee $(LOGS)/$@-vm-admin.log
	@$(IN_ROOT) python3 $(VM)/summarize.py --results $(RESULTS) $(LOGS)/$@-vm.log \
		$(LOGS)/$@-vm-viommu.log $(LOGS)/$@-vm-variants.log $(LOGS)/$@-vm-admin.log

# Benchmarks report ratios against a baseline measured in the same run, never pass/fail.
bench: all
	$(IN_ROOT) $(VM)/cargo.sh run --release --quiet --manifest-path $(CORE)/Cargo.toml \
		--example harvest_bench
	$(IN_ROOT) $(VM)/cargo.sh run --release --quiet --manifest-path $(DEVSIM)/Cargo.toml \
		--example dma_map_bench
	$(IN_ROOT) $(VM)/run-bench.sh
	$(IN_ROOT) $(E2E)/run-e2e.sh --timeout 1500 --suites migrate --report
	$(IN_ROOT) $(E2E)/run-e2e.sh --timeout 1500 --no-owners --suites migrate --observe 120 \
		--baseline
	$(IN_ROOT) python3 $(E2E)/compare.py

rustfmtcheck clippy: kernel
	$(IN_ROOT) $(VM)/kernel-build.sh $(if $(filter clippy,$@),CLIPPY=1 bzImage modules,rustfmtcheck)

clean:
	rm -rf $(DEVSIM)/target $(CORE)/target
	rm -rf $(VVM_CACHE)/build/kout $(VVM_CACHE)/build/kout-debug $(VVM_CACHE)/build/kout-kasan $(LOGS)

# Also drops the extracted kernel source and every toolchain root.
distclean: clean
	rm -rf --one-file-system $(VVM_CACHE)
