// SPDX-License-Identifier: GPL-2.0
/*
 * DMA_LOGGING_REPORT latency of virtio_vfio_mig, next to a userspace scan of a
 * bitmap of the same size and contents measured in the same run. Not a test:
 * it prints a table and fails only when it cannot measure.
 *
 * Dirty pages are real: the device-model function reads from its disk into
 * pages of a large locked buffer (VFIO no-IOMMU mode, so IOVA = physical
 * address), and its tracker records them. The tracked ranges may exceed the
 * memory of the VM (the device never writes there), but only the pages of the
 * buffer can be dirtied, so a density the buffer cannot reach is reported as
 * what was achieved.
 *
 * The userspace scan does what the driver's harvest does for a report: every
 * 64-bit word is loaded; a word with bits set is exchanged atomically with 0
 * and its runs of set bits are copied into an output bitmap.
 *
 *   dirty_log_bench [-b BDF] [-m BUFFER_MIB] [-s SAMPLES]
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "dirty_log_util.h"
#include "vfio_dev.h"
#include "virtio_user.h"

#define DEVSIM_VENDOR		0x1af4
#define DEVSIM_DEVICE		0x1042
#define DEVSIM_SUBSYS		0x1100
#define VIRTIO_BAR		4
#define QUEUE_SIZE		256
#define PAGES_PER_REQ		64
#define MAX_INFLIGHT		3
#define TIMEOUT_MS		20000

#define SZ_4K			4096ULL
#define SZ_2M			(2ULL << 20)
#define SZ_1G			(1ULL << 30)

struct breq {
	struct virtio_blk_outhdr hdr;
	uint8_t status;
};

static struct vd dev;
static struct vu_mem mem;
static struct vu_dev vdev;
static struct vu_vq vq;
static struct breq *reqs;
static uint8_t *data;		/* the buffer the device dirties */
static size_t data_pages;
static uint64_t capacity;

static void die(const char *what, int err)
{
	fprintf(stderr, "dirty_log_bench: %s: %s%s%s\n", what, strerror(err),
		dev.err[0] ? " - " : "", dev.err);
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void setup(const char *bdf, size_t buffer_mib)
{
	uint8_t cfg[256];
	struct vu_caps caps;
	uint16_t cmd;
	int ret;

	ret = vd_open(&dev, bdf, VD_GROUP);
	if (ret)
		die(bdf, -ret);
	if (!dev.noiommu)
		die("device dirty logging needs VFIO no-IOMMU mode", EOPNOTSUPP);
	if (vd_config_read(&dev, 0, cfg, sizeof(cfg)) || vu_parse_caps(cfg, sizeof(cfg), &caps))
		die("configuration space", EIO);
	memcpy(&cmd, cfg + PCI_COMMAND, 2);
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (vd_config_write(&dev, PCI_COMMAND, &cmd, 2) || !vd_map_bar(&dev, VIRTIO_BAR))
		die("BAR4", EIO);

	ret = vu_mem_alloc(&mem, (buffer_mib << 20) + SZ_2M);
	if (ret)
		die("locking the buffer", -ret);
	ret = vd_dma_map(&dev, &mem);
	if (ret)
		die("physical addresses", -ret);
	if (vu_dev_init(&vdev, dev.bar, dev.bar_size, &caps, &mem))
		die("virtio structures", EINVAL);
	if (vu_reset(&vdev, TIMEOUT_MS) ||
	    vu_negotiate(&vdev, 1ULL << VIRTIO_F_ACCESS_PLATFORM, 1ULL << VIRTIO_F_VERSION_1))
		die("virtio negotiation", EIO);
	ret = vu_vq_setup(&vdev, &vq, 0, QUEUE_SIZE);
	if (ret)
		die("queue setup", -ret);
	vu_driver_ok(&vdev);
	capacity = vu_cfg_read64(&vdev, 0);
	reqs = vu_mem_zalloc(&mem, MAX_INFLIGHT * sizeof(*reqs), 64);
	/* The rest, page aligned, is the buffer. */
	data = vu_mem_zalloc(&mem, 0, SZ_4K);
	if (!reqs || !data)
		die("DMA memory", ENOMEM);
	data_pages = (mem.size - ((uintptr_t)data - (uintptr_t)mem.va)) / SZ_4K;
}

/* Device reads into every page of @page (indexes into the buffer). */
static void dirty(const size_t *page, size_t n)
{
	struct vu_buf bufs[PAGES_PER_REQ + 2];
	size_t next = 0, done = 0, submitted = 0;
	bool busy[MAX_INFLIGHT] = {};
	uint64_t sector = 0;

	while (done < submitted || next < n) {
		size_t was = submitted;
		unsigned int i, k;
		void *cookie;
		uint32_t len;
		int ret;

		for (i = 0; i < MAX_INFLIGHT && next < n; i++) {
			struct breq *r = &reqs[i];
			unsigned int count = n - next < PAGES_PER_REQ ? n - next : PAGES_PER_REQ;

			if (busy[i])
				continue;
			r->hdr.type = htole32(VIRTIO_BLK_T_IN);
			r->hdr.sector = htole64(sector);
			r->status = 0xff;
			sector = (sector + count * 8) % (capacity - PAGES_PER_REQ * 8);
			bufs[0] = (struct vu_buf){ &r->hdr, sizeof(r->hdr) };
			for (k = 0; k < count; k++)
				bufs[1 + k] = (struct vu_buf){ data + page[next + k] * SZ_4K, SZ_4K };
			bufs[1 + count] = (struct vu_buf){ &r->status, 1 };
			ret = vu_vq_add(&vq, bufs, 1, count + 1, r);
			if (ret == -ENOSPC)
				break;
			if (ret < 0)
				die("queueing a read", -ret);
			busy[i] = true;
			next += count;
			submitted++;
		}
		/*
		 * Kick only for new requests: every notification is a message to the
		 * device model, and a backlog of them delays the register reads of
		 * the next REPORT.
		 */
		if (submitted != was)
			vu_vq_kick(&vq);
		ret = vu_vq_harvest(&vq, &cookie, &len);
		if (ret < 0)
			die("used ring", -ret);
		if (!ret)
			continue;
		i = (struct breq *)cookie - reqs;
		if (i >= MAX_INFLIGHT || reqs[i].status != VIRTIO_BLK_S_OK)
			die("device read", EIO);
		busy[i] = false;
		done++;
	}
}

/* The userspace counterpart of a report: harvest @words of @dev into @out. */
static uint64_t scan(uint64_t *devmap, uint64_t *out, size_t words)
{
	uint64_t set = 0;
	size_t w;

	for (w = 0; w < words; w++) {
		uint64_t v;

		if (!__atomic_load_n(&devmap[w], __ATOMIC_RELAXED))
			continue;
		v = __atomic_exchange_n(&devmap[w], 0, __ATOMIC_ACQ_REL);
		while (v) {
			unsigned int lo = __builtin_ctzll(v);
			uint64_t rest = ~(v >> lo);
			unsigned int run = rest ? (unsigned int)__builtin_ctzll(rest) : 64 - lo;
			uint64_t mask = run == 64 ? ~0ULL : ((1ULL << run) - 1) << lo;

			out[w] |= mask;
			set += run;
			v &= ~mask;
		}
	}
	return set;
}

struct row {
	uint64_t tracked;
	double want;		/* fraction of the tracked pages */
	bool packed;		/* lowest pages first instead of spread out */
	uint64_t pages, dirtied, reported, runs;
	double report_us, clean_us, scan_us;
};

/* The 2 MiB aligned window of @len bytes holding the most buffer pages. */
static uint64_t best_window(const uint64_t *phys, size_t n, uint64_t len)
{
	uint64_t best = 0;
	size_t lo = 0, hi, most = 0;

	for (hi = 0; hi < n; hi++) {
		uint64_t start = phys[hi] + SZ_4K > len ? (phys[hi] + SZ_4K - len) : 0;

		start = (start + SZ_2M - 1) & ~(SZ_2M - 1);
		while (phys[lo] < start)
			lo++;
		if (hi - lo + 1 > most) {
			most = hi - lo + 1;
			best = start;
		}
	}
	return best;
}

static void measure(struct row *row, int samples)
{
	uint64_t *phys, base, page_size = SZ_4K, bits, words;
	size_t i, ncand = 0, want, *pick;
	uint64_t *bitmap, *pattern, *devmap, *out;
	double *t_rep, *t_clean, *t_scan;
	struct dl_range r;
	int s, ret;

	phys = calloc(data_pages, sizeof(*phys));
	pick = calloc(data_pages, sizeof(*pick));
	if (!phys || !pick)
		die("memory", ENOMEM);
	for (i = 0; i < data_pages; i++)
		phys[i] = vu_mem_iova(&mem, data + i * SZ_4K);
	qsort(phys, data_pages, sizeof(*phys), cmp_u64);
	base = best_window(phys, data_pages, row->tracked);
	r = (struct dl_range){ base, row->tracked };

	/* Buffer pages inside the window, spread evenly over it. */
	for (i = 0; i < data_pages; i++) {
		uint64_t p = vu_mem_iova(&mem, data + i * SZ_4K);

		if (p >= base && p - base < row->tracked)
			pick[ncand++] = i;
	}
	row->pages = row->tracked / SZ_4K;
	want = row->pages * row->want + 0.5;
	if (want > ncand)
		want = ncand;
	if (!row->packed)
		for (i = 0; i < want; i++)
			pick[i] = pick[(size_t)((double)i * ncand / want)];
	row->dirtied = want;

	ret = dl_start(dev.fd, &r, 1, &page_size);
	if (ret)
		die("DMA_LOGGING_START", -ret);
	if (page_size != SZ_4K)
		fprintf(stderr, "# START returned page size %llu\n", (unsigned long long)page_size);
	bits = r.len / page_size;
	words = (bits + 63) / 64;
	bitmap = calloc(words, 8);
	pattern = calloc(words, 8);
	devmap = calloc(words, 8);
	out = calloc(words, 8);
	t_rep = calloc(samples, sizeof(double));
	t_clean = calloc(samples, sizeof(double));
	t_scan = calloc(samples, sizeof(double));
	if (!bitmap || !pattern || !devmap || !out || !t_rep || !t_clean || !t_scan)
		die("memory", ENOMEM);
	/* Anything logged before this run. */
	ret = dl_report(dev.fd, r.iova, r.len, page_size, bitmap);
	if (ret)
		die("DMA_LOGGING_REPORT", -ret);

	for (s = 0; s < samples; s++) {
		double t0;
		uint64_t n = 0, w;

		dirty(pick, want);
		memset(bitmap, 0, words * 8);
		t0 = now_us();
		ret = dl_report(dev.fd, r.iova, r.len, page_size, bitmap);
		t_rep[s] = now_us() - t0;
		if (ret)
			die("DMA_LOGGING_REPORT", -ret);
		row->runs = 0;
		for (w = 0; w < words; w++) {
			n += __builtin_popcountll(bitmap[w]);
			/* Runs: set bits whose lower neighbour is clear. */
			row->runs += __builtin_popcountll(bitmap[w] &
				~(bitmap[w] << 1 | (w ? bitmap[w - 1] >> 63 : 0)));
		}
		row->reported = n;
		memcpy(pattern, bitmap, words * 8);

		memset(bitmap, 0, words * 8);
		t0 = now_us();
		ret = dl_report(dev.fd, r.iova, r.len, page_size, bitmap);
		t_clean[s] = now_us() - t0;
		if (ret)
			die("DMA_LOGGING_REPORT", -ret);
	}
	for (s = 0; s < samples; s++) {
		double t0;

		memcpy(devmap, pattern, words * 8);
		memset(out, 0, words * 8);
		t0 = now_us();
		if (scan(devmap, out, words) != row->reported)
			die("userspace scan", EIO);
		t_scan[s] = now_us() - t0;
	}
	ret = dl_stop(dev.fd);
	if (ret)
		die("DMA_LOGGING_STOP", -ret);

	row->report_us = median(t_rep, samples);
	row->clean_us = median(t_clean, samples);
	row->scan_us = median(t_scan, samples);
	fprintf(stderr, "# %llu MiB tracked at %#llx: %zu buffer pages inside, %zu dirtied\n",
		(unsigned long long)(row->tracked >> 20), (unsigned long long)base, ncand, want);
	free(phys);
	free(pick);
	free(bitmap);
	free(pattern);
	free(devmap);
	free(out);
	free(t_rep);
	free(t_clean);
	free(t_scan);
}

int main(int argc, char **argv)
{
	/* goal: the ratio to reach, 0 where none is set. */
	static const struct {
		uint64_t tracked;
		double want;
		bool packed;
		double goal;
	} cfgs[] = {
		{ SZ_1G, 0.001, false, 0 },	 { SZ_1G, 0.5, false, 3 },
		{ SZ_1G, 0.5, true, 0 },	 { 16 * SZ_1G, 0.001, false, 1.5 },
		{ 16 * SZ_1G, 0.5, false, 0 }, { 16 * SZ_1G, 0.5, true, 0 },
	};
	struct row rows[sizeof(cfgs) / sizeof(cfgs[0])];
	char found[8][VD_BDF_LEN], bdf[VD_BDF_LEN] = "";
	size_t buffer_mib = 768;
	int samples = 5, opt;
	unsigned int i;

	while ((opt = getopt(argc, argv, "b:m:s:")) != -1) {
		switch (opt) {
		case 'b':
			snprintf(bdf, sizeof(bdf), "%s", optarg);
			break;
		case 'm':
			buffer_mib = strtoul(optarg, NULL, 0);
			break;
		case 's':
			samples = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-b BDF] [-m BUFFER_MIB] [-s SAMPLES]\n", argv[0]);
			return 2;
		}
	}
	if (samples < 1)
		samples = 1;
	if (!bdf[0]) {
		if (vd_find(DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS, found, 8) < 1)
			die("no virtio-devsim function", ENODEV);
		snprintf(bdf, sizeof(bdf), "%s", found[0]);
	}
	setup(bdf, buffer_mib);
	fprintf(stderr, "# %s, %zu MiB buffer (%zu pages), %d samples per cell, medians\n", bdf,
		buffer_mib, data_pages, samples);

	for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		rows[i] = (struct row){ .tracked = cfgs[i].tracked, .want = cfgs[i].want,
					.packed = cfgs[i].packed };
		measure(&rows[i], samples);
	}

	printf("%-8s %-14s %-20s %7s %12s %10s %12s %8s  %s\n", "tracked", "target",
	       "dirty (reported)", "runs", "REPORT us", "clean us", "user scan us", "ratio",
	       "goal");
	for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		struct row *r = &rows[i];
		double ratio = r->report_us / r->scan_us;
		char dirty_s[64], goal_s[32] = "";

		snprintf(dirty_s, sizeof(dirty_s), "%llu (%.3f%%)", (unsigned long long)r->reported,
			 100.0 * r->reported / r->pages);
		if (cfgs[i].goal)
			snprintf(goal_s, sizeof(goal_s), "<= %.1f: %s", cfgs[i].goal,
				 ratio <= cfgs[i].goal ? "met" : "not met");
		printf("%-8s %-14s %-20s %7llu %12.1f %10.1f %12.1f %8.1f  %s\n",
		       r->tracked >= SZ_1G * 16 ? "16 GiB" : "1 GiB",
		       r->want < 0.01 ? "0.1%" : r->packed ? "50%, packed" : "50%", dirty_s,
		       (unsigned long long)r->runs, r->report_us, r->clean_us, r->scan_us, ratio,
		       goal_s);
	}
	printf("# ratio = REPORT / userspace scan of the same bitmap (reproduce: make bench).\n"
	       "# 'clean' is a REPORT right\n"
	       "# after, with nothing new. A target the buffer cannot reach shows what was reached.\n"
	       "# Dirty pages are spread evenly over the buffer's pages in the range, or 'packed':\n"
	       "# the lowest ones, in runs as long as the buffer is physically contiguous.\n");
	vu_reset(&vdev, TIMEOUT_MS);
	vd_close(&dev);
	vu_mem_free(&mem);
	return 0;
}
