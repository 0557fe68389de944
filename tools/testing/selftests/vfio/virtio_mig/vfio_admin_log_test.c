// SPDX-License-Identifier: GPL-2.0
/*
 * Device dirty-page logging of virtio_vfio_mig through the admin write
 * recording backend (Documentation/driver-api/virtio/admin-write-recording.rst):
 * VFIO_DEVICE_FEATURE_DMA_LOGGING_START, _STOP and _REPORT on a member
 * function whose owner function is bound to virtio_mig_owner, checked against
 * the pages the member really writes.
 *
 * In the test VM (tools/testing/vm/run-vm.sh --owners) device-model instance
 * I is the multifunction slot 0x10+I: function 0 the owner, function 1 the
 * member. The owner records the member's writes and the driver harvests them
 * with admin commands, so unlike vfio_dirty_log_test this works behind an
 * IOMMU too, and needs no memory-tracker capability on the member. Behind an
 * IOMMU the test maps its memory at a fixed IOVA, and above_4g moves it above
 * 4 GiB; in no-IOMMU mode IOVAs are physical addresses, below 4 GiB in the
 * VM, and above_4g adds idle ranges above 4 GiB instead.
 *
 * Device writes come from virtio-blk reads: the data buffers, the status
 * bytes and the used ring. A report must hold every page written and, unless
 * the case says otherwise, no page the device was not given.
 *
 * Usage: vfio_admin_log_test MEMBER_BDF [--expect WHAT] [--capacity N]
 *                            [--unbind-owner OWNER_BDF] [harness options]
 *
 * The test cannot start the device model; the guest script does, and tells
 * the test what the device does with --expect (default "normal"); the cases
 * of other expectations skip:
 *   normal       a healthy owner (record capacity of at least 1024 pages):
 *                exact reports at 4 KiB and 2 MiB, a second report holds
 *                nothing new, above 4 GiB, part of a range, records kept
 *                across member resets, harvest while the device writes
 *   no-backend   the member was bound before its owner: no admin backend, so
 *                (with devsim --no-tracker) START must fail
 *   overflow     devsim --record-capacity N (--capacity N, default 4): after
 *                more than N distinct pages were written, every page of every
 *                logged range is reported dirty; then exact again
 *   hang         devsim --fault-admin-hang OPCODE (READ or START): START or
 *                REPORT fails within a bounded time, and the next REPORT
 *                reports the whole range dirty; nothing hangs
 *   status       devsim --fault-admin-status OPCODE: as hang, the command
 *                completes with an error status instead
 *   stray        devsim --fault-stray-records: a REPORT whose result held a
 *                record outside the window reports the whole window dirty
 *   owner-reset  devsim --fault-owner-reset-after-reads N: each range is
 *                reported whole once after the reset, then exactly again
 *   unbound      with --unbind-owner OWNER_BDF: the test unbinds the owner
 *                while logging; REPORT fails with ENODEV quickly, STOP works.
 *                The caller binds the owner again afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "../../kselftest_harness.h"
#include "dirty_log_race.h"
#include "dirty_log_util.h"
#include "vfio_dev.h"
#include "virtio_user.h"

#define DRIVER			"virtio_vfio_mig"
#define VIRTIO_BAR		4

#define REQUEST_TIMEOUT_MS	10000
#define RESET_TIMEOUT_MS	5000
/* What "bounded" means for a call that meets a hung or reset owner. */
#define BOUND_MS		10000ULL

#define SZ_4K			4096ULL
#define SZ_2M			(2ULL << 20)
#define SZ_1G			(1ULL << 30)
#define SZ_4G			(4ULL << 30)
/* Behind an IOMMU, above_4g maps the test's memory here. */
#define HIGH_IOVA		(6ULL << 30)

/* DMA memory: two 2 MiB pages; everything the device may write is in the first. */
#define MEM_SIZE		(2 * SZ_2M)
#define QUEUE_SIZE		128
#define NREQ			32	/* three descriptors each: fit QUEUE_SIZE */
#define NBUF			256	/* 4 KiB data buffers */
#define MAX_RINGS		4

enum expect {
	EXPECT_NORMAL,
	EXPECT_NO_BACKEND,
	EXPECT_OVERFLOW,
	EXPECT_HANG,
	EXPECT_STATUS,
	EXPECT_STRAY,
	EXPECT_OWNER_RESET,
	EXPECT_UNBOUND,
};

static const char *const expect_names[] = {
	[EXPECT_NORMAL] = "normal",
	[EXPECT_NO_BACKEND] = "no-backend",
	[EXPECT_OVERFLOW] = "overflow",
	[EXPECT_HANG] = "hang",
	[EXPECT_STATUS] = "status",
	[EXPECT_STRAY] = "stray",
	[EXPECT_OWNER_RESET] = "owner-reset",
	[EXPECT_UNBOUND] = "unbound",
};

static char bdf[VD_BDF_LEN];
static char owner_bdf[VD_BDF_LEN];
static char skip_reason[256];
static enum expect expect = EXPECT_NORMAL;
static unsigned int capacity = 4;

FIXTURE(admin_log) {
	struct vd dev;
	struct vu_mem mem;
	struct vu_caps caps;
	struct vu_dev vdev;
	struct vu_vq vq;
	bool vq_up;
	struct vring_used *used[MAX_RINGS];	/* every used ring the device had */
	unsigned int nused;
	struct vu_blk_req *req[NREQ];
	uint8_t *buf[NBUF];
	uint64_t capacity;
	struct dl_set set;
	bool logging;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* Whether the device model was started for @what; the case skips otherwise. */
static bool expecting(struct __test_metadata *_metadata, enum expect what)
{
	if (expect == what)
		return true;
	SKIP(return false, "for --expect %s (this run: %s)", expect_names[what],
	     expect_names[expect]);
}

static void enable_device(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self)
{
	uint16_t cmd;

	ASSERT_EQ(0, vd_config_read(&self->dev, PCI_COMMAND, &cmd, 2));
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	ASSERT_EQ(0, vd_config_write(&self->dev, PCI_COMMAND, &cmd, 2));
}

/* Reset the virtio device and bring queue 0 up on fresh rings. */
static void virtio_up(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self)
{
	struct vu_dev *d = &self->vdev;
	int ret;

	if (self->vq_up)
		vu_vq_release(&self->vq);
	self->vq_up = false;
	ASSERT_EQ(0, vu_reset(d, RESET_TIMEOUT_MS));
	ASSERT_EQ(0, vu_negotiate(d, 1ULL << VIRTIO_F_ACCESS_PLATFORM |
				  1ULL << VIRTIO_RING_F_EVENT_IDX, 1ULL << VIRTIO_F_VERSION_1));
	ret = vu_vq_setup(d, &self->vq, 0, QUEUE_SIZE);
	ASSERT_EQ(0, ret) TH_LOG("queue setup: %s", strerror(-ret));
	ASSERT_GT(MAX_RINGS, (int)self->nused);
	self->used[self->nused++] = self->vq.used;
	self->vq_up = true;
	vu_driver_ok(d);
	self->capacity = vu_cfg_read64(d, 0);
	ASSERT_LE(NBUF * SZ_4K / VU_SECTOR_SIZE, self->capacity);
}

FIXTURE_SETUP(admin_log)
{
	uint8_t cfg[256];
	unsigned int i;
	int ret;

	self->dev.fd = self->dev.group = self->dev.container = self->dev.iommufd = -1;
	if (skip_reason[0])
		SKIP(return, "%s", skip_reason);
	ret = vd_open(&self->dev, bdf, VD_GROUP);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s", bdf, self->dev.err);
	ASSERT_EQ(0, vd_config_read(&self->dev, 0, cfg, sizeof(cfg)));
	ASSERT_EQ(0, vu_parse_caps(cfg, sizeof(cfg), &self->caps));
	enable_device(_metadata, self);
	ASSERT_NE(NULL, vd_map_bar(&self->dev, VIRTIO_BAR)) TH_LOG("%s", self->dev.err);

	ASSERT_EQ(0, vu_mem_alloc(&self->mem, MEM_SIZE));
	ret = vd_dma_map(&self->dev, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("%s", self->dev.err);
	ASSERT_EQ(0, vu_dev_init(&self->vdev, self->dev.bar, self->dev.bar_size,
				 &self->caps, &self->mem));
	virtio_up(_metadata, self);
	for (i = 0; i < NREQ; i++) {
		self->req[i] = vu_blk_req_alloc(&self->mem, 0);
		ASSERT_NE(NULL, self->req[i]);
	}
	for (i = 0; i < NBUF; i++) {
		self->buf[i] = vu_mem_zalloc(&self->mem, SZ_4K, SZ_4K);
		ASSERT_NE(NULL, self->buf[i]);
	}
	/* Nothing the device may write lies in the second 2 MiB. */
	ASSERT_GE(SZ_2M, self->mem.next);
}

FIXTURE_TEARDOWN(admin_log)
{
	if (self->logging)
		dl_stop(self->dev.fd);
	if (self->vq_up) {
		vu_reset(&self->vdev, RESET_TIMEOUT_MS);
		vu_vq_release(&self->vq);
	}
	dl_set_free(&self->set);
	vd_close(&self->dev);
	if (self->mem.va)
		vu_mem_free(&self->mem);
}

/* Ranges over the DMA memory, 2 MiB aligned, with a 2 MiB guard either side. */
static void track_mem(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	size_t i;

	self->set.n = 0;
	if (dl_add_mem(&self->set, &self->mem, SZ_2M, SZ_2M) != -E2BIG)
		return;
	/* Scattered 4 KiB pages: one range from the lowest to the highest. */
	for (i = 0; i < self->mem.size / VU_PAGE_SIZE; i++) {
		lo = self->mem.iova[i] < lo ? self->mem.iova[i] : lo;
		hi = self->mem.iova[i] > hi ? self->mem.iova[i] : hi;
	}
	lo &= ~(SZ_2M - 1);
	lo = lo > SZ_2M ? lo - SZ_2M : 0;
	hi = (hi + SZ_2M) & ~(SZ_2M - 1);
	self->set.n = 0;
	ASSERT_EQ(0, dl_add_range(&self->set, lo, hi + SZ_2M - lo));
}

static uint64_t set_end(const struct dl_set *s)
{
	return s->r[s->n - 1].iova + s->r[s->n - 1].len;
}

/*
 * START over self->set at @page_size, which the driver must keep (the
 * device records 4 KiB pages and the driver can report any multiple), and
 * allocate report bitmaps at it.
 */
static void start(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
		  uint64_t page_size)
{
	uint64_t want = page_size;
	int ret;

	ret = dl_start(self->dev.fd, self->set.r, self->set.n, &page_size);
	ASSERT_EQ(0, ret) TH_LOG("START: %s", strerror(-ret));
	self->logging = true;
	ASSERT_EQ(want, page_size) TH_LOG("START returned page size %#llx",
					  (unsigned long long)page_size);
	self->set.page_size = page_size;
	dl_set_free(&self->set);
	ASSERT_EQ(0, dl_set_alloc(&self->set));
}

static void stop(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self)
{
	ASSERT_EQ(0, dl_stop(self->dev.fd));
	self->logging = false;
}

/*
 * Read sectors into data buffers, in one batch: request i reads @len bytes
 * (at most 4 KiB, or the whole run of buffers from @buf onwards when larger)
 * at @off into buffer @buf.
 */
struct io {
	unsigned int buf;
	uint32_t off;
	uint32_t len;
};

static void blk_read(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
		     const struct io *io, unsigned int n)
{
	unsigned int i;
	int ret;

	ASSERT_GE(NREQ, (int)n);
	for (i = 0; i < n; i++) {
		struct vu_blk_req *r = self->req[i];

		ASSERT_LE(io[i].buf * SZ_4K + io[i].off + io[i].len, NBUF * SZ_4K);
		r->data = self->buf[io[i].buf] + io[i].off;
		r->len = io[i].len;
		ASSERT_EQ(0, vu_blk_submit(&self->vq, r, VIRTIO_BLK_T_IN,
					   (i * 8) % (self->capacity - 64)));
	}
	vu_vq_kick(&self->vq);
	ret = vu_blk_wait_all(&self->vq, REQUEST_TIMEOUT_MS);
	ASSERT_EQ(0, ret) TH_LOG("reads: %s", strerror(-ret));
	for (i = 0; i < n; i++)
		ASSERT_EQ(VIRTIO_BLK_S_OK, self->req[i]->status);
}

/* Add the pages the device wrote for @io, at @page_size: data, status, used ring index. */
static void written_pages(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
			  const struct io *io, unsigned int n, uint64_t page_size,
			  struct dl_pages *p)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		ASSERT_EQ(0, dl_pages_add(p, &self->mem, self->buf[io[i].buf] + io[i].off,
					  io[i].len, page_size));
		ASSERT_EQ(0, dl_pages_add(p, &self->mem, &self->req[i]->status, 1, page_size));
	}
	ASSERT_EQ(0, dl_pages_add(p, &self->mem, &self->vq.used->idx, 2, page_size));
	dl_pages_finish(p);
}

/* Everything the device may write: every data buffer and request, every used ring. */
static void allowed_pages(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
			  uint64_t gran, struct dl_pages *p)
{
	size_t used_len = sizeof(struct vring_used) +
			  QUEUE_SIZE * sizeof(struct vring_used_elem) + 2;
	unsigned int i;

	ASSERT_EQ(0, dl_pages_add(p, &self->mem, self->buf[0], NBUF * SZ_4K, gran));
	for (i = 0; i < NREQ; i++)
		ASSERT_EQ(0, dl_pages_add(p, &self->mem, self->req[i], sizeof(*self->req[i]),
					  gran));
	for (i = 0; i < self->nused; i++)
		ASSERT_EQ(0, dl_pages_add(p, &self->mem, self->used[i], used_len, gran));
	dl_pages_finish(p);
}

/* Bit @bit of a report bitmap. */
static bool bit_set(const uint64_t *bitmap, uint64_t bit)
{
	return bitmap[bit / 64] >> (bit % 64) & 1;
}

/* Whether every page of range @i is set in @bitmap (a report of the whole range). */
static bool range_all_dirty(const struct dl_set *s, unsigned int i, const uint64_t *bitmap)
{
	uint64_t bits = s->r[i].len / s->page_size, bit;

	for (bit = 0; bit < bits; bit++)
		if (!bit_set(bitmap, bit))
			return false;
	return true;
}

/*
 * Range @i's report @bitmap holds every page of @required in the range and
 * only pages of @allowed (any page when @allowed is NULL). Returns the number
 * of dirty pages; counts what is wrong in *@bad (pages never given) and
 * *@missing (pages written, not set).
 */
static uint64_t check_range(struct __test_metadata *_metadata, const struct dl_set *s,
			    unsigned int i, const uint64_t *bitmap,
			    const struct dl_pages *required, const struct dl_pages *allowed,
			    unsigned int *bad, unsigned int *missing)
{
	uint64_t bits = s->r[i].len / s->page_size, bit, dirty = 0;
	size_t k;

	for (bit = 0; bit < bits; bit++) {
		uint64_t at = s->r[i].iova + bit * s->page_size;

		if (!bit_set(bitmap, bit))
			continue;
		dirty++;
		if (!allowed || dl_pages_has(allowed, at))
			continue;
		if ((*bad)++ < 8)
			TH_LOG("page %#llx reported dirty; the device was never given it",
			       (unsigned long long)at);
	}
	for (k = 0; k < required->n; k++) {
		uint64_t at = required->page[k];

		if (dl_find(s, at) != (int)i)
			continue;
		if (bit_set(bitmap, (at - s->r[i].iova) / s->page_size))
			continue;
		if ((*missing)++ < 8)
			TH_LOG("page %#llx written by the device but not reported",
			       (unsigned long long)at);
	}
	return dirty;
}

/* The accumulated reports hold every page of @required and only pages of @allowed. */
static uint64_t check_acc(struct __test_metadata *_metadata, const struct dl_set *s,
			  const struct dl_pages *required, const struct dl_pages *allowed)
{
	unsigned int i, bad = 0, missing = 0, untracked = 0;
	uint64_t dirty = 0;
	size_t k;

	for (i = 0; i < s->n; i++)
		dirty += check_range(_metadata, s, i, s->acc[i], required, allowed, &bad,
				     &missing);
	for (k = 0; k < required->n; k++)
		if (dl_find(s, required->page[k]) < 0 && untracked++ < 8)
			TH_LOG("page %#llx written by the device is not tracked",
			       (unsigned long long)required->page[k]);
	EXPECT_EQ(0U, bad) TH_LOG("%u pages reported that the device never had", bad);
	EXPECT_EQ(0U, missing + untracked)
		TH_LOG("%u of %zu written pages missing from the report", missing + untracked,
		       required->n);
	return dirty;
}

/* Every page of every range set in the accumulated reports. */
static void expect_all_dirty(struct __test_metadata *_metadata, const struct dl_set *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++)
		EXPECT_TRUE(range_all_dirty(s, i, s->acc[i]))
			TH_LOG("range %#llx+%#llx: not every page reported dirty",
			       (unsigned long long)s->r[i].iova,
			       (unsigned long long)s->r[i].len);
}

/* One REPORT of every range; asserts it is clean. */
static void expect_clean(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
			 const char *when)
{
	long dirty;

	dl_acc_clear(&self->set);
	dirty = dl_report_all(self->dev.fd, &self->set);
	ASSERT_LE(0, dirty) TH_LOG("REPORT %s: %s", when, strerror(-dirty));
	EXPECT_EQ(0, dirty) TH_LOG("%s: %ld pages reported dirty", when, dirty);
}

/* Reads of @io, then one REPORT of every range: exactly the pages written. */
static void expect_exact(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
			 const struct io *io, unsigned int n)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t dirty;

	blk_read(_metadata, self, io, n);
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	written_pages(_metadata, self, io, n, self->set.page_size, &required);
	allowed_pages(_metadata, self, self->set.page_size, &allowed);
	dirty = check_acc(_metadata, &self->set, &required, &allowed);
	TH_LOG("%llu pages of %#llx dirty, %zu written pages expected",
	       (unsigned long long)dirty, (unsigned long long)self->set.page_size, required.n);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

static const struct io exact_io[] = {
	{ 0, 0, 4096 },
	{ 2, 0, 4096 },
	{ 5, 0, 4096 },
	{ 7, 1024, 512 },		/* part of a page */
	{ 10, 0, 3 * 4096 },		/* three pages in one request */
	{ 20, 2048, 4096 },		/* straddles two pages */
	{ 200, 0, 4096 },
	{ NBUF - 1, 3584, 512 },	/* last sector of the last buffer */
};

/* One request, one data page: with its status byte and used ring, at most 3 pages. */
static const struct io small_io[] = {
	{ 0, 0, 4096 },
};

static void report_exact(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
			 uint64_t page_size)
{
	track_mem(_metadata, self);
	start(_metadata, self, page_size);
	TH_LOG("%u ranges from %#llx to %#llx, page size %#llx, %s", self->set.n,
	       (unsigned long long)self->set.r[0].iova,
	       (unsigned long long)set_end(&self->set), (unsigned long long)page_size,
	       self->dev.noiommu ? "no-IOMMU" : "behind an IOMMU");
	expect_clean(_metadata, self, "right after START");
	expect_exact(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	stop(_metadata, self);
}

TEST_F(admin_log, report_exact_4k)
{
	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	report_exact(_metadata, self, SZ_4K);
}

TEST_F(admin_log, report_exact_2m)
{
	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	report_exact(_metadata, self, SZ_2M);
}

/* A report clears what it returned: the next one, with the device idle, is clean. */
TEST_F(admin_log, report_again_clean)
{
	long dirty;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dirty = dl_report_all(self->dev.fd, &self->set);
	ASSERT_LT(0, dirty) TH_LOG("the first REPORT after I/O: %ld", dirty);
	expect_clean(_metadata, self, "the second REPORT");
	usleep(100 * 1000);
	expect_clean(_metadata, self, "a REPORT after 100 ms idle");
	stop(_metadata, self);
}

/* Behind an IOMMU, move the test's memory to @iova (the device idle meanwhile). */
static void remap(struct __test_metadata *_metadata, FIXTURE_DATA(admin_log) *self,
		  uint64_t iova)
{
	int ret;

	ASSERT_EQ(0, vu_reset(&self->vdev, RESET_TIMEOUT_MS));
	vd_dma_unmap(&self->dev);
	self->dev.dma_iova = iova;
	ret = vd_dma_map(&self->dev, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("map at %#llx: %s", (unsigned long long)iova, self->dev.err);
	/* Fresh rings at the new addresses. */
	virtio_up(_metadata, self);
}

/*
 * Records above 4 GiB: behind an IOMMU the device writes there; in no-IOMMU
 * mode (the VM's memory is below 4 GiB) ranges far above it report clean
 * while the low ones still report exactly.
 */
TEST_F(admin_log, above_4g)
{
	unsigned int i;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	if (!self->dev.noiommu)
		remap(_metadata, self, HIGH_IOVA);
	track_mem(_metadata, self);
	if (self->dev.noiommu) {
		ASSERT_GE(SZ_4G, set_end(&self->set));
	} else {
		ASSERT_LT(SZ_4G, self->set.r[0].iova);
	}
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_1G));
	ASSERT_EQ(0, dl_add_range(&self->set, 16 * SZ_1G, SZ_2M));
	start(_metadata, self, SZ_4K);
	TH_LOG("%u ranges up to %#llx, DMA memory at %#llx", self->set.n,
	       (unsigned long long)set_end(&self->set),
	       (unsigned long long)vu_mem_iova(&self->mem, self->mem.va));
	expect_clean(_metadata, self, "right after START");
	expect_exact(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	/* The idle high ranges are clean: checked by expect_exact's "never given". */
	for (i = 0; i < self->set.n; i++)
		TH_LOG("range %#llx+%#llx", (unsigned long long)self->set.r[i].iova,
		       (unsigned long long)self->set.r[i].len);
	stop(_metadata, self);
}

/*
 * A REPORT of part of a range returns the pages written there and leaves
 * the others for a later REPORT, which does not return the first part again.
 */
TEST_F(admin_log, report_part_of_range)
{
	struct dl_pages required = {}, allowed = {};
	unsigned int bad = 0, missing = 0, again = 0;
	uint64_t split, *part, bits, bit, ps;
	size_t k, in_range = 0, first = 0;
	struct dl_range *r;
	int i, ret;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	ps = self->set.page_size;
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), ps, &required);
	allowed_pages(_metadata, self, ps, &allowed);

	/* Split the range holding buffer 0 in the middle of its written pages. */
	i = dl_find(&self->set, vu_mem_iova(&self->mem, self->buf[0]));
	ASSERT_LE(0, i);
	r = &self->set.r[i];
	for (k = 0; k < required.n; k++) {
		if (dl_find(&self->set, required.page[k]) != i)
			continue;
		if (!in_range++)
			first = k;
	}
	ASSERT_LE((size_t)2, in_range);
	split = required.page[first + in_range / 2];
	TH_LOG("range %#llx+%#llx: REPORT [%#llx, %#llx) first, %zu written pages in the range",
	       (unsigned long long)r->iova, (unsigned long long)r->len,
	       (unsigned long long)r->iova, (unsigned long long)split, in_range);

	part = calloc(1, dl_bitmap_bytes(split - r->iova, ps));
	ASSERT_NE(NULL, part);
	ret = dl_report(self->dev.fd, r->iova, split - r->iova, ps, part);
	ASSERT_EQ(0, ret) TH_LOG("REPORT of the first part: %s", strerror(-ret));
	bits = (split - r->iova) / ps;
	for (bit = 0; bit < bits; bit++)
		if (bit_set(part, bit) && !dl_pages_has(&allowed, r->iova + bit * ps) &&
		    bad++ < 8)
			TH_LOG("page %#llx reported dirty; the device was never given it",
			       (unsigned long long)(r->iova + bit * ps));
	for (k = first; k < first + in_range; k++)
		if (required.page[k] < split &&
		    !bit_set(part, (required.page[k] - r->iova) / ps) && missing++ < 8)
			TH_LOG("page %#llx written but not in the first REPORT",
			       (unsigned long long)required.page[k]);

	/* The whole range now: the rest, and nothing of the first part. */
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	for (bit = 0; bit < bits; bit++)
		if (bit_set(self->set.acc[i], bit) && again++ < 8)
			TH_LOG("page %#llx reported by both REPORTs",
			       (unsigned long long)(r->iova + bit * ps));
	for (k = first; k < first + in_range; k++)
		if (required.page[k] >= split &&
		    !bit_set(self->set.acc[i], (required.page[k] - r->iova) / ps) &&
		    missing++ < 8)
			TH_LOG("page %#llx written but not in the second REPORT",
			       (unsigned long long)required.page[k]);
	EXPECT_EQ(0U, bad);
	EXPECT_EQ(0U, missing);
	EXPECT_EQ(0U, again) TH_LOG("%u pages of the first part reported again", again);
	free(part);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
	stop(_metadata, self);
}

/* Every buffer written before one REPORT: more records than one small READ result holds. */
TEST_F(admin_log, many_pages)
{
	struct io io[NREQ];
	struct dl_pages required = {}, allowed = {};
	unsigned int round, i;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	for (round = 0; round < NBUF / NREQ; round++) {
		for (i = 0; i < NREQ; i++)
			io[i] = (struct io){ round * NREQ + i, 0, SZ_4K };
		blk_read(_metadata, self, io, NREQ);
		written_pages(_metadata, self, io, NREQ, SZ_4K, &required);
	}
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	allowed_pages(_metadata, self, SZ_4K, &allowed);
	TH_LOG("%llu pages dirty, %zu written",
	       (unsigned long long)check_acc(_metadata, &self->set, &required, &allowed),
	       required.n);
	expect_clean(_metadata, self, "the REPORT after");
	dl_pages_free(&required);
	dl_pages_free(&allowed);
	stop(_metadata, self);
}

/* Session rules, on the admin backend: one START at a time, STOP is idempotent. */
TEST_F(admin_log, session_rules)
{
	uint64_t ps = SZ_4K;
	uint64_t bitmap[8] = {};
	int ret;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	ret = dl_report(self->dev.fd, SZ_2M, SZ_2M / 8, SZ_4K, bitmap);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("REPORT before START: %s", strerror(-ret));
	EXPECT_EQ(0, dl_stop(self->dev.fd)) TH_LOG("STOP without START");
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	ret = dl_start(self->dev.fd, self->set.r, self->set.n, &ps);
	EXPECT_EQ(-EBUSY, ret) TH_LOG("second START: %s", strerror(-ret));
	/* The first session is intact. */
	expect_exact(_metadata, self, small_io, ARRAY_SIZE(small_io));
	stop(_metadata, self);
	EXPECT_EQ(0, dl_stop(self->dev.fd)) TH_LOG("second STOP");
}

/*
 * STOP discards what was not reported, and a new START begins empty: writes
 * before the STOP and while stopped appear in no later report.
 */
TEST_F(admin_log, start_stop_cycles)
{
	static const uint64_t sizes[] = { SZ_4K, SZ_2M, SZ_4K, SZ_2M };
	unsigned int i;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		start(_metadata, self, sizes[i]);
		expect_clean(_metadata, self, "right after START");
		expect_exact(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
		/* Written, never reported, then STOP. */
		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
		stop(_metadata, self);
		/* Device writes while logging is off. */
		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	}
	start(_metadata, self, SZ_4K);
	expect_clean(_metadata, self, "after the last START");
	stop(_metadata, self);
}

/*
 * The owner keeps recording across resets of the member (virtio reset, and
 * VFIO_DEVICE_RESET when the function has a reset method): pages written
 * before and after are all reported. A whole-range report (a conservative
 * driver) is allowed; a partial one that lost a page is not.
 */
TEST_F(admin_log, member_reset_keeps_records)
{
	struct dl_pages required = {}, allowed = {};
	unsigned int i, all = 0;
	bool flr = self->dev.info.flags & VFIO_DEVICE_FLAGS_RESET;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	blk_read(_metadata, self, exact_io, 2);
	written_pages(_metadata, self, exact_io, 2, SZ_4K, &required);
	if (flr) {
		ASSERT_EQ(0, ioctl(self->dev.fd, VFIO_DEVICE_RESET))
			TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
		enable_device(_metadata, self);
	} else {
		TH_LOG("VFIO reports no reset method: virtio reset only");
	}
	virtio_up(_metadata, self);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), SZ_4K, &required);

	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	for (i = 0; i < self->set.n; i++)
		all += range_all_dirty(&self->set, i, self->set.acc[i]);
	if (all == self->set.n) {
		TH_LOG("the driver reported every range whole after the member reset");
	} else {
		allowed_pages(_metadata, self, SZ_4K, &allowed);
		check_acc(_metadata, &self->set, &required, &allowed);
	}
	expect_clean(_metadata, self, "the REPORT after");
	expect_exact(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dl_pages_free(&required);
	dl_pages_free(&allowed);
	stop(_metadata, self);
}

/* Writes during harvest: a workload thread reads into the buffers round-robin. */
#define RACE_REQUESTS		1000
#define RACE_DEPTH		32
#define RACE_SECONDS		120

/*
 * The device writes while the driver reads and clears records: a write is
 * in one of the reports that ended after its submission, up to the first
 * that started after its completion.
 */
TEST_F_TIMEOUT(admin_log, harvest_race, 300)
{
	struct dl_pages required = {}, allowed = {};
	struct dl_race race = {
		.set = &self->set,
		.vq = &self->vq,
		.req = self->req,
		.buf = self->buf,
		.mem = &self->mem,
		.depth = RACE_DEPTH,
		.nbuf = NBUF,
		.requests = RACE_REQUESTS,
		.seconds = RACE_SECONDS,
	};
	unsigned int c, lost = 0;
	int ret;

	if (!expecting(_metadata, EXPECT_NORMAL))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	race.fd = self->dev.fd;
	race.capacity = self->capacity;
	ret = dl_race_run(&race);
	ASSERT_EQ(0, ret) TH_LOG("race: %s", strerror(-ret));
	TH_LOG("%u reads completed during %zu reports", race.ndone, race.nrep);

	for (c = 0; c < race.ndone; c++) {
		const struct dl_race_read *d = &race.done[c];

		if (!dl_race_seen(&race, c) && lost++ < 8)
			TH_LOG("read %u into buffer %u (%#llx) was never reported", c, d->buf,
			       (unsigned long long)vu_mem_iova(&self->mem, self->buf[d->buf]));
	}
	EXPECT_EQ(0U, lost) TH_LOG("%u of %u completed reads lost", lost, race.ndone);

	ASSERT_EQ(0, dl_race_written_pages(&race, &required));
	allowed_pages(_metadata, self, SZ_4K, &allowed);
	check_acc(_metadata, &self->set, &required, &allowed);
	dl_race_free(&race);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
	stop(_metadata, self);
}

/*
 * A member bound before its owner has no admin backend; with no memory
 * tracker either (devsim --no-tracker) it has no dirty logging at all.
 */
TEST_F(admin_log, no_backend)
{
	struct dl_range r = { SZ_2M, SZ_2M };
	uint64_t ps = SZ_4K;
	int probe, ret;

	if (!expecting(_metadata, EXPECT_NO_BACKEND))
		return;
	probe = vd_feature_fd(self->dev.fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
			      VFIO_DEVICE_FEATURE_DMA_LOGGING_START, NULL, 0);
	ret = dl_start(self->dev.fd, &r, 1, &ps);
	TH_LOG("PROBE of DMA_LOGGING_START: %s; START: %s", probe ? strerror(-probe) : "offered",
	       ret ? strerror(-ret) : "success");
	EXPECT_GT(0, ret) TH_LOG("START succeeded on a member probed before its owner");
	if (!ret)
		dl_stop(self->dev.fd);
}

/*
 * The owner stores at most --capacity distinct pages: a larger burst
 * overflows and every page of every logged range must be reported dirty
 * (the lost write may be anywhere). Before and after, small bursts are exact.
 */
TEST_F_TIMEOUT(admin_log, overflow_all_dirty, 120)
{
	struct dl_pages big = {};

	if (!expecting(_metadata, EXPECT_OVERFLOW))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	expect_clean(_metadata, self, "right after START");
	/* Within the capacity. */
	ASSERT_GE(capacity, 3U);
	expect_exact(_metadata, self, small_io, ARRAY_SIZE(small_io));

	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), SZ_4K, &big);
	ASSERT_LT(capacity, big.n) TH_LOG("the burst must write more pages than the capacity");
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	TH_LOG("%zu distinct pages written with a capacity of %u: %llu reported dirty",
	       big.n, capacity, (unsigned long long)dl_acc_count(&self->set));
	expect_all_dirty(_metadata, &self->set);

	/* Re-armed: nothing new, then exact again. */
	expect_clean(_metadata, self, "the REPORT after the overflow");
	expect_exact(_metadata, self, small_io, ARRAY_SIZE(small_io));
	dl_pages_free(&big);
	stop(_metadata, self);
}

/* Calls that meet a broken owner: each must return within BOUND_MS. */
#define TIMED(call, ms)							\
	({								\
		uint64_t __t0 = now_ms();				\
		int __ret = (call);					\
		*(ms) = now_ms() - __t0;				\
		__ret;							\
	})

/*
 * An owner that never completes a command (hang) or fails it (status): the
 * driver gives up after admin_timeout_ms (or at once), and a REPORT either
 * fails or reports the whole range dirty; one that failed is followed by a
 * REPORT of the whole range. A START that met the fault fails, and leaves
 * no session behind.
 */
TEST_F_TIMEOUT(admin_log, admin_fault, 180)
{
	uint64_t ps = SZ_4K, ms;
	unsigned int i;
	int ret;

	if (expect != EXPECT_STATUS && !expecting(_metadata, EXPECT_HANG))
		return;
	track_mem(_metadata, self);
	ret = TIMED(dl_start(self->dev.fd, self->set.r, self->set.n, &ps), &ms);
	TH_LOG("START: %s after %llu ms", ret ? strerror(-ret) : "success",
	       (unsigned long long)ms);
	EXPECT_GT(BOUND_MS, ms);
	if (ret) {
		/* The fault hit START: no session, and nothing stuck. */
		uint64_t bitmap[8] = {};

		ret = TIMED(dl_report(self->dev.fd, self->set.r[0].iova, 8 * 64 * SZ_4K, SZ_4K,
				      bitmap), &ms);
		EXPECT_EQ(-EINVAL, ret) TH_LOG("REPORT after a failed START: %s", strerror(-ret));
		EXPECT_GT(BOUND_MS, ms);
		ret = TIMED(dl_stop(self->dev.fd), &ms);
		EXPECT_EQ(0, ret) TH_LOG("STOP after a failed START: %s", strerror(-ret));
		EXPECT_GT(BOUND_MS, ms);
		ret = TIMED(dl_start(self->dev.fd, self->set.r, self->set.n, &ps), &ms);
		TH_LOG("START again: %s after %llu ms", ret ? strerror(-ret) : "success",
		       (unsigned long long)ms);
		EXPECT_GT(BOUND_MS, ms);
		if (!ret)
			dl_stop(self->dev.fd);
		return;
	}
	self->logging = true;
	ASSERT_EQ(SZ_4K, ps);
	self->set.page_size = ps;
	dl_set_free(&self->set);
	ASSERT_EQ(0, dl_set_alloc(&self->set));

	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	for (i = 0; i < self->set.n; i++) {
		struct dl_range *r = &self->set.r[i];
		size_t bytes = dl_bitmap_bytes(r->len, ps);

		memset(self->set.acc[i], 0, bytes);
		ret = TIMED(dl_report(self->dev.fd, r->iova, r->len, ps, self->set.acc[i]), &ms);
		TH_LOG("range %u: REPORT %s after %llu ms", i, ret ? strerror(-ret) : "success",
		       (unsigned long long)ms);
		EXPECT_GT(BOUND_MS, ms);
		if (ret) {
			memset(self->set.acc[i], 0, bytes);
			ret = TIMED(dl_report(self->dev.fd, r->iova, r->len, ps,
					      self->set.acc[i]), &ms);
			TH_LOG("range %u: the next REPORT %s after %llu ms", i,
			       ret ? strerror(-ret) : "success", (unsigned long long)ms);
			EXPECT_GT(BOUND_MS, ms);
			ASSERT_EQ(0, ret) TH_LOG("the REPORT after a failed one must succeed");
		}
		EXPECT_TRUE(range_all_dirty(&self->set, i, self->set.acc[i]))
			TH_LOG("range %u (%#llx+%#llx) not reported whole", i,
			       (unsigned long long)r->iova, (unsigned long long)r->len);
	}
	ret = TIMED(dl_stop(self->dev.fd), &ms);
	EXPECT_EQ(0, ret) TH_LOG("STOP: %s", strerror(-ret));
	EXPECT_GT(BOUND_MS, ms);
	self->logging = false;
}

/*
 * An owner that returns records outside the window read: the driver cannot
 * trust the result, so the range whose REPORT met them is reported whole,
 * and nothing written is ever lost.
 */
TEST_F_TIMEOUT(admin_log, stray_whole_window, 120)
{
	struct dl_pages required = {};
	unsigned int missing = 0, bad = 0;
	uint64_t ms;
	int i, ret;

	if (!expecting(_metadata, EXPECT_STRAY))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), SZ_4K, &required);
	i = dl_find(&self->set, vu_mem_iova(&self->mem, self->buf[0]));
	ASSERT_LE(0, i);
	memset(self->set.acc[i], 0, dl_bitmap_bytes(self->set.r[i].len, SZ_4K));
	ret = TIMED(dl_report(self->dev.fd, self->set.r[i].iova, self->set.r[i].len, SZ_4K,
			      self->set.acc[i]), &ms);
	ASSERT_EQ(0, ret) TH_LOG("REPORT: %s", strerror(-ret));
	EXPECT_GT(BOUND_MS, ms);
	EXPECT_TRUE(range_all_dirty(&self->set, i, self->set.acc[i]))
		TH_LOG("a REPORT that met stray records did not report its window whole");

	/* Afterwards: whatever the device does, no write is lost. */
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	for (i = 0; i < (int)self->set.n; i++)
		check_range(_metadata, &self->set, i, self->set.acc[i], &required, NULL, &bad,
			    &missing);
	EXPECT_EQ(0U, missing) TH_LOG("%u written pages lost after the stray records", missing);
	dl_pages_free(&required);
	stop(_metadata, self);
}

/*
 * The owner resets itself after some READs (recording stops, records are
 * discarded): the driver finds out at its next command, reports every range
 * whole once, re-arms, and reports exactly again. No REPORT loses a page.
 */
#define RESET_ROUNDS		16

TEST_F_TIMEOUT(admin_log, owner_reset_once, 300)
{
	unsigned int whole[DL_MAX_RANGES] = {}, exact_after[DL_MAX_RANGES] = {};
	bool last_whole[DL_MAX_RANGES] = {};
	unsigned int round, i, done;

	if (!expecting(_metadata, EXPECT_OWNER_RESET))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	for (round = 0; round < RESET_ROUNDS; round++) {
		struct dl_pages required = {}, allowed = {};

		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
		written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), SZ_4K, &required);
		allowed_pages(_metadata, self, SZ_4K, &allowed);
		for (i = 0, done = 0; i < self->set.n; i++) {
			struct dl_range *r = &self->set.r[i];
			unsigned int bad = 0, missing = 0;
			uint64_t ms;
			int ret;

			memset(self->set.acc[i], 0, dl_bitmap_bytes(r->len, SZ_4K));
			ret = TIMED(dl_report(self->dev.fd, r->iova, r->len, SZ_4K,
					      self->set.acc[i]), &ms);
			ASSERT_EQ(0, ret) TH_LOG("round %u range %u: REPORT %s", round, i,
						 strerror(-ret));
			EXPECT_GT(BOUND_MS, ms);
			if (range_all_dirty(&self->set, i, self->set.acc[i])) {
				TH_LOG("round %u range %u: reported whole", round, i);
				EXPECT_FALSE(last_whole[i])
					TH_LOG("range %u reported whole twice in a row: not re-armed",
					       i);
				whole[i]++;
				exact_after[i] = 0;
				last_whole[i] = true;
			} else {
				check_range(_metadata, &self->set, i, self->set.acc[i], &required,
					    &allowed, &bad, &missing);
				EXPECT_EQ(0U, bad + missing)
					TH_LOG("round %u range %u: %u pages never given, %u lost",
					       round, i, bad, missing);
				if (whole[i])
					exact_after[i]++;
				last_whole[i] = false;
			}
			done += whole[i] && exact_after[i] >= 2;
		}
		dl_pages_free(&required);
		dl_pages_free(&allowed);
		if (done == self->set.n)
			break;
	}
	for (i = 0; i < self->set.n; i++) {
		EXPECT_LE(1U, whole[i])
			TH_LOG("range %u never reported whole within %u rounds: reset unnoticed",
			       i, RESET_ROUNDS);
		EXPECT_LE(2U, exact_after[i]) TH_LOG("range %u: not exact again after the reset",
						     i);
	}
	stop(_metadata, self);
}

static int unbind(const char *dev)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", dev);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, dev, strlen(dev));
	close(fd);
	return n < 0 ? -errno : 0;
}

/*
 * The owner's driver goes away while the member logs: the member's REPORT
 * fails with ENODEV at once (and keeps failing), never hangs, and STOP
 * still ends the session.
 */
TEST_F_TIMEOUT(admin_log, owner_unbound, 120)
{
	uint64_t ms;
	int ret;

	if (!expecting(_metadata, EXPECT_UNBOUND))
		return;
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	expect_exact(_metadata, self, small_io, ARRAY_SIZE(small_io));
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));

	ret = TIMED(unbind(owner_bdf), &ms);
	ASSERT_EQ(0, ret) TH_LOG("unbinding %s: %s", owner_bdf, strerror(-ret));
	TH_LOG("owner %s unbound in %llu ms", owner_bdf, (unsigned long long)ms);
	EXPECT_GT(BOUND_MS, ms);

	ret = TIMED(dl_report_all(self->dev.fd, &self->set), &ms);
	EXPECT_EQ(-ENODEV, ret) TH_LOG("REPORT without an owner: %s",
				       ret < 0 ? strerror(-ret) : "success");
	EXPECT_GT(BOUND_MS, ms);
	ret = TIMED(dl_report_all(self->dev.fd, &self->set), &ms);
	EXPECT_EQ(-ENODEV, ret) TH_LOG("second REPORT without an owner: %s",
				       ret < 0 ? strerror(-ret) : "success");
	EXPECT_GT(BOUND_MS, ms);
	ret = TIMED(dl_stop(self->dev.fd), &ms);
	EXPECT_EQ(0, ret) TH_LOG("STOP without an owner: %s", strerror(-ret));
	EXPECT_GT(BOUND_MS, ms);
	self->logging = false;
}

int main(int argc, char **argv)
{
	char driver[64], *c;
	int out = 1, i;
	size_t e;

	/* Our options and the BDF first; the rest goes to the harness. */
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--expect") && i + 1 < argc) {
			for (e = 0; e < ARRAY_SIZE(expect_names); e++)
				if (!strcmp(argv[i + 1], expect_names[e]))
					break;
			if (e == ARRAY_SIZE(expect_names)) {
				fprintf(stderr, "unknown --expect %s\n", argv[i + 1]);
				return KSFT_FAIL;
			}
			expect = e;
			i++;
		} else if (!strcmp(argv[i], "--capacity") && i + 1 < argc) {
			capacity = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--unbind-owner") && i + 1 < argc) {
			snprintf(owner_bdf, sizeof(owner_bdf), "%s", argv[++i]);
			expect = EXPECT_UNBOUND;
		} else if (argv[i][0] != '-' && !bdf[0]) {
			snprintf(bdf, sizeof(bdf), "%s", argv[i]);
		} else {
			argv[out++] = argv[i];
		}
	}
	argc = out;

	if (!bdf[0])
		snprintf(skip_reason, sizeof(skip_reason),
			 "no member function given (run-vm.sh --owners: 0000:00:10.1)");
	else if (expect == EXPECT_UNBOUND && !owner_bdf[0])
		snprintf(skip_reason, sizeof(skip_reason), "--expect unbound needs --unbind-owner");
	if (!skip_reason[0]) {
		vd_driver(bdf, driver, sizeof(driver));
		for (c = driver; *c; c++)
			if (*c == '-')
				*c = '_';
		if (strcmp(driver, DRIVER))
			snprintf(skip_reason, sizeof(skip_reason),
				 "%s is bound to '%s', not " DRIVER, bdf, driver);
	}
	if (!skip_reason[0])
		ksft_print_msg("member %s, expect %s%s%s\n", bdf, expect_names[expect],
			       owner_bdf[0] ? ", owner " : "", owner_bdf);
	return test_harness_run(argc, argv);
}
