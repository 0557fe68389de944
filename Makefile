# SPDX-License-Identifier: GPL-2.0
#
# virtio-vfio-mig: build and test entry points. See README.md.
#
#   make run     build everything, boot the test VM, bind the driver to both devices
#   make check   build everything and run every test suite

VM := tools/testing/vm
IN_ROOT := $(VM)/in-root.sh
DEVSIM := tools/testing/virtio-devsim
CORE := rust/virtio_mig_core
SELFTESTS := tools/testing/selftests/vfio/virtio_mig
export VVM_CACHE ?= /var/cache/virtio-vfio-mig
LOGS := $(VVM_CACHE)/logs
# Per-suite TAP files the guest writes (see tools/testing/vm/guest/lib.sh).
RESULTS := $(VVM_CACHE)/build/results

.PHONY: all deps kernel modules devsim selftests run check bench vm rustfmtcheck clippy clean \
	distclean

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

run: all
	$(IN_ROOT) $(VM)/run-vm.sh --timeout 600 --devsim-args "--request-delay-ms 100" -- \
		$(VM)/guest/demo.sh

vm: all
	$(IN_ROOT) $(VM)/run-vm.sh --interactive

# Host suites first (seconds), then the VM suites; the summary sums them all.
check: all
	@mkdir -p $(LOGS)
	@rm -rf $(LOGS)/*.log $(RESULTS)
	-$(IN_ROOT) $(VM)/cargo.sh test --manifest-path $(CORE)/Cargo.toml 2>&1 | tee $(LOGS)/core.log
	-$(IN_ROOT) $(VM)/cargo.sh test --release --manifest-path $(DEVSIM)/Cargo.toml 2>&1 | tee $(LOGS)/devsim.log
	-$(IN_ROOT) $(VM)/run-vm.sh --timeout 900 -- $(VM)/guest/run-tests.sh 2>&1 | tee $(LOGS)/vm.log
	-$(IN_ROOT) $(VM)/run-vm.sh --viommu --timeout 600 -- $(VM)/guest/run-tests.sh viommu 2>&1 \
		| tee $(LOGS)/vm-viommu.log
	-$(IN_ROOT) $(VM)/run-variant-tests.sh 2>&1 | tee $(LOGS)/vm-variants.log
	@python3 $(VM)/summarize.py --results $(RESULTS) $(LOGS)/core.log $(LOGS)/devsim.log \
		$(LOGS)/vm.log $(LOGS)/vm-viommu.log $(LOGS)/vm-variants.log

# Benchmarks report ratios against a baseline measured in the same run, never pass/fail.
bench: all
	$(IN_ROOT) $(VM)/cargo.sh run --release --quiet --manifest-path $(CORE)/Cargo.toml \
		--example harvest_bench
	@if [ -x $(VM)/run-bench.sh ]; then $(IN_ROOT) $(VM)/run-bench.sh; fi

rustfmtcheck clippy: kernel
	$(IN_ROOT) $(VM)/kernel-build.sh $(if $(filter clippy,$@),CLIPPY=1 bzImage modules,rustfmtcheck)

clean:
	rm -rf $(DEVSIM)/target $(CORE)/target
	rm -rf $(VVM_CACHE)/build/kout $(LOGS)

# Also drops the extracted kernel source and every toolchain root.
distclean: clean
	rm -rf --one-file-system $(VVM_CACHE)
