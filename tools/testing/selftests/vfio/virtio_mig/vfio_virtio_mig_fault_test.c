// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_vfio_mig against a device whose queues never stop: virtio-devsim
 * started with --fault-never-stop (and --request-delay-ms, so a request is in
 * flight when the stop comes).
 *
 * Quiescing must give up after the module's stop_timeout_ms with ETIMEDOUT
 * and leave the device in ERROR; ERROR refuses every request until
 * VFIO_DEVICE_RESET, which brings the device back to RUNNING, working. The
 * same holds for the stop on the way from PRE_COPY to STOP_COPY (whose data
 * fd then fails), and for the stop of the queues a RESUMING -> STOP restores.
 *
 * This needs its own VM boot: tools/testing/vm/run-variant-tests.sh starts the
 * device models with --fault-never-stop and runs
 * tools/testing/vm/guest/run-tests.sh mig-fault, which loads the module with
 * stop_timeout_ms=500 and runs this program with --never-stop
 * --stop-timeout-ms 500. Without --never-stop every test is skipped: on a
 * healthy device the queues do stop.
 *
 * Usage: vfio_virtio_mig_fault_test [--never-stop] [--stop-timeout-ms MS]
 *                                   [BDF_A [BDF_B]] [harness options]
 *   --stop-timeout-ms tells the module's stop_timeout_ms (the module does not
 *   show it in sysfs); else /sys/module/virtio_vfio_mig/parameters/
 *   stop_timeout_ms when readable, else the default, 3000. Without BDFs the
 *   first two device-model functions are used (B only by restore_timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "../../kselftest_harness.h"
#include "vfio_dev.h"
#include "vfio_mig_util.h"
#include "virtio_user.h"

#define MIG_MEM_SIZE		VU_HUGE_PAGE_SIZE
#define IO_LEN			4096U
/*
 * Slack on top of the module's timeout for scheduling and the register
 * accesses of one poll (a vfio-user round trip each, slow under TCG): half
 * the timeout, at least 500 ms.
 */
#define TIMEOUT_SLACK_MS(t)	((t) / 2 > 500 ? (t) / 2 : 500)

static char bdf_a[VD_BDF_LEN], bdf_b[VD_BDF_LEN];
static char skip_reason[256];
static unsigned int stop_timeout_ms = 3000;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

FIXTURE(fault) {
	struct vu_mem mem;
	struct mig_dev a, b;
	struct vu_vq vq;
	int fd;
};

FIXTURE_SETUP(fault)
{
	int ret;

	self->fd = -1;
	self->a.vd.fd = self->a.vd.group = self->a.vd.container = self->a.vd.iommufd = -1;
	self->b.vd.fd = self->b.vd.group = self->b.vd.container = self->b.vd.iommufd = -1;
	if (skip_reason[0])
		SKIP(return, "%s", skip_reason);
	ASSERT_EQ(0, vu_mem_alloc(&self->mem, MIG_MEM_SIZE));
	ret = mig_dev_open(&self->a, bdf_a, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s (%s)", bdf_a, strerror(-ret), self->a.vd.err);
	ret = vd_dma_map(&self->a.vd, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("%s", self->a.vd.err);
	ASSERT_TRUE(!!(self->a.vd.info.flags & VFIO_DEVICE_FLAGS_RESET));
}

FIXTURE_TEARDOWN(fault)
{
	if (self->fd >= 0)
		close(self->fd);
	mig_dev_close(&self->a);
	mig_dev_close(&self->b);
	vu_vq_release(&self->vq);
	if (self->mem.va)
		vu_mem_free(&self->mem);
}

static int state_of(struct __test_metadata *_metadata, struct mig_dev *m)
{
	uint32_t state = ~0u;

	EXPECT_EQ(0, mig_get_state(&m->vd, &state));
	return (int)state;
}

/* Queue a write on A's queue 0 and kick it: the device holds it in flight. */
static void busy_queue(struct __test_metadata *_metadata, FIXTURE_DATA(fault) *self)
{
	struct vu_blk_req *r;

	ASSERT_EQ(0, mig_blk_start(&self->a, &self->vq, 16));
	r = vu_blk_req_alloc(&self->mem, IO_LEN);
	ASSERT_NE(NULL, r);
	mig_fill_pattern(r->data, IO_LEN, 1, 256);
	ASSERT_EQ(0, vu_blk_submit(&self->vq, r, VIRTIO_BLK_T_OUT, 256));
	vu_vq_kick(&self->vq);
}

/* Request @state; it must fail with ETIMEDOUT in about stop_timeout_ms and leave ERROR. */
static void expect_timeout(struct __test_metadata *_metadata, struct mig_dev *m, uint32_t from,
			   uint32_t state)
{
	uint64_t t0 = now_ms(), took;
	int fd, ret;

	ret = mig_set_state(&m->vd, state, &fd);
	took = now_ms() - t0;
	TH_LOG("%s -> %s: %s after %llu ms (stop_timeout_ms %u)", mig_state_name(from),
	       mig_state_name(state), ret ? strerror(-ret) : "success",
	       (unsigned long long)took, stop_timeout_ms);
	if (!ret && fd >= 0)
		close(fd);
	ASSERT_EQ(-ETIMEDOUT, ret);
	EXPECT_EQ(-1, fd);
	EXPECT_GE(took + 50, stop_timeout_ms);
	EXPECT_LE(took, stop_timeout_ms + TIMEOUT_SLACK_MS(stop_timeout_ms))
		TH_LOG("the wait is bounded by %u ms, it took %llu ms", stop_timeout_ms,
		       (unsigned long long)took);
	EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(_metadata, m));
}

/* In ERROR every request fails and changes nothing; a reset recovers. */
static void expect_error_then_reset(struct __test_metadata *_metadata, struct mig_dev *m)
{
	static const uint32_t tries[] = {
		VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP,
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP_COPY,
		VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_PRE_COPY,
	};
	unsigned int i;
	int fd, ret;

	for (i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		ret = mig_set_state(&m->vd, tries[i], &fd);
		EXPECT_EQ(-EINVAL, ret) TH_LOG("ERROR -> %s: %s", mig_state_name(tries[i]),
					       ret ? strerror(-ret) : "success");
		if (!ret && fd >= 0)
			close(fd);
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(_metadata, m));
	}
	ret = mig_dev_reset(m);
	ASSERT_EQ(0, ret) TH_LOG("VFIO_DEVICE_RESET: %s", strerror(-ret));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(_metadata, m));
	/* The data path works (only stopping is broken on this device). */
	ret = mig_blk_io_check(m, 512, IO_LEN, getpid());
	EXPECT_EQ(0, ret) TH_LOG("I/O after the reset: %s", strerror(-ret));
}

TEST_F_TIMEOUT(fault, running_to_running_p2p, 120)
{
	busy_queue(_metadata, self);
	expect_timeout(_metadata, &self->a, VFIO_DEVICE_STATE_RUNNING,
		       VFIO_DEVICE_STATE_RUNNING_P2P);
	expect_error_then_reset(_metadata, &self->a);
}

TEST_F_TIMEOUT(fault, running_to_stop, 120)
{
	busy_queue(_metadata, self);
	/* A combination transition fails in its first arc. */
	expect_timeout(_metadata, &self->a, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP);
	expect_error_then_reset(_metadata, &self->a);
}

TEST_F_TIMEOUT(fault, pre_copy_to_stop_copy, 120)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char c;
	int ret;

	busy_queue(_metadata, self);
	ret = mig_set_state(&self->a.vd, VFIO_DEVICE_STATE_PRE_COPY, &self->fd);
	ASSERT_EQ(0, ret) TH_LOG("RUNNING -> PRE_COPY: %s", strerror(-ret));
	ASSERT_LE(0, self->fd);
	EXPECT_EQ(-ENOMSG, mig_read_stream(self->fd, &buf, &len));
	free(buf);
	expect_timeout(_metadata, &self->a, VFIO_DEVICE_STATE_PRE_COPY,
		       VFIO_DEVICE_STATE_PRE_COPY_P2P);
	/* The session died with the device. */
	errno = 0;
	EXPECT_EQ(-1, read(self->fd, &c, 1));
	EXPECT_EQ(ENODEV, errno) TH_LOG("read after the failure: %s", strerror(errno));
	expect_error_then_reset(_metadata, &self->a);
}

/*
 * Leaving RESUMING with a stream that enables a queue: the driver programs
 * the queue into B and must stop it again before placing it at its saved
 * position, which B never does. The transition must fail with ETIMEDOUT and
 * B, half programmed, must be in ERROR rather than claim RESUMING with an
 * untouched device. (A's queues cannot stop either, so the stream is saved
 * with none enabled and queue 0 is described as enabled afterwards.)
 */
TEST_F_TIMEOUT(fault, restore_timeout, 120)
{
	static const uint32_t to_stop_copy[] = {
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
	};
	static const uint32_t to_resuming[] = {
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RESUMING,
	};
	const uint16_t qsize = 16;
	uint8_t *stream = NULL, *q, *desc, *avail, *used;
	size_t len = 0;
	int fd = -1, failed = -1, ret;
	long off;

	if (!bdf_b[0])
		SKIP(return, "needs a second device-model function");
	ret = mig_dev_open(&self->b, bdf_b, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s (%s)", bdf_b, strerror(-ret), self->b.vd.err);
	ASSERT_EQ(0, vd_dma_map(&self->b.vd, &self->mem));

	/* A: features negotiated, no queue. */
	ASSERT_EQ(0, vu_reset(&self->a.vu, MIG_RESET_TIMEOUT_MS));
	ASSERT_EQ(0, vu_negotiate(&self->a.vu, 0, 1ULL << VIRTIO_F_VERSION_1));
	ret = mig_walk(&self->a.vd, to_stop_copy, 3, &fd, &failed);
	ASSERT_EQ(0, ret) TH_LOG("A to STOP_COPY: arc %d: %s", failed, strerror(-ret));
	ASSERT_EQ(0, mig_read_stream(fd, &stream, &len));
	close(fd);
	fd = -1;

	/* Queue 0 enabled, on empty rings in the shared memory. */
	desc = vu_mem_zalloc(&self->mem, VU_PAGE_SIZE, VU_PAGE_SIZE);
	avail = vu_mem_zalloc(&self->mem, VU_PAGE_SIZE, VU_PAGE_SIZE);
	used = vu_mem_zalloc(&self->mem, VU_PAGE_SIZE, VU_PAGE_SIZE);
	ASSERT_TRUE(desc && avail && used);
	off = vvms_find_section(stream, VVMS_SEC_QUEUE, 0);
	ASSERT_LT(0, off);
	q = stream + off + VVMS_SECTION_HDR_LEN;
	ASSERT_EQ(0, vvms_get16(q + VVMS_Q_INDEX));
	vvms_put16(q + 2, qsize);
	vvms_put16(q + VVMS_Q_ENABLE, 1);
	vvms_put16(q + VVMS_Q_LAST_AVAIL, 0);
	vvms_put64(q + 16, vu_mem_iova(&self->mem, desc));
	vvms_put64(q + 24, vu_mem_iova(&self->mem, avail));
	vvms_put64(q + 32, vu_mem_iova(&self->mem, used));
	vvms_frame_fix_crc(stream);

	ret = mig_walk(&self->b.vd, to_resuming, 3, &fd, &failed);
	ASSERT_EQ(0, ret) TH_LOG("B to RESUMING: arc %d: %s", failed, strerror(-ret));
	ASSERT_EQ(0, mig_write_stream(fd, stream, len, 4096));
	free(stream);
	expect_timeout(_metadata, &self->b, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP);
	vu_write16(self->b.vu.common + VIRTIO_PCI_COMMON_Q_SELECT, 0);
	TH_LOG("B after the failed load: device_status %#x, queue 0 enable %u",
	       vu_get_status(&self->b.vu),
	       vu_read16(self->b.vu.common + VIRTIO_PCI_COMMON_Q_ENABLE));
	close(fd);
	ret = mig_dev_reset(&self->b);
	ASSERT_EQ(0, ret) TH_LOG("VFIO_DEVICE_RESET: %s", strerror(-ret));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(_metadata, &self->b));
	EXPECT_EQ(0, mig_blk_io_check(&self->b, 512, IO_LEN, getpid()));
}

static unsigned int module_timeout(void)
{
	FILE *f = fopen("/sys/module/" MIG_DRIVER "/parameters/stop_timeout_ms", "r");
	unsigned int v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%u", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	char found[8][VD_BDF_LEN], driver[64];
	bool never_stop = false;
	int n, out = 1, i;
	char *c;

	stop_timeout_ms = module_timeout() ?: stop_timeout_ms;
	/* Our options and BDFs first; the rest goes to the harness. */
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--never-stop")) {
			never_stop = true;
		} else if (!strcmp(argv[i], "--stop-timeout-ms") && i + 1 < argc) {
			stop_timeout_ms = strtoul(argv[++i], NULL, 0);
		} else if (argv[i][0] != '-' && !bdf_a[0]) {
			snprintf(bdf_a, sizeof(bdf_a), "%s", argv[i]);
		} else if (argv[i][0] != '-' && !bdf_b[0]) {
			snprintf(bdf_b, sizeof(bdf_b), "%s", argv[i]);
		} else {
			argv[out++] = argv[i];
		}
	}
	argc = out;

	if (!bdf_a[0]) {
		n = vd_find(DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS, found, 8);
		if (n > 0)
			snprintf(bdf_a, sizeof(bdf_a), "%s", found[0]);
		if (n > 1)
			snprintf(bdf_b, sizeof(bdf_b), "%s", found[1]);
		if (n <= 0)
			snprintf(skip_reason, sizeof(skip_reason),
				 "no virtio-devsim function (%04x:%04x subsystem %04x)",
				 DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS);
	}
	if (!never_stop)
		snprintf(skip_reason, sizeof(skip_reason), "needs a device started with "
			 "--fault-never-stop and --never-stop (tools/testing/vm/run-variant-tests.sh)");
	for (i = 0; i < 2 && !skip_reason[0]; i++) {
		const char *bdf = i ? bdf_b : bdf_a;

		if (!bdf[0])
			continue;
		vd_driver(bdf, driver, sizeof(driver));
		for (c = driver; *c; c++)
			if (*c == '-')
				*c = '_';
		if (strcmp(driver, MIG_DRIVER))
			snprintf(skip_reason, sizeof(skip_reason),
				 "%s is bound to '%s', not " MIG_DRIVER, bdf, driver);
	}
	if (!skip_reason[0])
		ksft_print_msg("%s%s%s, stop_timeout_ms %u\n", bdf_a, bdf_b[0] ? " and " : "",
			       bdf_b, stop_timeout_ms);
	return test_harness_run(argc, argv);
}
