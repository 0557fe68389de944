// SPDX-License-Identifier: GPL-2.0
/*
 * The VFIO migration uAPI of virtio_vfio_mig, end to end on two virtio-devsim
 * functions: A is the migration source, B the destination.
 *
 *  - mig.*            every single arc of the state machine (with the data_fd
 *                     each returns and the state GET reports afterwards),
 *                     arcs while the function does not decode memory, the
 *                     guest's selectors and device configuration writes
 *                     carried to B,
 *                     MIG_DATA_SIZE against the stream STOP_COPY produces,
 *                     pre-copy (PRECOPY_INFO, ENOMSG at the temporary end,
 *                     the final frame on the same fd, EOF), a migration of a
 *                     virtio-blk queue under load from A to B, and resets in
 *                     the middle of a data transfer.
 *  - mig_arc.*        multi-step requests (the driver must walk them one arc
 *                     at a time, as vfio_mig_get_next_state() decides) and
 *                     the requests the uAPI rejects.
 *  - mig_bad_stream.* damaged or incompatible streams written into B: write()
 *                     or else the transition out of RESUMING fails with the
 *                     right errno, leaving RESUMING fails in any case, B is
 *                     left untouched and still works after a reset.
 *
 * The two functions share one DMA buffer (a hugepage): in VFIO no-IOMMU mode
 * its IOVAs are physical addresses, and behind an IOMMU both containers map
 * it at the same IOVA, so rings written for A are valid for B.
 *
 * The load test has requests in flight at the stop only when the device
 * model holds them (virtio-devsim --request-delay-ms); without that it still
 * checks the migration but mostly of an idle queue. tools/testing/vm/
 * run-variant-tests.sh boots a VM with --request-delay-ms 20 for it.
 *
 * Usage: vfio_virtio_mig_test [BDF_A BDF_B] [harness options]
 *   Without BDFs the first two device-model functions (1af4:1042, subsystem
 *   0x1100) are used; both must be bound to virtio_vfio_mig, otherwise every
 *   test is skipped. Needs root, VFIO no-IOMMU mode or an IOMMU, and two free
 *   2 MiB hugepages (echo 8 >/proc/sys/vm/nr_hugepages).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "../../kselftest_harness.h"
#include "vfio_dev.h"
#include "vfio_mig_util.h"
#include "virtio_user.h"

#define S_ERROR		VFIO_DEVICE_STATE_ERROR
#define S_STOP		VFIO_DEVICE_STATE_STOP
#define S_RUNNING	VFIO_DEVICE_STATE_RUNNING
#define S_STOP_COPY	VFIO_DEVICE_STATE_STOP_COPY
#define S_RESUMING	VFIO_DEVICE_STATE_RESUMING
#define S_RUNNING_P2P	VFIO_DEVICE_STATE_RUNNING_P2P
#define S_PRE_COPY	VFIO_DEVICE_STATE_PRE_COPY
#define S_PRE_COPY_P2P	VFIO_DEVICE_STATE_PRE_COPY_P2P

#define MIG_MEM_SIZE	(2 * VU_HUGE_PAGE_SIZE)
#define IO_LEN		4096U
#define IO_SECTORS	(IO_LEN / VU_SECTOR_SIZE)

static char bdf_a[VD_BDF_LEN], bdf_b[VD_BDF_LEN];
static char skip_reason[256];

/* Single arcs from RUNNING to STOP_COPY and back, for tests that need a stream. */
static const uint32_t to_stop_copy[] = { S_RUNNING_P2P, S_STOP, S_STOP_COPY };
static const uint32_t stop_to_running[] = { S_RUNNING_P2P, S_RUNNING };
static const uint32_t to_resuming[] = { S_RUNNING_P2P, S_STOP, S_RESUMING };

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* What every fixture holds: both functions and the memory they share. */
struct pair {
	struct vu_mem mem;
	struct mig_dev a, b;
	int fd;			/* the data fd of the test, -1 when none */
	int fd2;
	uint8_t *stream;	/* a stream saved from A */
	size_t len;
};

static void pair_setup(struct __test_metadata *_metadata, struct pair *p)
{
	int ret;

	memset(p, 0, sizeof(*p));
	p->fd = p->fd2 = -1;
	p->a.vd.fd = p->a.vd.group = p->a.vd.container = p->a.vd.iommufd = -1;
	p->b.vd.fd = p->b.vd.group = p->b.vd.container = p->b.vd.iommufd = -1;
	if (skip_reason[0])
		SKIP(return, "%s", skip_reason);
	ASSERT_EQ(0, vu_mem_alloc(&p->mem, MIG_MEM_SIZE));
	ret = mig_dev_open(&p->a, bdf_a, &p->mem);
	ASSERT_EQ(0, ret) TH_LOG("A %s: %s (%s)", bdf_a, strerror(-ret), p->a.vd.err);
	ret = mig_dev_open(&p->b, bdf_b, &p->mem);
	ASSERT_EQ(0, ret) TH_LOG("B %s: %s (%s)", bdf_b, strerror(-ret), p->b.vd.err);
	ret = vd_dma_map(&p->a.vd, &p->mem);
	ASSERT_EQ(0, ret) TH_LOG("A: %s", p->a.vd.err);
	ret = vd_dma_map(&p->b.vd, &p->mem);
	ASSERT_EQ(0, ret) TH_LOG("B: %s", p->b.vd.err);
}

static void pair_teardown(struct pair *p)
{
	if (p->fd >= 0)
		close(p->fd);
	if (p->fd2 >= 0)
		close(p->fd2);
	mig_dev_close(&p->a);
	mig_dev_close(&p->b);
	free(p->stream);
	if (p->mem.va)
		vu_mem_free(&p->mem);
}

static int get_state(struct __test_metadata *_metadata, struct mig_dev *m)
{
	uint32_t state = ~0u;
	int ret = mig_get_state(&m->vd, &state);

	EXPECT_EQ(0, ret) TH_LOG("GET MIG_DEVICE_STATE: %s", strerror(-ret));
	return (int)state;
}

/* Walk single arcs; every one must succeed. */
static void walk(struct __test_metadata *_metadata, struct mig_dev *m, const uint32_t *states,
		 int n, int *fd)
{
	int failed_at = -1, ret;

	ret = mig_walk(&m->vd, states, n, fd, &failed_at);
	ASSERT_EQ(0, ret) TH_LOG("%s: arc to %s: %s", m->vd.bdf,
				 failed_at >= 0 ? mig_state_name(states[failed_at]) : "?",
				 strerror(-ret));
}

/* Save A's state through single arcs and bring A back to RUNNING. */
static void save_a(struct __test_metadata *_metadata, struct pair *p)
{
	const char *why;
	uint64_t size = 0;
	int ret;

	walk(_metadata, &p->a, to_stop_copy, N(to_stop_copy), &p->fd);
	ASSERT_LE(0, p->fd);
	ret = mig_read_stream(p->fd, &p->stream, &p->len);
	ASSERT_EQ(0, ret) TH_LOG("reading the stream: %s", strerror(-ret));
	ASSERT_EQ(0, mig_data_size(&p->a.vd, &size));
	EXPECT_EQ(size, p->len);
	ASSERT_EQ((long)p->len, vvms_frame_check(p->stream, p->len, &why)) TH_LOG("%s", why);
	close(p->fd);
	p->fd = -1;
	walk(_metadata, &p->a, (uint32_t[]){ S_STOP }, 1, &p->fd);
	walk(_metadata, &p->a, stop_to_running, N(stop_to_running), &p->fd);
}

/* Program @vq, set up for another device sharing the memory, to kick @d instead. */
static void vq_move(struct __test_metadata *_metadata, struct vu_vq *vq, struct vu_dev *d)
{
	uint16_t off;

	vu_write16(d->common + VIRTIO_PCI_COMMON_Q_SELECT, vq->index);
	off = vu_read16(d->common + VIRTIO_PCI_COMMON_Q_NOFF);
	ASSERT_LE((size_t)off * d->notify_off_multiplier + 2, d->notify_len);
	vq->dev = d;
	vq->notify = d->notify + (size_t)off * d->notify_off_multiplier;
}

/* The registers a migration carries, as the driver of the device sees them. */
struct regs {
	uint8_t status;
	uint64_t driver_features;
	uint16_t q_size, q_enable, q_msix;
	uint64_t q_desc, q_avail, q_used;
	uint8_t q_running;
};

static uint64_t rd64(uint8_t *reg)
{
	return vu_read32(reg) | (uint64_t)vu_read32(reg + 4) << 32;
}

static void read_regs(struct vu_dev *d, struct regs *r)
{
	uint8_t *c = d->common;

	memset(r, 0, sizeof(*r));
	r->status = vu_get_status(d);
	vu_write32(c + VIRTIO_PCI_COMMON_GFSELECT, 0);
	r->driver_features = vu_read32(c + VIRTIO_PCI_COMMON_GF);
	vu_write32(c + VIRTIO_PCI_COMMON_GFSELECT, 1);
	r->driver_features |= (uint64_t)vu_read32(c + VIRTIO_PCI_COMMON_GF) << 32;
	vu_write16(c + VIRTIO_PCI_COMMON_Q_SELECT, 0);
	r->q_size = vu_read16(c + VIRTIO_PCI_COMMON_Q_SIZE);
	r->q_enable = vu_read16(c + VIRTIO_PCI_COMMON_Q_ENABLE);
	r->q_msix = vu_read16(c + VIRTIO_PCI_COMMON_Q_MSIX);
	r->q_desc = rd64(c + VIRTIO_PCI_COMMON_Q_DESCLO);
	r->q_avail = rd64(c + VIRTIO_PCI_COMMON_Q_AVAILLO);
	r->q_used = rd64(c + VIRTIO_PCI_COMMON_Q_USEDLO);
	vu_write16(d->device_state, 0);
	r->q_running = vu_read8(d->device_state + 4);
}

static void expect_same_regs(struct __test_metadata *_metadata, const struct regs *a,
			     const struct regs *b)
{
	EXPECT_EQ(a->status, b->status);
	EXPECT_EQ(a->driver_features, b->driver_features);
	EXPECT_EQ(a->q_size, b->q_size);
	EXPECT_EQ(a->q_enable, b->q_enable);
	EXPECT_EQ(a->q_msix, b->q_msix);
	EXPECT_EQ(a->q_desc, b->q_desc);
	EXPECT_EQ(a->q_avail, b->q_avail);
	EXPECT_EQ(a->q_used, b->q_used);
}

static int fd_access(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fl & O_ACCMODE;
}

/* One request through @vq and wait for it; the data is checked by the caller. */
static void blk_one(struct __test_metadata *_metadata, struct vu_vq *vq, struct vu_blk_req *r,
		    uint32_t type, uint64_t sector)
{
	int ret;

	ASSERT_EQ(0, vu_blk_submit(vq, r, type, sector));
	vu_vq_kick(vq);
	ret = vu_blk_wait_all(vq, MIG_REQUEST_TIMEOUT_MS);
	ASSERT_EQ(0, ret) TH_LOG("request: %s, used idx %u", strerror(-ret), vu_vq_used_idx(vq));
	EXPECT_EQ(VIRTIO_BLK_S_OK, r->status);
}

/* mig: state machine walks, pre-copy, load, resets */

FIXTURE(mig) {
	struct pair p;
};

FIXTURE_SETUP(mig)
{
	pair_setup(_metadata, &self->p);
}

FIXTURE_TEARDOWN(mig)
{
	pair_teardown(&self->p);
}

TEST_F(mig, initial_state)
{
	struct vfio_device_feature_migration mig = {};
	uint32_t want = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

	ASSERT_EQ(0, vd_feature(&self->p.a.vd, VFIO_DEVICE_FEATURE_GET |
				VFIO_DEVICE_FEATURE_MIGRATION, &mig, sizeof(mig)));
	EXPECT_EQ(want, mig.flags & want);
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.a));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.b));
}

static bool saving_state(uint32_t s)
{
	return s == S_STOP_COPY || s == S_PRE_COPY || s == S_PRE_COPY_P2P;
}

struct arc {
	uint32_t to;
	bool fd;	/* the arc opens a data transfer session */
};

#define ARC(s)	{ .to = (s), .fd = false }
#define OPEN(s)	{ .to = (s), .fd = true }

/*
 * Take the arcs one by one: each succeeds, returns a data fd exactly when it
 * starts a session (read-only for saving, write-only for resuming), and GET
 * reports the new state. In STOP_COPY the saved stream is read whole and
 * checked against MIG_DATA_SIZE; in RESUMING it is written back, so that
 * leaving RESUMING loads the device's own state.
 */
static void walk_arcs(struct __test_metadata *_metadata, struct pair *p, const struct arc *arcs,
		      int n)
{
	uint32_t cur = S_RUNNING;
	const char *why;
	int i, fd, ret;
	char c;

	for (i = 0; i < n; i++) {
		ret = mig_set_state(&p->a.vd, arcs[i].to, &fd);
		ASSERT_EQ(0, ret) TH_LOG("%s -> %s: %s", mig_state_name(cur),
					 mig_state_name(arcs[i].to), strerror(-ret));
		if (arcs[i].fd) {
			ASSERT_LE(0, fd) TH_LOG("%s -> %s returned no data_fd",
						mig_state_name(cur), mig_state_name(arcs[i].to));
			EXPECT_EQ(arcs[i].to == S_RESUMING ? O_WRONLY : O_RDONLY, fd_access(fd));
			if (p->fd >= 0)
				close(p->fd);
			p->fd = fd;
		} else {
			EXPECT_EQ(-1, fd) TH_LOG("%s -> %s returned data_fd %d",
						 mig_state_name(cur), mig_state_name(arcs[i].to), fd);
			if (fd >= 0)
				close(fd);
		}
		EXPECT_EQ((int)arcs[i].to, get_state(_metadata, &p->a));
		/* Leaving the states of a session ends it: its fd fails from now on. */
		if (!arcs[i].fd && p->fd >= 0 && saving_state(cur) && !saving_state(arcs[i].to)) {
			errno = 0;
			EXPECT_EQ(-1, read(p->fd, &c, 1));
			EXPECT_EQ(ENODEV, errno) TH_LOG("read after %s -> %s: %s",
						       mig_state_name(cur),
						       mig_state_name(arcs[i].to), strerror(errno));
		}
		if (p->fd >= 0 && cur == S_RESUMING) {
			errno = 0;
			EXPECT_EQ(-1, write(p->fd, &c, 1));
			EXPECT_EQ(ENODEV, errno) TH_LOG("write after RESUMING -> %s: %s",
						       mig_state_name(arcs[i].to), strerror(errno));
		}
		cur = arcs[i].to;

		if (cur == S_STOP_COPY) {
			uint64_t size = 0;
			size_t len = 0;
			long first;

			ASSERT_EQ(0, mig_data_size(&p->a.vd, &size));
			free(p->stream);
			p->stream = NULL;
			p->len = 0;
			ret = mig_read_stream(p->fd, &p->stream, &p->len);
			ASSERT_EQ(0, ret) TH_LOG("reading in STOP_COPY: %s", strerror(-ret));
			/* A pre-copy frame may come first; the final frame is MIG_DATA_SIZE long. */
			first = vvms_frame_check(p->stream, p->len, &why);
			ASSERT_LT(0, first) TH_LOG("first frame: %s", why);
			if (vvms_get16(p->stream + 6) == VVMS_FRAME_PRECOPY)
				len = first;
			EXPECT_EQ(size, p->len - len);
			EXPECT_EQ((long)(p->len - len),
				  vvms_frame_check(p->stream + len, p->len - len, &why))
				TH_LOG("final frame: %s", why);
			EXPECT_EQ(VVMS_FRAME_FINAL, vvms_get16(p->stream + len + 6));
			/* End of stream, for good. */
			EXPECT_EQ(0, read(p->fd, &c, 1));
		}
		if (cur == S_RESUMING) {
			ASSERT_NE(NULL, p->stream);
			ret = mig_write_stream(p->fd, p->stream, p->len, 333);
			ASSERT_EQ(0, ret) TH_LOG("writing in RESUMING: %s", strerror(-ret));
		}
	}
}

TEST_F_TIMEOUT(mig, arcs_stop_copy_resuming, 120)
{
	static const struct arc arcs[] = {
		ARC(S_RUNNING_P2P), ARC(S_STOP), OPEN(S_STOP_COPY), ARC(S_STOP),
		OPEN(S_RESUMING), ARC(S_STOP), ARC(S_RUNNING_P2P), ARC(S_RUNNING),
		/* The other way through RUNNING_P2P and STOP. */
		ARC(S_RUNNING_P2P), ARC(S_STOP), ARC(S_RUNNING_P2P), ARC(S_RUNNING),
	};
	struct vu_blk_req *wr, *rd;
	uint32_t seed = getpid();
	struct vu_vq vq;

	/* A configured device: DRIVER_OK and a queue in the shared memory. */
	ASSERT_EQ(0, mig_blk_start(&self->p.a, &vq, 16));
	walk_arcs(_metadata, &self->p, arcs, N(arcs));

	/* A loaded its own state: its queue works where it left off. */
	wr = vu_blk_req_alloc(&self->p.mem, IO_LEN);
	rd = vu_blk_req_alloc(&self->p.mem, IO_LEN);
	ASSERT_TRUE(wr && rd);
	mig_fill_pattern(wr->data, IO_LEN, seed, 512);
	blk_one(_metadata, &vq, wr, VIRTIO_BLK_T_OUT, 512);
	blk_one(_metadata, &vq, rd, VIRTIO_BLK_T_IN, 512);
	EXPECT_EQ(-1, mig_check_pattern(rd->data, IO_LEN, seed, 512));
	EXPECT_EQ(2, vu_vq_used_idx(&vq));
	vu_vq_release(&vq);
}

TEST_F_TIMEOUT(mig, arcs_pre_copy, 120)
{
	static const struct arc arcs[] = {
		OPEN(S_PRE_COPY), ARC(S_PRE_COPY_P2P), ARC(S_PRE_COPY), ARC(S_RUNNING),
		ARC(S_RUNNING_P2P), OPEN(S_PRE_COPY_P2P), ARC(S_RUNNING_P2P), ARC(S_RUNNING),
		OPEN(S_PRE_COPY), ARC(S_PRE_COPY_P2P), ARC(S_STOP_COPY), ARC(S_STOP),
		ARC(S_RUNNING_P2P), ARC(S_RUNNING),
	};
	struct vu_vq vq;

	ASSERT_EQ(0, mig_blk_start(&self->p.a, &vq, 16));
	walk_arcs(_metadata, &self->p, arcs, N(arcs));
	vu_vq_release(&vq);
}

TEST_F(mig, data_size_matches_stream)
{
	uint64_t size = 0, again = 0;

	ASSERT_EQ(0, mig_data_size(&self->p.a.vd, &size));
	TH_LOG("MIG_DATA_SIZE %llu", (unsigned long long)size);
	EXPECT_LT((uint64_t)VVMS_HEADER_LEN, size);
	EXPECT_GE((uint64_t)VVMS_MAX_FRAME_LEN, size);
	save_a(_metadata, &self->p);
	EXPECT_EQ(size, self->p.len);
	ASSERT_EQ(0, mig_data_size(&self->p.a.vd, &again));
	EXPECT_EQ(size, again);
}

TEST_F_TIMEOUT(mig, pre_copy, 120)
{
	struct vfio_precopy_info info;
	struct regs before, after;
	struct vu_blk_req *wr, *rd;
	uint64_t size = 0, initial;
	uint16_t used;
	uint32_t seed = getpid() * 7;
	const char *why;
	size_t pre_len;
	struct vu_vq vq;
	int fd, ret;
	char c;

	ASSERT_EQ(0, mig_blk_start(&self->p.a, &vq, 32));
	/* Some history on the ring before it moves. */
	wr = vu_blk_req_alloc(&self->p.mem, IO_LEN);
	rd = vu_blk_req_alloc(&self->p.mem, IO_LEN);
	ASSERT_TRUE(wr && rd);
	mig_fill_pattern(wr->data, IO_LEN, seed, 1024);
	blk_one(_metadata, &vq, wr, VIRTIO_BLK_T_OUT, 1024);

	ret = mig_set_state(&self->p.a.vd, S_PRE_COPY, &self->p.fd);
	ASSERT_EQ(0, ret) TH_LOG("RUNNING -> PRE_COPY: %s", strerror(-ret));
	ASSERT_LE(0, self->p.fd);
	ret = mig_precopy_info(self->p.fd, &info);
	ASSERT_EQ(0, ret) TH_LOG("PRECOPY_INFO: %s", strerror(-ret));
	TH_LOG("PRE_COPY: initial_bytes %llu dirty_bytes %llu",
	       (unsigned long long)info.initial_bytes, (unsigned long long)info.dirty_bytes);
	EXPECT_LT(0ULL, info.initial_bytes);
	EXPECT_EQ(0ULL, info.dirty_bytes);
	initial = info.initial_bytes;

	/* The initial data, then a temporary end. */
	ret = mig_read_stream(self->p.fd, &self->p.stream, &self->p.len);
	EXPECT_EQ(-ENOMSG, ret) TH_LOG("read at the end of pre-copy data: %s", strerror(-ret));
	EXPECT_EQ(initial, self->p.len);
	pre_len = self->p.len;
	EXPECT_EQ((long)pre_len, vvms_frame_check(self->p.stream, pre_len, &why))
		TH_LOG("pre-copy frame: %s", why);
	EXPECT_EQ(VVMS_FRAME_PRECOPY, vvms_get16(self->p.stream + 6));
	errno = 0;
	EXPECT_EQ(-1, read(self->p.fd, &c, 1));
	EXPECT_EQ(ENOMSG, errno);
	ASSERT_EQ(0, mig_precopy_info(self->p.fd, &info));
	EXPECT_EQ(0ULL, info.initial_bytes);
	EXPECT_EQ(0ULL, info.dirty_bytes);

	/* The device still runs in PRE_COPY. */
	blk_one(_metadata, &vq, rd, VIRTIO_BLK_T_IN, 1024);
	EXPECT_EQ(-1, mig_check_pattern(rd->data, IO_LEN, seed, 1024));
	read_regs(&self->p.a.vu, &before);
	used = vu_vq_used_idx(&vq);

	ret = mig_set_state(&self->p.a.vd, S_PRE_COPY_P2P, &fd);
	ASSERT_EQ(0, ret) TH_LOG("PRE_COPY -> PRE_COPY_P2P: %s", strerror(-ret));
	EXPECT_EQ(-1, fd);
	ASSERT_EQ(0, mig_precopy_info(self->p.fd, &info));
	EXPECT_EQ(0ULL, info.initial_bytes);
	errno = 0;
	EXPECT_EQ(-1, read(self->p.fd, &c, 1));
	EXPECT_EQ(ENOMSG, errno);

	ret = mig_set_state(&self->p.a.vd, S_STOP_COPY, &fd);
	ASSERT_EQ(0, ret) TH_LOG("PRE_COPY_P2P -> STOP_COPY: %s", strerror(-ret));
	EXPECT_EQ(-1, fd);
	ASSERT_EQ(0, mig_data_size(&self->p.a.vd, &size));
	/* The same fd goes on with the final frame, then EOF. */
	ret = mig_read_stream(self->p.fd, &self->p.stream, &self->p.len);
	ASSERT_EQ(0, ret) TH_LOG("reading the final frame: %s", strerror(-ret));
	EXPECT_EQ(size, self->p.len - pre_len);
	EXPECT_EQ((long)(self->p.len - pre_len),
		  vvms_frame_check(self->p.stream + pre_len, self->p.len - pre_len, &why))
		TH_LOG("final frame: %s", why);
	EXPECT_EQ(VVMS_FRAME_FINAL, vvms_get16(self->p.stream + pre_len + 6));
	EXPECT_EQ(0, read(self->p.fd, &c, 1));
	EXPECT_EQ(-EINVAL, mig_precopy_info(self->p.fd, &info));
	walk(_metadata, &self->p.a, (uint32_t[]){ S_STOP }, 1, &self->p.fd);
	TH_LOG("stream: %zu bytes pre-copy + %zu final", pre_len, self->p.len - pre_len);

	/* The concatenated stream loads into B, in odd-sized writes. */
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd2);
	ASSERT_LE(0, self->p.fd2);
	ret = mig_write_stream(self->p.fd2, self->p.stream, self->p.len, 100);
	ASSERT_EQ(0, ret) TH_LOG("writing to B: %s", strerror(-ret));
	walk(_metadata, &self->p.b, (uint32_t[]){ S_STOP }, 1, &self->p.fd2);
	vq_move(_metadata, &vq, &self->p.b.vu);
	walk(_metadata, &self->p.b, stop_to_running, N(stop_to_running), &self->p.fd2);
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.b));
	read_regs(&self->p.b.vu, &after);
	expect_same_regs(_metadata, &before, &after);
	EXPECT_EQ(1, after.q_running);

	/* The queue goes on on B from where A left it. */
	blk_one(_metadata, &vq, rd, VIRTIO_BLK_T_GET_ID, 0);
	EXPECT_EQ((uint16_t)(used + 1), vu_vq_used_idx(&vq));
	vu_vq_release(&vq);
}

TEST_F_TIMEOUT(mig, reset_in_stop_copy, 120)
{
	uint8_t head[16];
	uint64_t size = 0;
	const char *why;
	int ret;

	walk(_metadata, &self->p.a, to_stop_copy, N(to_stop_copy), &self->p.fd);
	ASSERT_LE(0, self->p.fd);
	ASSERT_EQ((ssize_t)sizeof(head), read(self->p.fd, head, sizeof(head)));
	EXPECT_EQ(0, memcmp(head, "VVMS", 4));

	ASSERT_TRUE(!!(self->p.a.vd.info.flags & VFIO_DEVICE_FLAGS_RESET));
	ret = mig_dev_reset(&self->p.a);
	ASSERT_EQ(0, ret) TH_LOG("VFIO_DEVICE_RESET in STOP_COPY: %s", strerror(-ret));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.a));
	errno = 0;
	EXPECT_EQ(-1, read(self->p.fd, head, sizeof(head)));
	EXPECT_EQ(ENODEV, errno) TH_LOG("read of the old data fd: %s", strerror(errno));
	close(self->p.fd);
	self->p.fd = -1;

	/* A new migration from scratch. */
	walk(_metadata, &self->p.a, to_stop_copy, N(to_stop_copy), &self->p.fd);
	ASSERT_LE(0, self->p.fd);
	ret = mig_read_stream(self->p.fd, &self->p.stream, &self->p.len);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	ASSERT_EQ(0, mig_data_size(&self->p.a.vd, &size));
	EXPECT_EQ(size, self->p.len);
	EXPECT_EQ((long)self->p.len, vvms_frame_check(self->p.stream, self->p.len, &why))
		TH_LOG("%s", why);
	walk(_metadata, &self->p.a, (uint32_t[]){ S_STOP, S_RUNNING_P2P, S_RUNNING }, 3,
	     &self->p.fd);
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd2);
	ASSERT_EQ(0, mig_write_stream(self->p.fd2, self->p.stream, self->p.len, 4096));
	walk(_metadata, &self->p.b, (uint32_t[]){ S_STOP, S_RUNNING_P2P, S_RUNNING }, 3,
	     &self->p.fd2);
	EXPECT_EQ(0, mig_blk_io_check(&self->p.b, 64, IO_LEN, getpid()));
}

TEST_F_TIMEOUT(mig, reset_in_pre_copy, 120)
{
	struct vfio_precopy_info info;
	char c;
	int ret;

	walk(_metadata, &self->p.a, (uint32_t[]){ S_PRE_COPY }, 1, &self->p.fd);
	ASSERT_LE(0, self->p.fd);
	ret = mig_dev_reset(&self->p.a);
	ASSERT_EQ(0, ret) TH_LOG("VFIO_DEVICE_RESET in PRE_COPY: %s", strerror(-ret));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.a));
	errno = 0;
	EXPECT_EQ(-1, read(self->p.fd, &c, 1));
	EXPECT_EQ(ENODEV, errno) TH_LOG("read of the old data fd: %s", strerror(errno));
	EXPECT_NE(0, mig_precopy_info(self->p.fd, &info));
	close(self->p.fd);
	self->p.fd = -1;
	walk(_metadata, &self->p.a, (uint32_t[]){ S_PRE_COPY }, 1, &self->p.fd);
	ASSERT_EQ(0, mig_precopy_info(self->p.fd, &info));
	EXPECT_LT(0ULL, info.initial_bytes);
	walk(_metadata, &self->p.a, (uint32_t[]){ S_RUNNING }, 1, &self->p.fd);
	EXPECT_EQ(0, mig_blk_io_check(&self->p.a, 64, IO_LEN, getpid()));
}

TEST_F_TIMEOUT(mig, reset_in_resuming, 120)
{
	int ret;

	save_a(_metadata, &self->p);
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd);
	ASSERT_EQ(0, mig_write_stream(self->p.fd, self->p.stream, self->p.len / 2, 4096));
	ret = mig_dev_reset(&self->p.b);
	ASSERT_EQ(0, ret) TH_LOG("VFIO_DEVICE_RESET in RESUMING: %s", strerror(-ret));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &self->p.b));
	errno = 0;
	EXPECT_EQ(-1, write(self->p.fd, self->p.stream, 8));
	EXPECT_EQ(ENODEV, errno) TH_LOG("write to the old data fd: %s", strerror(errno));
	EXPECT_EQ(0, mig_blk_io_check(&self->p.b, 64, IO_LEN, getpid()));
	/* And a whole stream loads afterwards. */
	close(self->p.fd);
	self->p.fd = -1;
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd);
	ASSERT_EQ(0, mig_write_stream(self->p.fd, self->p.stream, self->p.len, 4096));
	walk(_metadata, &self->p.b, (uint32_t[]){ S_STOP, S_RUNNING_P2P, S_RUNNING }, 3,
	     &self->p.fd);
}

/*
 * Migration of a virtio-blk queue with requests in flight.
 *
 * B's disk gets the data of phase 1 beforehand, as shared storage would
 * have it, so that reads of those sectors are right wherever they run.
 * Phase 1 (writes) completes on A. Phase 2 (writes of new sectors and reads
 * of phase 1) is published in two batches, each kicked, just before the
 * stop: requests A fetched complete on A while it stops, the rest stay in the
 * available ring and must be done by B. Phase 3 runs on B: writes, then reads
 * of everything written. Finally A is reset and reads back the phase 2
 * writes it completed. Every request must complete exactly once, on the
 * device its used entry position says.
 */
#define RT_PHASE1	16
#define RT_BATCH	8	/* writes and as many reads per phase 2 batch */
#define RT_PHASE3	8
#define RT_MAX_REQS	128
#define RT_SECTOR1	8192ULL
#define RT_SECTOR2	16384ULL
#define RT_SECTOR3	24576ULL

struct rt_req {
	struct vu_blk_req *r;
	uint32_t type;
	uint64_t sector;
	int phase;
	char done_on;		/* 'A' or 'B' */
	int completions;
};

struct rt {
	struct rt_req req[RT_MAX_REQS];
	int n;
	uint32_t seed;
	int errors;
};

static int rt_submit(struct rt *t, struct vu_vq *vq,
		     struct vu_mem *mem, uint32_t type, uint64_t sector, int phase)
{
	struct rt_req *q;

	if (t->n >= RT_MAX_REQS)
		return -ENOSPC;
	q = &t->req[t->n];
	q->r = vu_blk_req_alloc(mem, IO_LEN);
	if (!q->r)
		return -ENOMEM;
	q->type = type;
	q->sector = sector;
	q->phase = phase;
	if (type == VIRTIO_BLK_T_OUT)
		mig_fill_pattern(q->r->data, IO_LEN, t->seed, sector);
	else
		memset(q->r->data, 0xee, IO_LEN);
	t->n++;
	return vu_blk_submit(vq, q->r, type, sector);
}

/*
 * Harvest used entries, attributing them to @dev. With @wait, until nothing
 * is in flight; otherwise what is there. Returns the count or -errno.
 */
static int rt_harvest(struct rt *t, struct vu_vq *vq, char dev, bool wait)
{
	uint64_t idle_ms = 0;
	int count = 0;

	for (;;) {
		struct vu_blk_req *r;
		void *cookie;
		uint32_t len;
		int i, ret = vu_vq_harvest(vq, &cookie, &len);

		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (!wait || !vq->in_flight)
				return count;
			if (idle_ms++ > MIG_REQUEST_TIMEOUT_MS)
				return -ETIMEDOUT;
			usleep(1000);
			continue;
		}
		idle_ms = 0;
		r = cookie;
		for (i = 0; i < t->n && t->req[i].r != r; i++)
			;
		if (i == t->n)
			return -EIO;
		t->req[i].completions++;
		t->req[i].done_on = dev;
		r->used_len = len;
		r->done = true;
		count++;
	}
}

/* Status, length and, for reads of known data, contents of completed request @q. */
static void rt_check(struct __test_metadata *_metadata, struct rt *t, struct rt_req *q)
{
	long bad;

	EXPECT_EQ(1, q->completions) TH_LOG("request %ld (phase %d, %s sector %llu)",
					    (long)(q - t->req), q->phase,
					    q->type == VIRTIO_BLK_T_OUT ? "write" : "read",
					    (unsigned long long)q->sector);
	EXPECT_EQ(VIRTIO_BLK_S_OK, q->r->status);
	EXPECT_EQ(q->type == VIRTIO_BLK_T_OUT ? 1U : IO_LEN + 1, q->r->used_len);
	if (q->type != VIRTIO_BLK_T_IN)
		return;
	bad = mig_check_pattern(q->r->data, IO_LEN, t->seed, q->sector);
	EXPECT_EQ(-1, bad) TH_LOG("read of sector %llu on %c (phase %d) differs at byte %ld",
				  (unsigned long long)q->sector, q->done_on, q->phase, bad);
}

TEST_F_TIMEOUT(mig, round_trip_under_load, 300)
{
	struct pair *p = &self->p;
	struct rt *t;
	struct vu_vq vq, vqb, vqa;
	uint16_t used_before, used_stop, used_b, last_avail;
	uint64_t capacity, t0;
	int done_a, done_b = 0, i, ret;
	long q0, served0[2], served1[2];
	struct timespec ts;

	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	t->seed = (uint32_t)getpid() * 2654435761u ^ (uint32_t)time(NULL);

	/* Shared storage: B's disk holds phase 1 too. */
	ASSERT_EQ(0, mig_blk_start(&p->b, &vqb, 64));
	capacity = vu_cfg_read64(&p->b.vu, 0);
	ASSERT_LE(RT_SECTOR3 + RT_PHASE3 * IO_SECTORS, capacity);
	for (i = 0; i < RT_PHASE1; i++) {
		struct vu_blk_req *r = vu_blk_req_alloc(&p->mem, IO_LEN);

		ASSERT_NE(NULL, r);
		mig_fill_pattern(r->data, IO_LEN, t->seed, RT_SECTOR1 + i * IO_SECTORS);
		ASSERT_EQ(0, vu_blk_submit(&vqb, r, VIRTIO_BLK_T_OUT, RT_SECTOR1 + i * IO_SECTORS));
	}
	vu_vq_kick(&vqb);
	ASSERT_EQ(0, vu_blk_wait_all(&vqb, MIG_REQUEST_TIMEOUT_MS));
	ASSERT_EQ(0, vu_reset(&p->b.vu, MIG_RESET_TIMEOUT_MS));
	vu_vq_release(&vqb);
	/* What each device executes from here on, counted by the device itself. */
	ASSERT_EQ(0, mig_devsim_settle(mig_devsim_stats_dir(), 2, "requests_served", served0))
		TH_LOG("no device-model counters in %s", mig_devsim_stats_dir());

	/* Phase 1 on A. */
	ASSERT_EQ(0, mig_blk_start(&p->a, &vq, 128));
	for (i = 0; i < RT_PHASE1; i++)
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_OUT,
				       RT_SECTOR1 + i * IO_SECTORS, 1));
	vu_vq_kick(&vq);
	ASSERT_EQ(RT_PHASE1, rt_harvest(t, &vq, 'A', true));

	/* Phase 2: two batches, the second published while the first is in flight. */
	for (i = 0; i < 2 * RT_BATCH; i++) {
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_OUT,
				       RT_SECTOR2 + i * IO_SECTORS, 2));
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_IN,
				       RT_SECTOR1 + i * IO_SECTORS, 2));
		if (i == RT_BATCH - 1 || i == 2 * RT_BATCH - 1)
			vu_vq_kick(&vq);
	}
	used_before = vu_vq_used_idx(&vq);

	/* A: RUNNING -> STOP_COPY; quiescing completes what A fetched. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
	walk(_metadata, &p->a, (uint32_t[]){ S_RUNNING_P2P }, 1, &p->fd);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	used_stop = vu_vq_used_idx(&vq);
	TH_LOG("RUNNING -> RUNNING_P2P took %llu ms; used idx %u before, %u after, %u published",
	       ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000 - t0, used_before, used_stop,
	       vq.avail_idx);
	EXPECT_LE((uint16_t)(used_stop - used_before), (uint16_t)(vq.avail_idx - used_before));
	walk(_metadata, &p->a, (uint32_t[]){ S_STOP, S_STOP_COPY }, 2, &p->fd);
	ASSERT_LE(0, p->fd);
	ret = mig_read_stream(p->fd, &p->stream, &p->len);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	walk(_metadata, &p->a, (uint32_t[]){ S_STOP }, 1, &p->fd);

	/* The saved position is where A's used ring ended. */
	q0 = vvms_find_section(p->stream, VVMS_SEC_QUEUE, 0);
	ASSERT_LT(0, q0);
	EXPECT_EQ(0, vvms_get16(p->stream + q0 + VVMS_SECTION_HDR_LEN + VVMS_Q_INDEX));
	last_avail = vvms_get16(p->stream + q0 + VVMS_SECTION_HDR_LEN + VVMS_Q_LAST_AVAIL);
	EXPECT_EQ(used_stop, last_avail);
	EXPECT_EQ(1, vvms_get16(p->stream + q0 + VVMS_SECTION_HDR_LEN + VVMS_Q_ENABLE));

	done_a = rt_harvest(t, &vq, 'A', false);
	ASSERT_LE(0, done_a) TH_LOG("harvest on A: %s", strerror(-done_a));
	/* A stopped: nothing more appears. */
	usleep(200 * 1000);
	EXPECT_EQ(used_stop, vu_vq_used_idx(&vq));
	TH_LOG("at the stop: %d requests completed by A while stopping, %u left for B",
	       (uint16_t)(used_stop - used_before), vq.in_flight);

	/* B: RESUMING, the stream, STOP, then RUNNING kicked through B's doorbell. */
	walk(_metadata, &p->b, to_resuming, N(to_resuming), &p->fd2);
	ASSERT_EQ(0, mig_write_stream(p->fd2, p->stream, p->len, 4096));
	walk(_metadata, &p->b, (uint32_t[]){ S_STOP }, 1, &p->fd2);
	vq_move(_metadata, &vq, &p->b.vu);
	walk(_metadata, &p->b, stop_to_running, N(stop_to_running), &p->fd2);

	/* Phase 3 on B: writes, then reads of all data B holds. */
	for (i = 0; i < RT_PHASE3; i++)
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_OUT,
				       RT_SECTOR3 + i * IO_SECTORS, 3));
	vu_vq_kick(&vq);
	ret = rt_harvest(t, &vq, 'B', true);
	ASSERT_LE(0, ret) TH_LOG("harvest on B: %s, used idx %u", strerror(-ret),
				 vu_vq_used_idx(&vq));
	done_b += ret;
	used_b = vu_vq_used_idx(&vq);
	EXPECT_EQ(vq.avail_idx, used_b);
	for (i = 0; i < RT_PHASE3; i++)
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_IN,
				       RT_SECTOR3 + i * IO_SECTORS, 4));
	for (i = 0; i < RT_PHASE1; i += 4)
		ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_IN,
				       RT_SECTOR1 + i * IO_SECTORS, 4));
	for (i = 0; i < t->n; i++)
		if (t->req[i].phase == 2 && t->req[i].type == VIRTIO_BLK_T_OUT &&
		    t->req[i].done_on == 'B')
			ASSERT_EQ(0, rt_submit(t, &vq, &p->mem, VIRTIO_BLK_T_IN,
					       t->req[i].sector, 4));
	vu_vq_kick(&vq);
	ret = rt_harvest(t, &vq, 'B', true);
	ASSERT_LE(0, ret) TH_LOG("harvest on B: %s", strerror(-ret));
	done_b += ret;
	EXPECT_LE(used_b, vu_vq_used_idx(&vq));

	/* Nothing late or doubled on the ring. */
	usleep(200 * 1000);
	EXPECT_EQ(vq.avail_idx, vu_vq_used_idx(&vq));
	EXPECT_EQ(vq.avail_idx, vq.last_used);
	EXPECT_EQ(0U, vq.in_flight);
	EXPECT_EQ(vq.size, vq.num_free);
	EXPECT_EQ(t->n, RT_PHASE1 + done_a + done_b);
	TH_LOG("%d requests: %d on A before the stop (phase 1 and 2), %d on B", t->n,
	       RT_PHASE1 + done_a, done_b);
	/*
	 * The ring cannot show a request the destination executes again: it
	 * overwrites the same used entry. The devices' own counts can.
	 */
	ASSERT_EQ(0, mig_devsim_settle(mig_devsim_stats_dir(), 2, "requests_served", served1));
	EXPECT_EQ(RT_PHASE1 + done_a, served1[0] - served0[0]) TH_LOG("requests A executed");
	EXPECT_EQ(done_b, served1[1] - served0[1]) TH_LOG("requests B executed");
	for (i = 0; i < t->n; i++) {
		struct rt_req *q = &t->req[i];

		rt_check(_metadata, t, q);
		/* Positions below the saved index are A's, the rest B's. */
		EXPECT_EQ(i < last_avail ? 'A' : 'B', q->done_on)
			TH_LOG("request %d", i);
		if (q->phase != 2)
			EXPECT_EQ(q->phase == 1 ? 'A' : 'B', q->done_on);
	}

	/* A's disk has the phase 2 writes A completed. */
	ASSERT_EQ(0, mig_dev_reset(&p->a));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &p->a));
	ASSERT_EQ(0, mig_blk_start(&p->a, &vqa, 32));
	for (i = 0; i < t->n; i++) {
		struct rt_req *q = &t->req[i];
		struct vu_blk_req *r;
		long bad;

		if (q->phase != 2 || q->type != VIRTIO_BLK_T_OUT || q->done_on != 'A')
			continue;
		r = vu_blk_req_alloc(&p->mem, IO_LEN);
		ASSERT_NE(NULL, r);
		blk_one(_metadata, &vqa, r, VIRTIO_BLK_T_IN, q->sector);
		bad = mig_check_pattern(r->data, IO_LEN, t->seed, q->sector);
		EXPECT_EQ(-1, bad) TH_LOG("A's sector %llu differs at byte %ld",
					  (unsigned long long)q->sector, bad);
	}
	vu_vq_release(&vqa);
	vu_vq_release(&vq);
	free(t);
}

static void set_command(struct __test_metadata *_metadata, struct vd *d, uint16_t set,
			uint16_t clear)
{
	uint16_t cmd;

	ASSERT_EQ(0, vd_config_read(d, PCI_COMMAND, &cmd, 2));
	cmd = (cmd | set) & ~clear;
	ASSERT_EQ(0, vd_config_write(d, PCI_COMMAND, &cmd, 2));
}

/* Power states in the PowerState field of the power management control register. */
#define PM_D0		0
#define PM_D3HOT	3

/* Offset of the power management control register of @d, or 0 without the capability. */
static unsigned int pm_ctrl(struct vd *d)
{
	unsigned int pos, hops;
	uint8_t cfg[256];

	if (vd_config_read(d, 0, cfg, sizeof(cfg)))
		return 0;
	for (pos = cfg[PCI_CAPABILITY_LIST] & ~3u, hops = 0; pos && hops < 48;
	     pos = cfg[pos + PCI_CAP_LIST_NEXT] & ~3u, hops++)
		if (cfg[pos + PCI_CAP_LIST_ID] == PCI_CAP_ID_PM)
			return pos + PCI_PM_CTRL;
	return 0;
}

static void set_power_state(struct __test_metadata *_metadata, struct vd *d, unsigned int pm,
			    uint16_t state)
{
	uint16_t ctrl;

	ASSERT_EQ(0, vd_config_read(d, pm, &ctrl, 2));
	ctrl = (ctrl & ~PCI_PM_CTRL_STATE_MASK) | state;
	ASSERT_EQ(0, vd_config_write(d, pm, &ctrl, 2));
}

/*
 * The user may have memory decoding off when a migration arc comes (a
 * destination QEMU clears Memory Space Enable when it resets its virtual
 * device): the driver then turns it on for its own accesses, as vfio-pci
 * does for the MSI-X table, and puts the user's command register back. Its
 * queue really stops. A function in D3hot cannot decode at all: an arc that
 * needs the device fails with EIO and leaves the state as it was, while arcs
 * that need no register (a pre-copy session opened and closed) still work.
 */
TEST_F_TIMEOUT(mig, memory_decoding_off, 120)
{
	struct mig_dev *a = &self->p.a;
	unsigned int pm = pm_ctrl(&a->vd);
	struct vu_vq vq;
	uint16_t cmd;
	int fd = -1, ret;

	ASSERT_EQ(0, mig_blk_start(a, &vq, 16));
	set_command(_metadata, &a->vd, 0, PCI_COMMAND_MEMORY);
	ret = mig_set_state(&a->vd, S_RUNNING_P2P, &fd);
	EXPECT_EQ(0, ret) TH_LOG("RUNNING -> RUNNING_P2P, decoding off: %s", strerror(-ret));
	EXPECT_EQ(S_RUNNING_P2P, get_state(_metadata, a));
	ASSERT_EQ(0, vd_config_read(&a->vd, PCI_COMMAND, &cmd, 2));
	EXPECT_EQ(0, cmd & PCI_COMMAND_MEMORY) TH_LOG("the user's command register changed");
	set_command(_metadata, &a->vd, PCI_COMMAND_MEMORY, 0);
	vu_write16(a->vu.device_state, 0);
	EXPECT_EQ(0, vu_read8(a->vu.device_state + 4)) TH_LOG("queue 0 still runs in RUNNING_P2P");
	walk(_metadata, a, (uint32_t[]){ S_RUNNING }, 1, &fd);
	vu_write16(a->vu.device_state, 0);
	EXPECT_EQ(1, vu_read8(a->vu.device_state + 4)) TH_LOG("queue 0 stopped in RUNNING");

	ASSERT_NE(0U, pm) TH_LOG("A has no power management capability");
	set_power_state(_metadata, &a->vd, pm, PM_D3HOT);
	ret = mig_set_state(&a->vd, S_RUNNING_P2P, &fd);
	EXPECT_EQ(-EIO, ret) TH_LOG("RUNNING -> RUNNING_P2P in D3hot: %s", strerror(-ret));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, a));
	ret = mig_set_state(&a->vd, S_PRE_COPY, &fd);
	EXPECT_EQ(0, ret) TH_LOG("RUNNING -> PRE_COPY in D3hot: %s", strerror(-ret));
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
	ret = mig_set_state(&a->vd, S_RUNNING, &fd);
	EXPECT_EQ(0, ret) TH_LOG("PRE_COPY -> RUNNING in D3hot: %s", strerror(-ret));
	set_power_state(_metadata, &a->vd, pm, PM_D0);

	/* Leaving D3hot may reset the function: decode and master again. */
	set_command(_metadata, &a->vd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 0);
	vu_vq_release(&vq);
	save_a(_metadata, &self->p);
}

/*
 * The data fds never block, so they need no poll method of their own: the
 * default mask says "ready" at once, and a read or write that follows returns
 * at once (data, ENOMSG at the end of the pre-copy data, EOF, or the bytes
 * written), which is what a user that polls before each call needs.
 */
TEST_F_TIMEOUT(mig, data_fds_never_block, 120)
{
	struct pollfd pfd = { .events = POLLIN | POLLOUT };
	uint8_t buf[4096];
	ssize_t n;

	walk(_metadata, &self->p.a, (uint32_t[]){ S_PRE_COPY }, 1, &self->p.fd);
	ASSERT_LE(0, self->p.fd);
	pfd.fd = self->p.fd;
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(!!(pfd.revents & POLLIN));
	/* The pre-copy data, then ENOMSG until STOP_COPY: each read returns at once. */
	do {
		n = read(self->p.fd, buf, sizeof(buf));
	} while (n > 0);
	EXPECT_EQ(-1, n);
	EXPECT_EQ(ENOMSG, errno);
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(!!(pfd.revents & POLLIN));
	walk(_metadata, &self->p.a, (uint32_t[]){ S_RUNNING }, 1, &self->p.fd);
	close(self->p.fd);
	self->p.fd = -1;

	save_a(_metadata, &self->p);
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd2);
	ASSERT_LE(0, self->p.fd2);
	pfd.fd = self->p.fd2;
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(!!(pfd.revents & POLLOUT));
	ASSERT_EQ(0, mig_write_stream(self->p.fd2, self->p.stream, self->p.len, 4096));
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(!!(pfd.revents & POLLOUT));
	walk(_metadata, &self->p.b, (uint32_t[]){ S_STOP, S_RUNNING_P2P, S_RUNNING }, 3,
	     &self->p.fd2);
}

static void get_selectors(struct vu_dev *d, uint32_t sel[3])
{
	sel[0] = vu_read32(d->common + VIRTIO_PCI_COMMON_DFSELECT);
	sel[1] = vu_read32(d->common + VIRTIO_PCI_COMMON_GFSELECT);
	sel[2] = vu_read16(d->common + VIRTIO_PCI_COMMON_Q_SELECT);
}

static const char *const selector_name[3] = {
	"device_feature_select", "driver_feature_select", "queue_select",
};

#define VVMS_SEC_SELECTORS	6
#define BLK_CFG_WRITEBACK	32

/*
 * What the guest left in registers the stream did not describe before: its
 * selectors (it may be between a select and the access it selected for),
 * which saving must leave as they were on A and B must get from the stream,
 * and the cache mode it wrote into the device configuration (writeback, with
 * CONFIG_WCE), which B must get back.
 */
TEST_F_TIMEOUT(mig, guest_registers_carried, 120)
{
	/* Values the driver's own accesses would not leave behind. */
	const uint32_t want[3] = { 1, 0, 0x2a };
	uint32_t got[3];
	struct vu_vq vq;
	long sec;
	int i;

	ASSERT_EQ(0, mig_blk_start(&self->p.a, &vq, 16));
	ASSERT_TRUE(!!(self->p.a.vu.features & 1ULL << VIRTIO_BLK_F_CONFIG_WCE))
		TH_LOG("the device model offers no CONFIG_WCE");
	EXPECT_EQ(1, vu_read8(self->p.a.vu.device + BLK_CFG_WRITEBACK));
	vu_write8(self->p.a.vu.device + BLK_CFG_WRITEBACK, 0);
	ASSERT_EQ(0, vu_read8(self->p.a.vu.device + BLK_CFG_WRITEBACK));
	vu_write32(self->p.a.vu.common + VIRTIO_PCI_COMMON_DFSELECT, want[0]);
	vu_write32(self->p.a.vu.common + VIRTIO_PCI_COMMON_GFSELECT, want[1]);
	vu_write16(self->p.a.vu.common + VIRTIO_PCI_COMMON_Q_SELECT, want[2]);
	get_selectors(&self->p.a.vu, got);
	ASSERT_EQ(0, memcmp(want, got, sizeof(got))) TH_LOG("the device does not keep selectors");

	save_a(_metadata, &self->p);
	get_selectors(&self->p.a.vu, got);
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(want[i], got[i]) TH_LOG("A's %s after saving", selector_name[i]);
	}

	sec = vvms_find_section(self->p.stream, VVMS_SEC_SELECTORS, 0);
	ASSERT_LE(0, sec) TH_LOG("no selectors section in the stream");
	EXPECT_EQ(want[0], vvms_get32(self->p.stream + sec + VVMS_SECTION_HDR_LEN));
	EXPECT_EQ(want[1], vvms_get32(self->p.stream + sec + VVMS_SECTION_HDR_LEN + 4));
	EXPECT_EQ(want[2], vvms_get16(self->p.stream + sec + VVMS_SECTION_HDR_LEN + 8));

	EXPECT_EQ(1, vu_read8(self->p.b.vu.device + BLK_CFG_WRITEBACK));
	walk(_metadata, &self->p.b, to_resuming, N(to_resuming), &self->p.fd2);
	ASSERT_EQ(0, mig_write_stream(self->p.fd2, self->p.stream, self->p.len, 4096));
	walk(_metadata, &self->p.b, (uint32_t[]){ S_STOP }, 1, &self->p.fd2);
	get_selectors(&self->p.b.vu, got);
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(want[i], got[i]) TH_LOG("B's %s after loading", selector_name[i]);
	}
	EXPECT_EQ(0, vu_read8(self->p.b.vu.device + BLK_CFG_WRITEBACK))
		TH_LOG("B's writeback after loading");
	walk(_metadata, &self->p.b, stop_to_running, N(stop_to_running), &self->p.fd2);
}

/* mig_arc: multi-step requests and rejected ones */

FIXTURE(mig_arc) {
	struct pair p;
};

FIXTURE_VARIANT(mig_arc) {
	uint32_t path[4];	/* single arcs from RUNNING to the start state */
	int npath;
	uint32_t target;
	int err;		/* expected errno, 0 for success */
	bool fd;		/* a new data fd is expected */
};

FIXTURE_SETUP(mig_arc)
{
	pair_setup(_metadata, &self->p);
}

FIXTURE_TEARDOWN(mig_arc)
{
	pair_teardown(&self->p);
}

FIXTURE_VARIANT_ADD(mig_arc, running_to_stop) {
	.target = S_STOP,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_stop_copy) {
	.target = S_STOP_COPY, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_resuming) {
	.target = S_RESUMING, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_pre_copy_p2p) {
	.target = S_PRE_COPY_P2P, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_to_running) {
	.path = { S_RUNNING_P2P, S_STOP }, .npath = 2,
	.target = S_RUNNING,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_to_pre_copy) {
	.path = { S_RUNNING_P2P, S_STOP }, .npath = 2,
	.target = S_PRE_COPY, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_copy_to_running) {
	.path = { S_RUNNING_P2P, S_STOP, S_STOP_COPY }, .npath = 3,
	.target = S_RUNNING,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_copy_to_resuming) {
	.path = { S_RUNNING_P2P, S_STOP, S_STOP_COPY }, .npath = 3,
	.target = S_RESUMING, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, resuming_to_running) {
	.path = { S_RUNNING_P2P, S_STOP, S_RESUMING }, .npath = 3,
	.target = S_RUNNING,
};

FIXTURE_VARIANT_ADD(mig_arc, resuming_to_stop_copy) {
	.path = { S_RUNNING_P2P, S_STOP, S_RESUMING }, .npath = 3,
	.target = S_STOP_COPY, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, pre_copy_to_stop_copy) {
	.path = { S_PRE_COPY }, .npath = 1,
	.target = S_STOP_COPY,
};

FIXTURE_VARIANT_ADD(mig_arc, pre_copy_to_stop) {
	.path = { S_PRE_COPY }, .npath = 1,
	.target = S_STOP,
};

FIXTURE_VARIANT_ADD(mig_arc, pre_copy_p2p_to_running) {
	.path = { S_RUNNING_P2P, S_PRE_COPY_P2P }, .npath = 2,
	.target = S_RUNNING,
};

FIXTURE_VARIANT_ADD(mig_arc, running_p2p_to_pre_copy) {
	.path = { S_RUNNING_P2P }, .npath = 1,
	.target = S_PRE_COPY, .fd = true,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_running) {
	.target = S_RUNNING,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_to_stop) {
	.path = { S_RUNNING_P2P, S_STOP }, .npath = 2,
	.target = S_STOP,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_copy_to_pre_copy) {
	.path = { S_RUNNING_P2P, S_STOP, S_STOP_COPY }, .npath = 3,
	.target = S_PRE_COPY, .err = EINVAL,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_copy_to_pre_copy_p2p) {
	.path = { S_RUNNING_P2P, S_STOP, S_STOP_COPY }, .npath = 3,
	.target = S_PRE_COPY_P2P, .err = EINVAL,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_error) {
	.target = S_ERROR, .err = EINVAL,
};

FIXTURE_VARIANT_ADD(mig_arc, stop_to_error) {
	.path = { S_RUNNING_P2P, S_STOP }, .npath = 2,
	.target = S_ERROR, .err = EINVAL,
};

FIXTURE_VARIANT_ADD(mig_arc, running_to_undefined_state) {
	.target = VFIO_DEVICE_STATE_PRE_COPY_P2P + 1, .err = EINVAL,
};

FIXTURE_VARIANT_ADD(mig_arc, resuming_empty_to_stop) {
	.path = { S_RUNNING_P2P, S_STOP, S_RESUMING }, .npath = 3,
	.target = S_STOP, .err = EINVAL,
};

TEST_F_TIMEOUT(mig_arc, request, 120)
{
	struct pair *p = &self->p;
	uint32_t start = variant->npath ? variant->path[variant->npath - 1] : S_RUNNING;
	bool empty = variant->err && start == S_RESUMING;
	uint64_t size = 0;
	size_t pre_len = 0;
	const char *why;
	int fd, ret;

	/* A state to load when leaving RESUMING: the device's own. */
	if (start == S_RESUMING && !empty)
		save_a(_metadata, p);
	walk(_metadata, &p->a, variant->path, variant->npath, &p->fd);
	if (start == S_RESUMING && !empty)
		ASSERT_EQ(0, mig_write_stream(p->fd, p->stream, p->len, 4096));
	if (start == S_PRE_COPY) {
		free(p->stream);
		p->stream = NULL;
		p->len = 0;
		EXPECT_EQ(-ENOMSG, mig_read_stream(p->fd, &p->stream, &p->len));
		pre_len = p->len;
	}

	ret = mig_set_state(&p->a.vd, variant->target, &fd);
	if (variant->err) {
		EXPECT_EQ(-variant->err, ret) TH_LOG("%s -> %s: %s", mig_state_name(start),
						     mig_state_name(variant->target),
						     strerror(-ret));
		EXPECT_EQ(-1, fd);
		/* A rejected request changes nothing. */
		EXPECT_EQ((int)start, get_state(_metadata, &p->a));
		return;
	}
	ASSERT_EQ(0, ret) TH_LOG("%s -> %s: %s", mig_state_name(start),
				 mig_state_name(variant->target), strerror(-ret));
	EXPECT_EQ((int)variant->target, get_state(_metadata, &p->a));
	if (!variant->fd) {
		EXPECT_EQ(-1, fd);
		if (fd >= 0)
			close(fd);
	} else {
		ASSERT_LE(0, fd);
		EXPECT_EQ(variant->target == S_RESUMING ? O_WRONLY : O_RDONLY, fd_access(fd));
		if (p->fd >= 0)
			close(p->fd);
		p->fd = fd;
	}
	if (variant->target == S_STOP_COPY) {
		/* The whole stream: the final frame after any pre-copy data read before. */
		if (start != S_PRE_COPY) {
			free(p->stream);
			p->stream = NULL;
			p->len = 0;
		}
		ret = mig_read_stream(p->fd, &p->stream, &p->len);
		ASSERT_EQ(0, ret) TH_LOG("reading in STOP_COPY: %s", strerror(-ret));
		ASSERT_EQ(0, mig_data_size(&p->a.vd, &size));
		EXPECT_EQ(size, p->len - pre_len);
		EXPECT_EQ((long)(p->len - pre_len),
			  vvms_frame_check(p->stream + pre_len, p->len - pre_len, &why))
			TH_LOG("final frame: %s", why);
	}
	/* And back to RUNNING in one request, unless that is what failed above. */
	if (variant->target == S_RESUMING)
		return;
	ret = mig_set_state(&p->a.vd, S_RUNNING, &fd);
	EXPECT_EQ(0, ret) TH_LOG("%s -> RUNNING: %s", mig_state_name(variant->target),
				 strerror(-ret));
	EXPECT_EQ(-1, fd);
}

/* mig_bad_stream: what B must refuse */

enum bad_kind {
	BAD_NONE,		/* the control: a good stream loads */
	BAD_EMPTY,
	BAD_TRUNCATED,
	BAD_LAST_BYTE_MISSING,
	BAD_BIT_FLIP,
	BAD_MAGIC,
	BAD_VERSION,
	BAD_FRAME_FLAGS,
	BAD_TOTAL_LENGTH,
	BAD_TRAILING_BYTES,
	BAD_PRECOPY_ONLY,
	BAD_TWO_PRECOPY,
	BAD_OVERSIZE_WRITE,
	BAD_TOO_MANY_QUEUES,
	BAD_MISSING_QUEUE,
	BAD_WRONG_DEVICE,
	BAD_WRONG_SUBSYSTEM,
	BAD_FEATURES,
	BAD_EXTRA_QUEUE,
	BAD_QUEUE_TOO_LARGE,
};

FIXTURE(mig_bad_stream) {
	struct pair p;
};

FIXTURE_VARIANT(mig_bad_stream) {
	enum bad_kind kind;
	int err;
};

FIXTURE_SETUP(mig_bad_stream)
{
	pair_setup(_metadata, &self->p);
}

FIXTURE_TEARDOWN(mig_bad_stream)
{
	pair_teardown(&self->p);
}

FIXTURE_VARIANT_ADD(mig_bad_stream, good) { .kind = BAD_NONE };
FIXTURE_VARIANT_ADD(mig_bad_stream, empty) { .kind = BAD_EMPTY, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, truncated) { .kind = BAD_TRUNCATED, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, last_byte_missing) {
	.kind = BAD_LAST_BYTE_MISSING, .err = EINVAL
};
FIXTURE_VARIANT_ADD(mig_bad_stream, bit_flip) { .kind = BAD_BIT_FLIP, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, bad_magic) { .kind = BAD_MAGIC, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, bad_version) { .kind = BAD_VERSION, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, bad_frame_flags) { .kind = BAD_FRAME_FLAGS, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, bad_total_length) {
	.kind = BAD_TOTAL_LENGTH, .err = EINVAL
};
FIXTURE_VARIANT_ADD(mig_bad_stream, trailing_bytes) { .kind = BAD_TRAILING_BYTES, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, precopy_only) { .kind = BAD_PRECOPY_ONLY, .err = EINVAL };
/* The source sends one pre-copy frame at most: more is not a stream it made. */
FIXTURE_VARIANT_ADD(mig_bad_stream, two_precopy) { .kind = BAD_TWO_PRECOPY, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, oversize_write) { .kind = BAD_OVERSIZE_WRITE, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, too_many_queues) {
	.kind = BAD_TOO_MANY_QUEUES, .err = EINVAL
};
FIXTURE_VARIANT_ADD(mig_bad_stream, missing_queue) { .kind = BAD_MISSING_QUEUE, .err = EINVAL };
FIXTURE_VARIANT_ADD(mig_bad_stream, wrong_device) {
	.kind = BAD_WRONG_DEVICE, .err = EOPNOTSUPP
};
FIXTURE_VARIANT_ADD(mig_bad_stream, wrong_subsystem) {
	.kind = BAD_WRONG_SUBSYSTEM, .err = EOPNOTSUPP
};
FIXTURE_VARIANT_ADD(mig_bad_stream, features_not_offered) {
	.kind = BAD_FEATURES, .err = EOPNOTSUPP
};
FIXTURE_VARIANT_ADD(mig_bad_stream, extra_queue) { .kind = BAD_EXTRA_QUEUE, .err = EOPNOTSUPP };
FIXTURE_VARIANT_ADD(mig_bad_stream, queue_too_large) {
	.kind = BAD_QUEUE_TOO_LARGE, .err = EOPNOTSUPP
};

/* Payload of the first section of @type in @frame. */
static uint8_t *payload(struct __test_metadata *_metadata, uint8_t *frame, uint16_t type)
{
	long off = vvms_find_section(frame, type, 0);

	EXPECT_LT(0, off) TH_LOG("no section of type %u", type);
	return off < 0 ? frame : frame + off + VVMS_SECTION_HDR_LEN;
}

/* Damage the saved stream @s (one final frame) of *len bytes as @kind says. */
static uint8_t *make_bad(struct __test_metadata *_metadata, const uint8_t *s, size_t *len,
			 enum bad_kind kind)
{
	size_t n = *len;
	uint8_t *b = malloc(n + 256);
	uint8_t *id;
	long q, cfg;
	uint16_t nq;

	if (!b)
		return NULL;
	memcpy(b, s, n);
	id = b + VVMS_HEADER_LEN + VVMS_SECTION_HDR_LEN;
	switch (kind) {
	case BAD_NONE:
	case BAD_OVERSIZE_WRITE:
		break;
	case BAD_EMPTY:
		n = 0;
		break;
	case BAD_TRUNCATED:
		n /= 2;
		break;
	case BAD_LAST_BYTE_MISSING:
		n--;
		break;
	case BAD_BIT_FLIP:
		b[n / 2 + 3] ^= 0x10;
		break;
	case BAD_MAGIC:
		b[0] = 'X';
		vvms_frame_fix_crc(b);
		break;
	case BAD_VERSION:
		vvms_put16(b + 4, 2);
		vvms_frame_fix_crc(b);
		break;
	case BAD_FRAME_FLAGS:
		vvms_put16(b + 6, VVMS_FRAME_FINAL | VVMS_FRAME_PRECOPY);
		vvms_frame_fix_crc(b);
		break;
	case BAD_TOTAL_LENGTH:
		vvms_put32(b + 8, VVMS_MAX_FRAME_LEN + 8);
		break;
	case BAD_TRAILING_BYTES:
		memset(b + n, 0, 8);
		n += 8;
		break;
	case BAD_PRECOPY_ONLY:
		/* Header and identity section as a pre-copy frame, no final frame. */
		n = VVMS_HEADER_LEN + VVMS_SECTION_HDR_LEN + 32 + VVMS_CRC_LEN;
		vvms_put16(b + 6, VVMS_FRAME_PRECOPY);
		vvms_put32(b + 8, n);
		vvms_frame_fix_crc(b);
		break;
	case BAD_TWO_PRECOPY: {
		/* Two pre-copy frames (header and identity section), then the final frame. */
		size_t pre = VVMS_HEADER_LEN + VVMS_SECTION_HDR_LEN + 32 + VVMS_CRC_LEN;
		uint8_t *two = realloc(b, 2 * pre + n);

		if (!two)
			break;
		b = two;
		memmove(b + 2 * pre, b, n);
		memcpy(b, b + 2 * pre, pre - VVMS_CRC_LEN);
		vvms_put16(b + 6, VVMS_FRAME_PRECOPY);
		vvms_put32(b + 8, pre);
		vvms_frame_fix_crc(b);
		memcpy(b + pre, b, pre);
		n += 2 * pre;
		break;
	}
	case BAD_TOO_MANY_QUEUES:
		vvms_put16(id + VVMS_ID_NUM_QUEUES, 1025);
		vvms_frame_fix_crc(b);
		break;
	case BAD_MISSING_QUEUE:
		/* Drop the last queue section. */
		nq = vvms_get16(id + VVMS_ID_NUM_QUEUES);
		q = vvms_find_section(b, VVMS_SEC_QUEUE, nq - 1);
		EXPECT_LT(0, q);
		if (q < 0)
			break;
		memmove(b + q, b + q + VVMS_SECTION_HDR_LEN + 40,
			n - q - VVMS_SECTION_HDR_LEN - 40);
		n -= VVMS_SECTION_HDR_LEN + 40;
		vvms_put32(b + 8, n);
		vvms_frame_fix_crc(b);
		break;
	case BAD_WRONG_DEVICE:
		/* A virtio-net function. */
		vvms_put32(id + VVMS_ID_DEVICE_TYPE, 1);
		vvms_put16(id + VVMS_ID_DEVICE_ID, 0x1041);
		vvms_frame_fix_crc(b);
		break;
	case BAD_WRONG_SUBSYSTEM:
		vvms_put16(id + 10, 0x1101);
		vvms_frame_fix_crc(b);
		break;
	case BAD_FEATURES:
		/* The driver negotiated a feature B does not offer. */
		id = payload(_metadata, b, VVMS_SEC_DRIVER_STATE);
		vvms_put64(id + VVMS_DS_DRIVER_FEATURES,
			   vvms_get64(id + VVMS_DS_DRIVER_FEATURES) | 1ULL << 63);
		vvms_frame_fix_crc(b);
		break;
	case BAD_EXTRA_QUEUE:
		/* One queue more than B has, fully described. */
		nq = vvms_get16(id + VVMS_ID_NUM_QUEUES);
		q = vvms_find_section(b, VVMS_SEC_QUEUE, nq - 1);
		cfg = vvms_find_section(b, VVMS_SEC_DEVICE_CONFIG, 0);
		EXPECT_LT(0, q);
		EXPECT_LT(0, cfg);
		if (q < 0 || cfg < 0)
			break;
		memmove(b + cfg + 48, b + cfg, n - cfg);
		memcpy(b + cfg, b + q, 48);
		vvms_put16(b + cfg + VVMS_SECTION_HDR_LEN + VVMS_Q_INDEX, nq);
		vvms_put16(b + cfg + VVMS_SECTION_HDR_LEN + VVMS_Q_ENABLE, 0);
		vvms_put16(id + VVMS_ID_NUM_QUEUES, nq + 1);
		n += 48;
		vvms_put32(b + 8, n);
		vvms_frame_fix_crc(b);
		break;
	case BAD_QUEUE_TOO_LARGE:
		q = vvms_find_section(b, VVMS_SEC_QUEUE, 0);
		EXPECT_LT(0, q);
		if (q < 0)
			break;
		vvms_put16(b + q + VVMS_SECTION_HDR_LEN + 2, 0x8000);
		vvms_frame_fix_crc(b);
		break;
	}
	*len = n;
	return b;
}

TEST_F_TIMEOUT(mig_bad_stream, load, 120)
{
	const uint8_t marker = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	struct pair *p = &self->p;
	struct regs src, dst;
	uint8_t *bad;
	size_t len;
	struct vu_vq vq;
	bool refused = false;
	uint32_t state;
	int ret;

	/* A configured source: DRIVER_OK, one queue. */
	ASSERT_EQ(0, mig_blk_start(&p->a, &vq, 16));
	read_regs(&p->a.vu, &src);
	save_a(_metadata, p);
	len = p->len;
	bad = make_bad(_metadata, p->stream, &len, variant->kind);
	ASSERT_NE(NULL, bad);
	if (variant->kind != BAD_NONE && variant->kind != BAD_OVERSIZE_WRITE)
		ASSERT_TRUE(len != p->len || memcmp(bad, p->stream, len));

	/* B in a state of its own to show it is left alone. */
	ASSERT_EQ(0, vu_reset(&p->b.vu, MIG_RESET_TIMEOUT_MS));
	vu_set_status(&p->b.vu, marker);
	walk(_metadata, &p->b, to_resuming, N(to_resuming), &p->fd);
	ASSERT_LE(0, p->fd);

	if (variant->kind == BAD_OVERSIZE_WRITE) {
		size_t max = VVMS_MAX_RESUME_LEN;
		uint8_t *big = calloc(1, max + 1);

		ASSERT_NE(NULL, big);
		errno = 0;
		EXPECT_EQ(-1, write(p->fd, big, max + 1));
		EXPECT_EQ(EFBIG, errno) TH_LOG("write of %zu bytes: %s", max + 1, strerror(errno));
		/* Up to the limit is taken, one byte more is not. */
		memcpy(big, bad, len);
		EXPECT_EQ(0, mig_write_stream(p->fd, big, max, 65536));
		errno = 0;
		EXPECT_EQ(-1, write(p->fd, big, 1));
		EXPECT_EQ(EFBIG, errno) TH_LOG("write past %zu bytes: %s", max, strerror(errno));
		free(big);
	} else if (len) {
		/* The driver may refuse a frame as soon as it is complete, or at the end. */
		ret = mig_write_stream(p->fd, bad, len, 4096);
		if (!variant->err)
			ASSERT_EQ(0, ret) TH_LOG("write: %s", strerror(-ret));
		if (ret) {
			TH_LOG("refused by write(): %s", strerror(-ret));
			EXPECT_EQ(-variant->err, ret) TH_LOG("write: %s, expected %s",
							     strerror(-ret), strerror(variant->err));
			refused = true;
		}
	}
	free(bad);

	ret = mig_set_state(&p->b.vd, S_STOP, NULL);
	if (!variant->err) {
		ASSERT_EQ(0, ret) TH_LOG("RESUMING -> STOP: %s", strerror(-ret));
		walk(_metadata, &p->b, stop_to_running, N(stop_to_running), &p->fd);
		read_regs(&p->b.vu, &dst);
		expect_same_regs(_metadata, &src, &dst);
	} else if (refused) {
		/* Whatever it says now, the stream was not taken. */
		EXPECT_NE(0, ret) TH_LOG("RESUMING -> STOP after a refused write succeeded");
	} else {
		EXPECT_EQ(-variant->err, ret) TH_LOG("RESUMING -> STOP: %s, expected %s",
						     strerror(-ret), strerror(variant->err));
		state = get_state(_metadata, &p->b);
		TH_LOG("B after the rejected stream: %s", mig_state_name(state));
		EXPECT_TRUE(state == S_RESUMING || state == S_ERROR);
		/* B untouched: its own status, no queue. */
		read_regs(&p->b.vu, &dst);
		EXPECT_EQ(marker, dst.status);
		EXPECT_EQ(0, dst.q_enable);
		/* The kernel stays in one piece when the fd is used again. */
		ret = mig_set_state(&p->b.vd, S_STOP, NULL);
		EXPECT_NE(0, ret);
	}

	/* Reset, and B works. */
	ASSERT_EQ(0, mig_dev_reset(&p->b));
	EXPECT_EQ(S_RUNNING, get_state(_metadata, &p->b));
	EXPECT_EQ(0, mig_blk_io_check(&p->b, 128, IO_LEN, getpid()));
	vu_vq_release(&vq);
}

int main(int argc, char **argv)
{
	char found[8][VD_BDF_LEN], driver[64];
	const char *bdfs[2] = { bdf_a, bdf_b };
	char *c;
	int n, i;

	/* Two leading arguments that are not options name the functions. */
	if (argc > 2 && argv[1][0] != '-' && argv[2][0] != '-') {
		snprintf(bdf_a, sizeof(bdf_a), "%s", argv[1]);
		snprintf(bdf_b, sizeof(bdf_b), "%s", argv[2]);
		argv[2] = argv[0];
		argv += 2;
		argc -= 2;
	} else {
		n = vd_find(DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS, found, 8);
		if (n >= 2) {
			snprintf(bdf_a, sizeof(bdf_a), "%s", found[0]);
			snprintf(bdf_b, sizeof(bdf_b), "%s", found[1]);
		} else {
			snprintf(skip_reason, sizeof(skip_reason),
				 "%d virtio-devsim functions (%04x:%04x subsystem %04x), need 2",
				 n < 0 ? 0 : n, DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS);
		}
	}
	for (i = 0; i < 2 && !skip_reason[0]; i++) {
		vd_driver(bdfs[i], driver, sizeof(driver));
		for (c = driver; *c; c++)
			if (*c == '-')
				*c = '_';
		if (strcmp(driver, MIG_DRIVER))
			snprintf(skip_reason, sizeof(skip_reason),
				 "%s is bound to '%s', not " MIG_DRIVER, bdfs[i], driver);
	}
	return test_harness_run(argc, argv);
}
