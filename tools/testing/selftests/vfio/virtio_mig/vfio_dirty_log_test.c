// SPDX-License-Identifier: GPL-2.0
/*
 * Device dirty-page logging of virtio_vfio_mig: VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
 * _STOP and _REPORT on a virtio-devsim function, checked against the pages the
 * device really writes.
 *
 * The device DMAs untranslated (VFIO no-IOMMU mode), so an IOVA is a physical
 * address: the tracked ranges cover the physical pages of the test's DMA
 * memory (from /proc/self/pagemap), rounded out to 2 MiB and with a 2 MiB
 * guard on either side that the device never touches. Device writes come from
 * virtio-blk reads: the data buffers, the status bytes and the used ring. A
 * report must hold every page written and no page the device was not given.
 *
 * Usage: vfio_dirty_log_test [BDF] [harness options]
 *   Without BDF the first device-model function (1af4:1042, subsystem 0x1100)
 *   is used; it must be bound to virtio_vfio_mig, otherwise every test is
 *   skipped, as it is without no-IOMMU mode.
 *
 * Environment, for devices or driver settings other than the defaults:
 *   VIRTIO_MIG_MAX_BITMAP_KIB   the driver's max_bitmap_kib (default 4096)
 *   VIRTIO_MIG_DEVICE_PAGE      the device's tracking page size, when it raises
 *                               gra_power (devsim --min-gra-power); default 4096
 *   VIRTIO_MIG_BYTE_GRANULAR=1  the device sets whole bitmap bytes
 *                               (devsim --byte-granular-dirty)
 *   VIRTIO_MIG_FAULT_PAST_LENGTH=1
 *                               the device sets bits past bitmap_length
 *                               (devsim --fault-bits-past-length): enables the
 *                               past_length_fault test
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

#define SZ_4K			4096ULL
#define SZ_1M			(1ULL << 20)
#define SZ_2M			(2ULL << 20)
#define SZ_1G			(1ULL << 30)
#define SZ_4G			(4ULL << 30)

/* DMA memory: two 2 MiB pages; everything the device may write is in the first. */
#define MEM_SIZE		(2 * SZ_2M)
#define QUEUE_SIZE		128
#define NREQ			64
#define NBUF			256	/* 4 KiB data buffers */
#define MAX_RINGS		4

static char bdf[VD_BDF_LEN];
static char skip_reason[256];
static uint64_t max_bitmap_bytes = 4096 * 1024ULL;
static uint64_t device_page = SZ_4K;
static bool byte_granular;
static bool fault_past_length;

FIXTURE(dirty_log) {
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

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static void enable_device(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self)
{
	uint16_t cmd;

	ASSERT_EQ(0, vd_config_read(&self->dev, PCI_COMMAND, &cmd, 2));
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	ASSERT_EQ(0, vd_config_write(&self->dev, PCI_COMMAND, &cmd, 2));
}

/* Reset the virtio device and bring queue 0 up on fresh rings. */
static void virtio_up(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self)
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

FIXTURE_SETUP(dirty_log)
{
	uint8_t cfg[256];
	unsigned int i;
	int ret;

	if (skip_reason[0])
		SKIP(return, "%s", skip_reason);
	ret = vd_open(&self->dev, bdf, VD_GROUP);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s", bdf, self->dev.err);
	if (!self->dev.noiommu)
		SKIP(return, "%s is behind an IOMMU: device dirty logging needs no-IOMMU mode", bdf);
	ASSERT_EQ(0, vd_config_read(&self->dev, 0, cfg, sizeof(cfg)));
	ASSERT_EQ(0, vu_parse_caps(cfg, sizeof(cfg), &self->caps));
	ASSERT_TRUE(self->caps.cap[VU_CAP_MEMORY_TRACK_CFG].present);
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

FIXTURE_TEARDOWN(dirty_log)
{
	uint16_t cmd;

	/* A test that failed with memory decoding off must not fault below. */
	if (self->vq_up && !vd_config_read(&self->dev, PCI_COMMAND, &cmd, 2)) {
		cmd |= PCI_COMMAND_MEMORY;
		vd_config_write(&self->dev, PCI_COMMAND, &cmd, 2);
	}
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
static void track_mem(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	size_t i;

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

/* The page size START should return for ranges ending at @end. */
static uint64_t expected_page_size(uint64_t end, uint64_t page_size)
{
	while (dl_bitmap_bytes(end, page_size) > max_bitmap_bytes)
		page_size <<= 1;
	return page_size > device_page ? page_size : device_page;
}

static uint64_t set_end(const struct dl_set *s)
{
	return s->r[s->n - 1].iova + s->r[s->n - 1].len;
}

/* START over self->set at @page_size and allocate report bitmaps at the page size returned. */
static void start(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
		  uint64_t page_size)
{
	uint64_t want = expected_page_size(set_end(&self->set), page_size);
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

static void stop(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self)
{
	ASSERT_EQ(0, dl_stop(self->dev.fd));
	self->logging = false;
}

/*
 * Read sectors into @n of the data buffers, in one batch: request i reads
 * @len bytes (at most 4 KiB, or the whole run of buffers from @first[i]
 * onwards when larger) at @off into buffer @first[i].
 */
struct io {
	unsigned int buf;
	uint32_t off;
	uint32_t len;
};

static void blk_read(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
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

/* The pages the device wrote for @io, at @page_size: data, status, used ring index. */
static void written_pages(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
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

/* Granularity at which the device may mark pages it did not write. */
static uint64_t allowed_gran(const struct dl_set *s, uint64_t start_page)
{
	uint64_t g = s->page_size > start_page ? s->page_size : start_page;

	return byte_granular ? 8 * g : g;
}

/* Everything the device may write: every data buffer and request, every used ring. */
static void allowed_pages(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
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

/*
 * The accumulated reports hold every page of @required and only pages of
 * @allowed (whose granularity is @gran). Returns the number of dirty pages.
 */
static uint64_t check_acc(struct __test_metadata *_metadata, const struct dl_set *s,
			  const struct dl_pages *required, const struct dl_pages *allowed,
			  uint64_t gran)
{
	unsigned int i, bad = 0, missing = 0;
	uint64_t bit, dirty = 0;
	size_t k;

	for (i = 0; i < s->n; i++) {
		uint64_t bits = s->r[i].len / s->page_size;

		for (bit = 0; bit < bits; bit++) {
			uint64_t at = s->r[i].iova + bit * s->page_size;

			if (!(s->acc[i][bit / 64] >> (bit % 64) & 1))
				continue;
			dirty++;
			if (dl_pages_has(allowed, at & ~(gran - 1)))
				continue;
			if (bad++ < 8)
				TH_LOG("page %#llx reported dirty; the device was never given it",
				       (unsigned long long)at);
		}
	}
	for (k = 0; k < required->n; k++) {
		if (dl_acc_test(s, required->page[k]))
			continue;
		if (missing++ < 8)
			TH_LOG("page %#llx written by the device but not reported%s",
			       (unsigned long long)required->page[k],
			       dl_find(s, required->page[k]) < 0 ? " (not tracked)" : "");
	}
	EXPECT_EQ(0U, bad) TH_LOG("%u pages reported that the device never had", bad);
	EXPECT_EQ(0U, missing) TH_LOG("%u of %zu written pages missing from the report",
				     missing, required->n);
	return dirty;
}

/* One REPORT of every range; asserts it is clean. */
static void expect_clean(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
			 const char *when)
{
	long dirty;

	dl_acc_clear(&self->set);
	dirty = dl_report_all(self->dev.fd, &self->set);
	ASSERT_LE(0, dirty) TH_LOG("REPORT: %s", strerror(-dirty));
	EXPECT_EQ(0, dirty) TH_LOG("%s: %ld pages reported dirty", when, dirty);
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

/*
 * The reads of exact_io landed in their buffers: the next REPORT must hold
 * every page they wrote and no page the device was not given. Returns the
 * pages dirty.
 */
static uint64_t expect_exact_pages(struct __test_metadata *_metadata,
				   FIXTURE_DATA(dirty_log) *self)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t gran, dirty;

	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	gran = allowed_gran(&self->set, self->set.page_size);
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), self->set.page_size,
		      &required);
	allowed_pages(_metadata, self, gran, &allowed);
	dirty = check_acc(_metadata, &self->set, &required, &allowed, gran);
	TH_LOG("%llu pages dirty, %zu written pages expected",
	       (unsigned long long)dirty, required.n);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
	return dirty;
}

/* Reads land in the buffers of exact_io; then expect_exact_pages(). */
static uint64_t expect_exact_report(struct __test_metadata *_metadata,
				    FIXTURE_DATA(dirty_log) *self)
{
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	return expect_exact_pages(_metadata, self);
}

/*
 * START at @page_size; the device is idle so the first REPORT is clean; then
 * reads land in known buffers and the report holds exactly their pages.
 */
static void report_exact(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
			 uint64_t page_size)
{
	track_mem(_metadata, self);
	start(_metadata, self, page_size);
	TH_LOG("%u ranges from %#llx to %#llx, page size %#llx", self->set.n,
	       (unsigned long long)self->set.r[0].iova,
	       (unsigned long long)set_end(&self->set), (unsigned long long)self->set.page_size);
	expect_clean(_metadata, self, "right after START");
	expect_exact_report(_metadata, self);
	stop(_metadata, self);
}

TEST_F(dirty_log, report_exact_4k)
{
	report_exact(_metadata, self, SZ_4K);
}

TEST_F(dirty_log, report_exact_2m)
{
	report_exact(_metadata, self, SZ_2M);
}

/* START at 4 KiB and REPORT at 4 KiB even when the device tracks coarser pages. */
TEST_F(dirty_log, report_at_4k)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t start_page, gran;

	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	start_page = self->set.page_size;
	self->set.page_size = SZ_4K;
	dl_set_free(&self->set);
	ASSERT_EQ(0, dl_set_alloc(&self->set));
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	gran = allowed_gran(&self->set, start_page);
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), SZ_4K, &required);
	allowed_pages(_metadata, self, gran, &allowed);
	TH_LOG("START page size %#llx, %llu 4 KiB pages dirty for %zu written",
	       (unsigned long long)start_page,
	       (unsigned long long)check_acc(_metadata, &self->set, &required, &allowed, gran),
	       required.n);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

/* A report forgets what it returned: the next one, with the device idle, is clean. */
TEST_F(dirty_log, report_again_clean)
{
	long dirty;

	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dirty = dl_report_all(self->dev.fd, &self->set);
	ASSERT_LT(0, dirty) TH_LOG("the first REPORT after I/O: %ld", dirty);
	expect_clean(_metadata, self, "the second REPORT");
	usleep(100 * 1000);
	expect_clean(_metadata, self, "a REPORT after 100 ms idle");
}

/*
 * Ranges far above the memory of the VM: the bitmap covers them (bit 0 is
 * address 0), they report clean, and the low range still works.
 */
TEST_F(dirty_log, above_4g)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t gran, bits, b;
	uint8_t *bitmap;
	int i, ret;

	track_mem(_metadata, self);
	ASSERT_GE(SZ_4G, set_end(&self->set));
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_1G));
	ASSERT_EQ(0, dl_add_range(&self->set, 16 * SZ_1G, SZ_2M));
	start(_metadata, self, SZ_4K);
	TH_LOG("%u ranges up to %#llx: page size %#llx", self->set.n,
	       (unsigned long long)set_end(&self->set),
	       (unsigned long long)self->set.page_size);
	expect_clean(_metadata, self, "right after START");

	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	gran = allowed_gran(&self->set, self->set.page_size);
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), self->set.page_size,
		      &required);
	allowed_pages(_metadata, self, gran, &allowed);
	check_acc(_metadata, &self->set, &required, &allowed, gran);

	/* The high ranges once more on their own, and a part of one. */
	i = dl_find(&self->set, SZ_4G);
	ASSERT_LE(0, i);
	bits = self->set.r[i].len / self->set.page_size;
	bitmap = calloc(1, dl_bitmap_bytes(self->set.r[i].len, self->set.page_size));
	ASSERT_NE(NULL, bitmap);
	ret = dl_report(self->dev.fd, SZ_4G, SZ_1G, self->set.page_size, bitmap);
	ASSERT_EQ(0, ret) TH_LOG("REPORT [4 GiB, 5 GiB): %s", strerror(-ret));
	for (b = 0; b < bits; b++)
		if (bitmap[b / 8] >> (b % 8) & 1)
			break;
	EXPECT_EQ(bits, b) TH_LOG("page %#llx above the VM's memory reported dirty",
				  (unsigned long long)(SZ_4G + b * self->set.page_size));
	ret = dl_report(self->dev.fd, 16 * SZ_1G, SZ_2M, self->set.page_size,
			bitmap);
	EXPECT_EQ(0, ret) TH_LOG("REPORT [16 GiB, +2 MiB): %s", strerror(-ret));
	/* Past the end of a range is outside the logged ranges: reported dirty. */
	ret = dl_report(self->dev.fd, SZ_4G + SZ_1G - SZ_2M, 2 * SZ_2M, self->set.page_size,
			bitmap);
	EXPECT_EQ(0, ret) TH_LOG("REPORT across the end of [4 GiB, 5 GiB): %s", strerror(-ret));
	free(bitmap);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

/*
 * A range high enough that a bitmap at 4 KiB pages would exceed
 * max_bitmap_kib: START succeeds with a coarser page size, and the report
 * at that page size still holds the pages written.
 */
TEST_F(dirty_log, bitmap_cap)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t end, gran;

	track_mem(_metadata, self);
	/* One 2 MiB range ending just past what the cap covers at 4 KiB. */
	end = (max_bitmap_bytes * 8 * SZ_4K + SZ_2M) & ~(SZ_2M - 1);
	if (end < set_end(&self->set) + 2 * SZ_2M)
		SKIP(return, "max_bitmap_kib %llu covers less than the VM's memory",
		     (unsigned long long)max_bitmap_bytes / 1024);
	ASSERT_EQ(0, dl_add_range(&self->set, end - SZ_2M, SZ_2M));
	TH_LOG("a range up to %#llx with a %llu KiB bitmap cap", (unsigned long long)end,
	       (unsigned long long)max_bitmap_bytes / 1024);
	start(_metadata, self, SZ_4K);
	EXPECT_LT(SZ_4K, self->set.page_size);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	gran = allowed_gran(&self->set, self->set.page_size);
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), self->set.page_size,
		      &required);
	allowed_pages(_metadata, self, gran, &allowed);
	check_acc(_metadata, &self->set, &required, &allowed, gran);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

/*
 * The memory of a large VM: a range ending at 256 GiB needs an 8 MiB bitmap
 * at 4 KiB pages, within the default cap, so START keeps 4 KiB pages.
 */
TEST_F(dirty_log, range_at_256g)
{
	struct dl_pages required = {}, allowed = {};
	uint64_t gran;

	track_mem(_metadata, self);
	ASSERT_EQ(0, dl_add_range(&self->set, 256 * SZ_1G - SZ_2M, SZ_2M));
	start(_metadata, self, SZ_4K);
	TH_LOG("page size %#llx", (unsigned long long)self->set.page_size);
	expect_clean(_metadata, self, "right after START");
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	gran = allowed_gran(&self->set, self->set.page_size);
	written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io), self->set.page_size,
		      &required);
	allowed_pages(_metadata, self, gran, &allowed);
	check_acc(_metadata, &self->set, &required, &allowed, gran);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

/* Writes during harvest: a workload thread reads into the buffers round-robin. */
#define RACE_REQUESTS		3000
#define RACE_DEPTH		32
#define RACE_SECONDS		120

TEST_F_TIMEOUT(dirty_log, harvest_race, 300)
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
	uint64_t gran;

	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	race.fd = self->dev.fd;
	race.capacity = self->capacity;
	ret = dl_race_run(&race);
	ASSERT_EQ(0, ret) TH_LOG("race: %s", strerror(-ret));
	TH_LOG("%u reads completed during %zu reports", race.ndone, race.nrep);

	/*
	 * The device wrote a buffer after its submission and before its
	 * completion was seen, so one of the reports that ended after the
	 * submission, up to the first that started after the completion,
	 * must hold it.
	 */
	for (c = 0; c < race.ndone; c++) {
		const struct dl_race_read *d = &race.done[c];

		if (!dl_race_seen(&race, c) && lost++ < 8)
			TH_LOG("read %u into buffer %u (%#llx) was never reported", c, d->buf,
			       (unsigned long long)vu_mem_iova(&self->mem, self->buf[d->buf]));
	}
	EXPECT_EQ(0U, lost) TH_LOG("%u of %u completed reads lost", lost, race.ndone);

	/* The union: every buffer, every status byte used, the used ring. */
	ASSERT_EQ(0, dl_race_written_pages(&race, &required));
	gran = allowed_gran(&self->set, self->set.page_size);
	allowed_pages(_metadata, self, gran, &allowed);
	check_acc(_metadata, &self->set, &required, &allowed, gran);
	dl_race_free(&race);
	dl_pages_free(&required);
	dl_pages_free(&allowed);
}

/* Page sizes the driver must refuse; the VFIO core lets them through when aligned. */
TEST_F(dirty_log, bad_page_size)
{
	struct dl_range r = { 0x100000, 0x4000 };
	uint64_t ps;

	ps = 0x3000;	/* not a power of two; 0x100000 and 0x4000 pass the core's mask test */
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &r, 1, &ps));
	ps = 2048;
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &r, 1, &ps));
	ps = 512;
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &r, 1, &ps));
	/* The refusals left nothing behind: a valid START works, then a STOP. */
	ps = SZ_4K;
	EXPECT_EQ(0, dl_start(self->dev.fd, &r, 1, &ps));
	EXPECT_EQ(0, dl_stop(self->dev.fd));
}

/* Malformed range lists, refused by the core or the driver. */
TEST_F(dirty_log, bad_ranges)
{
	struct dl_range overlap[2] = { { 0x100000, 0x3000 }, { 0x102000, 0x1000 } };
	struct dl_range unaligned = { 0x100800, 0x1000 };
	struct dl_range empty = { 0x100000, 0 };
	struct dl_range empty_and_one[2] = { { 0x100000, 0x1000 }, { 0x200000, 0 } };
	struct dl_range r = { 0x100000, 0x1000 };
	uint64_t ps = SZ_4K;

	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &r, 0, &ps));
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, overlap, 2, &ps));
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &unaligned, 1, &ps));
	/* Empty ranges: the core passes them on as [iova, iova - 1]. */
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, &empty, 1, &ps));
	EXPECT_EQ(-EINVAL, dl_start(self->dev.fd, empty_and_one, 2, &ps));
	EXPECT_EQ(0, dl_start(self->dev.fd, &r, 1, &ps));
	EXPECT_EQ(0, dl_stop(self->dev.fd));
}

/*
 * REPORT into a bitmap the kernel cannot write. With nothing dirty there is
 * nothing to write, and success is fine. With dirty pages the REPORT must
 * fail (EFAULT) rather than succeed and drop them: pages the driver harvested
 * and could not hand over would be lost.
 */
TEST_F(dirty_log, report_bad_bitmap)
{
	static const struct { const char *what; int prot; bool unmapped; } bad[] = {
		{ "unmapped", PROT_READ | PROT_WRITE, true },
		{ "read-only", PROT_READ, false },
	};
	struct dl_range *r;
	uint64_t ps;
	unsigned int i;
	void *p;
	int ret;

	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	ps = self->set.page_size;
	r = &self->set.r[0];
	ASSERT_EQ(0, dl_find(&self->set, vu_mem_iova(&self->mem, self->buf[0])));

	/* Bad report page sizes. */
	EXPECT_EQ(-EINVAL, dl_report(self->dev.fd, r->iova, r->len, 0x3000, self->set.tmp[0]));
	EXPECT_EQ(-EINVAL, dl_report(self->dev.fd, r->iova, r->len, 2048, self->set.tmp[0]));

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		p = mmap(NULL, 1 << 20, bad[i].prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, p);
		if (bad[i].unmapped)
			ASSERT_EQ(0, munmap(p, 1 << 20));

		ret = dl_report(self->dev.fd, r->iova, r->len, ps, p);
		TH_LOG("%s bitmap, nothing dirty: %s", bad[i].what, ret ? strerror(-ret) : "success");
		EXPECT_TRUE(ret == 0 || ret == -EFAULT);

		blk_read(_metadata, self, exact_io, 1);
		ret = dl_report(self->dev.fd, r->iova, r->len, ps, p);
		EXPECT_EQ(-EFAULT, ret) TH_LOG("%s bitmap with dirty pages: %s", bad[i].what,
					       ret ? strerror(-ret) : "success");
		/* Whatever it returned, a success must not have lost them. */
		dl_acc_clear(&self->set);
		ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
		if (!ret)
			EXPECT_TRUE(dl_acc_test(&self->set,
						vu_mem_iova(&self->mem, self->buf[exact_io[0].buf])))
				TH_LOG("the REPORT into a %s bitmap succeeded and the page it "
				       "should have reported is gone", bad[i].what);
		if (!bad[i].unmapped)
			munmap(p, 1 << 20);
	}
	/* The session survived. */
	expect_clean(_metadata, self, "after the failed REPORTs");
}

/*
 * A REPORT of [@iova, @iova + @len) succeeds and marks the @n pages from page
 * @first of the report, which no logged range covers, dirty.
 */
static void outside(struct __test_metadata *_metadata, FIXTURE_DATA(dirty_log) *self,
		    uint8_t *bitmap, uint64_t iova, uint64_t len, uint64_t first, uint64_t n,
		    const char *what)
{
	uint64_t ps = self->set.page_size, b;
	int ret;

	memset(bitmap, 0, (len / ps + 7) / 8);
	ret = dl_report(self->dev.fd, iova, len, ps, bitmap);
	ASSERT_EQ(0, ret) TH_LOG("REPORT %s: %s", what, strerror(-ret));
	for (b = first; b < first + n; b++)
		if (!(bitmap[b / 8] >> (b % 8) & 1))
			break;
	EXPECT_EQ(first + n, b) TH_LOG("REPORT %s: uncovered page %llu of the report clean",
				       what, (unsigned long long)b);
}

TEST_F(dirty_log, report_outside)
{
	struct dl_range *r;
	uint64_t ps, low_end;
	size_t i;
	uint8_t *bitmap;
	int ret;

	bitmap = calloc(1, 1 << 20);
	ASSERT_NE(NULL, bitmap);
	/* No session yet. */
	ret = dl_report(self->dev.fd, SZ_2M, SZ_2M, SZ_4K, bitmap);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("REPORT before START: %s", strerror(-ret));

	track_mem(_metadata, self);
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_2M));
	start(_metadata, self, SZ_4K);
	ps = self->set.page_size;
	r = &self->set.r[0];
	/*
	 * Memory the log does not cover (hotplugged during a migration, say) is
	 * reported dirty: just past the end, across the end, before the start,
	 * in a gap, over the gap, beyond all.
	 */
	outside(_metadata, self, bitmap, r->iova + r->len, ps, 0, 1, "past the end");
	outside(_metadata, self, bitmap, r->iova + r->len - ps, 2 * ps, 1, 1, "across the end");
	if (r->iova >= ps)
		outside(_metadata, self, bitmap, r->iova - ps, 2 * ps, 0, 1, "across the start");
	outside(_metadata, self, bitmap, SZ_4G - SZ_2M, SZ_2M, 0, SZ_2M / ps, "in the gap");
	low_end = 0;
	for (i = 0; i < self->set.n; i++)
		if (self->set.r[i].iova + self->set.r[i].len <= SZ_4G &&
		    self->set.r[i].iova + self->set.r[i].len > low_end)
			low_end = self->set.r[i].iova + self->set.r[i].len;
	outside(_metadata, self, bitmap, r->iova, SZ_4G + SZ_2M - r->iova,
		(low_end - r->iova) / ps, (SZ_4G - low_end) / ps, "over the gap");
	outside(_metadata, self, bitmap, 64 * SZ_1G, SZ_2M, 0, SZ_2M / ps, "beyond every range");
	/* Inside still works. */
	ret = dl_report(self->dev.fd, r->iova + ps, ps, ps, bitmap);
	EXPECT_EQ(0, ret) TH_LOG("one page inside: %s", strerror(-ret));
	stop(_metadata, self);
	ret = dl_report(self->dev.fd, r->iova, ps, ps, bitmap);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("REPORT after STOP: %s", strerror(-ret));
	free(bitmap);
}

TEST_F(dirty_log, start_busy)
{
	uint64_t ps = SZ_4K;
	int ret;

	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	ret = dl_start(self->dev.fd, self->set.r, self->set.n, &ps);
	EXPECT_EQ(-EBUSY, ret) TH_LOG("second START: %s", strerror(-ret));
	/* The first session is intact. */
	blk_read(_metadata, self, exact_io, 1);
	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	EXPECT_TRUE(dl_acc_test(&self->set, vu_mem_iova(&self->mem, self->buf[exact_io[0].buf])));
}

TEST_F(dirty_log, stop_twice)
{
	EXPECT_EQ(0, dl_stop(self->dev.fd)) TH_LOG("STOP without START");
	track_mem(_metadata, self);
	start(_metadata, self, SZ_4K);
	stop(_metadata, self);
	EXPECT_EQ(0, dl_stop(self->dev.fd)) TH_LOG("second STOP");
}

/* START, I/O, REPORT, STOP, over again; writes while stopped are not reported. */
TEST_F(dirty_log, start_stop_cycles)
{
	static const uint64_t sizes[] = { SZ_4K, SZ_2M, SZ_4K, 8 * SZ_4K, SZ_4K };
	unsigned int i;

	track_mem(_metadata, self);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct dl_pages required = {}, allowed = {};
		uint64_t gran;

		start(_metadata, self, sizes[i]);
		expect_clean(_metadata, self, "right after START");
		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
		dl_acc_clear(&self->set);
		ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
		gran = allowed_gran(&self->set, self->set.page_size);
		written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io),
			      self->set.page_size, &required);
		allowed_pages(_metadata, self, gran, &allowed);
		check_acc(_metadata, &self->set, &required, &allowed, gran);
		dl_pages_free(&required);
		dl_pages_free(&allowed);
		stop(_metadata, self);
		/* Device writes while logging is off. */
		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
	}
}

/* Every bit of every range set in the accumulated report. */
static void expect_all_dirty(struct __test_metadata *_metadata, const struct dl_set *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++) {
		uint64_t bits = s->r[i].len / s->page_size, bit;

		for (bit = 0; bit < bits; bit++)
			if (!(s->acc[i][bit / 64] >> (bit % 64) & 1))
				break;
		EXPECT_EQ(bits, bit) TH_LOG("range %#llx+%#llx: page %#llx reported clean",
					    (unsigned long long)s->r[i].iova,
					    (unsigned long long)s->r[i].len,
					    (unsigned long long)(s->r[i].iova + bit * s->page_size));
	}
}

/*
 * After a reset the driver cannot know what the device wrote while its
 * tracker was off: the next report is the whole range, the one after is
 * clean, and logging works on.
 */
static void reset_reports_all(struct __test_metadata *_metadata,
			      FIXTURE_DATA(dirty_log) *self, bool vfio_reset)
{
	if (vfio_reset && !(self->dev.info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "VFIO reports no reset method for %s", bdf);
	track_mem(_metadata, self);
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_2M));
	start(_metadata, self, SZ_4K);
	blk_read(_metadata, self, exact_io, 2);
	if (vfio_reset) {
		ASSERT_EQ(0, ioctl(self->dev.fd, VFIO_DEVICE_RESET))
			TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
		enable_device(_metadata, self);
	}
	/* Bring the device back and let it write while nothing records. */
	virtio_up(_metadata, self);
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));

	dl_acc_clear(&self->set);
	ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
	expect_all_dirty(_metadata, &self->set);
	expect_clean(_metadata, self, "the REPORT after the whole-range one");
	expect_exact_report(_metadata, self);
	stop(_metadata, self);
}

TEST_F(dirty_log, vfio_reset_reports_all)
{
	reset_reports_all(_metadata, self, true);
}

/* A virtio reset (device_status 0) also turns the tracker off. */
TEST_F(dirty_log, virtio_reset_reports_all)
{
	reset_reports_all(_metadata, self, false);
}

/*
 * QEMU reports a logged range a memory section at a time. After a reset each
 * section is reported whole once and then trusted again: records lost for a
 * range that no single report covers must not keep it all dirty for good.
 */
TEST_F(dirty_log, reset_reports_each_section_once)
{
	const uint64_t section = SZ_1M;
	uint64_t bitmap[8], ps, pages, bits, i;
	unsigned int round, sec;
	int ret;

	track_mem(_metadata, self);
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_2M));
	start(_metadata, self, SZ_4K);
	ps = self->set.page_size;
	pages = section / ps;
	ASSERT_GE(sizeof(bitmap) * 8, pages);
	/* A virtio reset turns the tracker off: nothing records what follows. */
	virtio_up(_metadata, self);
	for (round = 0; round < 2; round++) {
		for (sec = 0; sec < SZ_2M / section; sec++) {
			memset(bitmap, 0, sizeof(bitmap));
			ret = dl_report(self->dev.fd, SZ_4G + sec * section, section, ps, bitmap);
			ASSERT_EQ(0, ret) TH_LOG("REPORT: %s", strerror(-ret));
			for (bits = 0, i = 0; i < pages; i++)
				bits += !!(bitmap[i / 64] & (1ULL << (i % 64)));
			if (!round) {
				EXPECT_EQ(pages, bits)
					TH_LOG("section %u after the reset: %llu of %llu pages",
					       sec, (unsigned long long)bits,
					       (unsigned long long)pages);
			} else {
				EXPECT_EQ(0ULL, bits)
					TH_LOG("section %u reported again: %llu pages", sec,
					       (unsigned long long)bits);
			}
		}
	}
	stop(_metadata, self);
}

/*
 * With memory decoding off (Memory Space Enable cleared by the user) the
 * driver turns it on for its own accesses to the tracker and puts the user's
 * command register back: a REPORT is as exact as ever, and STOP works.
 */
TEST_F(dirty_log, memory_decoding_off)
{
	uint16_t cmd;

	track_mem(_metadata, self);
	ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, SZ_2M));
	start(_metadata, self, SZ_4K);
	expect_clean(_metadata, self, "right after START");
	blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));

	ASSERT_EQ(0, vd_config_read(&self->dev, PCI_COMMAND, &cmd, 2));
	cmd &= ~PCI_COMMAND_MEMORY;
	ASSERT_EQ(0, vd_config_write(&self->dev, PCI_COMMAND, &cmd, 2));
	/* The reads above are reported, decoding off or not. */
	expect_exact_pages(_metadata, self);
	stop(_metadata, self);
	ASSERT_EQ(0, vd_config_read(&self->dev, PCI_COMMAND, &cmd, 2));
	EXPECT_EQ(0, cmd & PCI_COMMAND_MEMORY) TH_LOG("the user's command register changed");
	enable_device(_metadata, self);
}

/*
 * With a device that sets bits past bitmap_length: nothing breaks, and
 * reports stay correct for the memory tracked.
 */
TEST_F(dirty_log, past_length_fault)
{
	static const uint64_t sizes[] = { SZ_4K, 8 * SZ_4K, SZ_2M };
	unsigned int i;

	if (!fault_past_length)
		SKIP(return, "the device honours bitmap_length (VIRTIO_MIG_FAULT_PAST_LENGTH unset)");
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct dl_pages required = {}, allowed = {};
		uint64_t gran;

		memset(&self->set, 0, offsetof(struct dl_set, acc));
		track_mem(_metadata, self);
		/* A range ending at an odd page count so the bitmap's last word is partial. */
		ASSERT_EQ(0, dl_add_range(&self->set, SZ_4G, 3 * sizes[i]));
		start(_metadata, self, sizes[i]);
		blk_read(_metadata, self, exact_io, ARRAY_SIZE(exact_io));
		ASSERT_LE(0, dl_report_all(self->dev.fd, &self->set));
		gran = allowed_gran(&self->set, self->set.page_size);
		written_pages(_metadata, self, exact_io, ARRAY_SIZE(exact_io),
			      self->set.page_size, &required);
		allowed_pages(_metadata, self, gran, &allowed);
		check_acc(_metadata, &self->set, &required, &allowed, gran);
		dl_pages_free(&required);
		dl_pages_free(&allowed);
		stop(_metadata, self);
		dl_set_free(&self->set);
	}
}

int main(int argc, char **argv)
{
	max_bitmap_bytes = env_u64("VIRTIO_MIG_MAX_BITMAP_KIB", 4096) * 1024;
	device_page = env_u64("VIRTIO_MIG_DEVICE_PAGE", SZ_4K);
	byte_granular = env_u64("VIRTIO_MIG_BYTE_GRANULAR", 0);
	fault_past_length = env_u64("VIRTIO_MIG_FAULT_PAST_LENGTH", 0);
	vd_select_test_device(&argc, &argv, DRIVER, bdf, skip_reason, sizeof(skip_reason));
	return test_harness_run(argc, argv);
}
