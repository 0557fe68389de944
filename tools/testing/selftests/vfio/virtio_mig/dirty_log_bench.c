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
 * With -a the device is a member function whose dirty logging goes through
 * its owner's admin write recording (admin-write-recording.rst; the device
 * model started with --no-tracker, so the driver has no other backend): the
 * same reads dirty the same pages, the owner records them, and a REPORT takes
 * the records back with WRITE_RECORDS_READ commands. STATS_FILE is the member's
 * device-model counters (run-vm.sh's devsim<I>.stats); the admin commands and
 * records of each REPORT are their deltas, and the record-store overflows of
 * the whole run are set against the records stored. The rows are the admin
 * backend's: a density the buffer cannot reach is not measured, and the row
 * says why; a row "buffer" dirties every buffer page of its range instead.
 *
 *   dirty_log_bench [-b BDF] [-m BUFFER_MIB] [-s SAMPLES] [-p PAGES_PER_READ]
 *                   [-a STATS_FILE] [-c MIB:PERCENT[:packed] | -c MIB:buffer]...
 *
 * -p   4 KiB pages per device read request (default 64); each is one
 *      descriptor, so the queue (device model --queue-size) must hold 2 more
 * -c   measure this cell instead of the default rows (repeatable)
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
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
#define MAX_PAGES_PER_REQ	4096
#define MAX_INFLIGHT		3
#define TIMEOUT_MS		20000

#define SZ_4K			4096ULL
#define SZ_2M			(2ULL << 20)
#define SZ_1G			(1ULL << 30)

/*
 * Bytes of one WRITE_RECORDS_READ on the admin queue: the driver's header and
 * window (24 + 16), the device's status and result header (8 + 8), 8 per record.
 */
#define ADMIN_READ_OUT		40
#define ADMIN_READ_IN		16
#define ADMIN_RECORD		8

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
static unsigned int pages_per_req = PAGES_PER_REQ;
static struct vu_buf *bufs;
/* The member's device-model counters (-a): admin mode. */
static const char *stats_file;

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
	int ret, tries;

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
	/*
	 * Room for every request in flight: a larger queue than the device has is
	 * cut down. Each ring must be physically contiguous, and past 256 entries
	 * the descriptor table is more than a page: the buffer is 4 KiB pages, so
	 * try further on until the rings land on contiguous ones.
	 */
	for (tries = 0; tries < 1024; tries++) {
		ret = vu_vq_setup(&vdev, &vq, 0, QUEUE_SIZE > MAX_INFLIGHT * (pages_per_req + 2) ?
				  QUEUE_SIZE : MAX_INFLIGHT * (pages_per_req + 2));
		if (ret != -ENOMEM)
			break;
	}
	if (ret)
		die("queue setup", -ret);
	if (vq.size < pages_per_req + 2) {
		fprintf(stderr, "dirty_log_bench: a %u-entry queue cannot hold a %u-page read:"
			" start the device model with a larger --queue-size\n", vq.size,
			pages_per_req);
		exit(1);
	}
	vu_driver_ok(&vdev);
	capacity = vu_cfg_read64(&vdev, 0);
	if (capacity <= 2ULL * pages_per_req * 8)
		die("disk too small for the read size", EINVAL);
	bufs = calloc(pages_per_req + 2, sizeof(*bufs));
	if (!bufs)
		die("memory", ENOMEM);
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
			unsigned int count = n - next < pages_per_req ? n - next : pages_per_req;

			if (busy[i])
				continue;
			r->hdr.type = htole32(VIRTIO_BLK_T_IN);
			r->hdr.sector = htole64(sector);
			r->status = 0xff;
			sector = (sector + count * 8) % (capacity - pages_per_req * 8);
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

/* Counters of the member's device model (admin mode). */
struct counters {
	long long cmds;		/* admin_commands */
	long long read;		/* write_records_read */
	long long stored;	/* write_records_stored */
	long long overflows;	/* write_record_overflows */
};

static void read_counters(struct counters *c)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "admin_commands", offsetof(struct counters, cmds) },
		{ "write_records_read", offsetof(struct counters, read) },
		{ "write_records_stored", offsetof(struct counters, stored) },
		{ "write_record_overflows", offsetof(struct counters, overflows) },
	};
	unsigned int found = 0, k;
	char line[160];
	FILE *f;

	f = fopen(stats_file, "r");
	if (!f)
		die(stats_file, errno);
	while (fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '=');

		if (!eq)
			continue;
		*eq = 0;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			if (strcmp(line, keys[k].key))
				continue;
			*(long long *)((char *)c + keys[k].off) = strtoll(eq + 1, NULL, 10);
			found |= 1u << k;
		}
	}
	fclose(f);
	if (found != (1u << (sizeof(keys) / sizeof(keys[0]))) - 1)
		die("device-model counters: admin write recording keys missing", ENOENT);
}

/*
 * The counters once the device model has written them since now: run-vm.sh
 * has them written twice a second, so two equal reads 600 ms apart.
 */
static void settle_counters(struct counters *c)
{
	struct counters prev;
	int round;

	read_counters(&prev);
	for (round = 0; round < 20; round++) {
		usleep(600 * 1000);
		read_counters(c);
		if (!memcmp(c, &prev, sizeof(*c)))
			return;
		prev = *c;
	}
	die("device-model counters do not settle", EAGAIN);
}

struct row {
	uint64_t tracked;
	double want;		/* fraction of the tracked pages */
	bool packed;		/* lowest pages first instead of spread out */
	bool all;		/* every buffer page in the range */
	uint64_t pages, dirtied, reported, runs;
	double report_us, clean_us, scan_us;
	double page_us;		/* a REPORT of the range's first page: the fixed costs */
	/* Admin mode: per REPORT, medians of the counter deltas. */
	double cmds, records, clean_cmds, clean_records;
	char skipped[160];	/* why the row was not measured */
};

static uint64_t admin_bytes(double cmds, double records)
{
	return cmds * (ADMIN_READ_OUT + ADMIN_READ_IN) + records * ADMIN_RECORD + 0.5;
}

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
	uint64_t *bitmap, *devmap, *out;
	double *t_rep, *t_clean, *t_page, *t_scan, *d_cmds, *d_recs, *c_cmds, *c_recs;
	struct counters c0 = {}, c1 = {}, c2 = {};
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
	want = row->all ? ncand : (size_t)(row->pages * row->want + 0.5);
	if (want > ncand && stats_file) {
		snprintf(row->skipped, sizeof(row->skipped),
			 "not measured: needs %zu pages of device writes, the buffer has %zu"
			 " in the range (VM memory %ld MiB)", want, ncand,
			 (long)(sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGESIZE) >> 10) >> 10));
		fprintf(stderr, "# %llu MiB tracked: %s\n",
			(unsigned long long)(row->tracked >> 20), row->skipped);
		free(phys);
		free(pick);
		return;
	}
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
	devmap = calloc(words, 8);
	out = calloc(words, 8);
	t_rep = calloc(samples, sizeof(double));
	t_clean = calloc(samples, sizeof(double));
	t_page = calloc(samples, sizeof(double));
	t_scan = calloc(samples, sizeof(double));
	d_cmds = calloc(samples, sizeof(double));
	d_recs = calloc(samples, sizeof(double));
	c_cmds = calloc(samples, sizeof(double));
	c_recs = calloc(samples, sizeof(double));
	if (!bitmap || !devmap || !out || !t_rep || !t_clean || !t_page || !t_scan ||
	    !d_cmds || !d_recs || !c_cmds || !c_recs)
		die("memory", ENOMEM);
	/* Anything logged before this run. */
	ret = dl_report(dev.fd, r.iova, r.len, page_size, bitmap);
	if (ret)
		die("DMA_LOGGING_REPORT", -ret);
	/* Device writes between reports send no admin commands: each delta is one REPORT's. */
	if (stats_file)
		settle_counters(&c0);

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
		if (stats_file) {
			settle_counters(&c1);
			d_cmds[s] = c1.cmds - c0.cmds;
			d_recs[s] = c1.read - c0.read;
		}
		row->runs = 0;
		for (w = 0; w < words; w++) {
			n += __builtin_popcountll(bitmap[w]);
			/* Runs: set bits whose lower neighbour is clear. */
			row->runs += __builtin_popcountll(bitmap[w] &
				~(bitmap[w] << 1 | (w ? bitmap[w - 1] >> 63 : 0)));
		}
		row->reported = n;

		/* The userspace scan of the same bitmap, in the same moment of the run. */
		memcpy(devmap, bitmap, words * 8);
		memset(out, 0, words * 8);
		t0 = now_us();
		if (scan(devmap, out, words) != row->reported)
			die("userspace scan", EIO);
		t_scan[s] = now_us() - t0;

		memset(bitmap, 0, words * 8);
		t0 = now_us();
		ret = dl_report(dev.fd, r.iova, r.len, page_size, bitmap);
		t_clean[s] = now_us() - t0;
		if (ret)
			die("DMA_LOGGING_REPORT", -ret);
		if (stats_file) {
			settle_counters(&c2);
			c_cmds[s] = c2.cmds - c1.cmds;
			c_recs[s] = c2.read - c1.read;
		}

		/*
		 * What every REPORT costs whatever its length: the ioctl, the
		 * driver's check of the device (a register read, or an admin
		 * command), one page of the user's bitmap pinned.
		 */
		t0 = now_us();
		ret = dl_report(dev.fd, r.iova, page_size, page_size, bitmap);
		t_page[s] = now_us() - t0;
		if (ret)
			die("DMA_LOGGING_REPORT of one page", -ret);
		if (stats_file) {
			settle_counters(&c2);
			c0 = c2;
		}
	}
	ret = dl_stop(dev.fd);
	if (ret)
		die("DMA_LOGGING_STOP", -ret);

	row->report_us = median(t_rep, samples);
	row->clean_us = median(t_clean, samples);
	row->page_us = median(t_page, samples);
	row->scan_us = median(t_scan, samples);
	row->cmds = median(d_cmds, samples);
	row->records = median(d_recs, samples);
	row->clean_cmds = median(c_cmds, samples);
	row->clean_records = median(c_recs, samples);
	fprintf(stderr, "# %llu MiB tracked at %#llx: %zu buffer pages inside, %zu dirtied\n",
		(unsigned long long)(row->tracked >> 20), (unsigned long long)base, ncand, want);
	free(phys);
	free(pick);
	free(bitmap);
	free(devmap);
	free(out);
	free(t_rep);
	free(t_clean);
	free(t_page);
	free(t_scan);
	free(d_cmds);
	free(d_recs);
	free(c_cmds);
	free(c_recs);
}

struct cell {
	uint64_t tracked;
	double want;
	bool packed;
	bool all;
	double goal;		/* the ratio to reach, 0 where none is set */
};

/* The tracker's rows. */
static const struct cell tracker_cells[] = {
	{ SZ_1G, 0.001, false, false, 0 },	 { SZ_1G, 0.5, false, false, 3 },
	{ SZ_1G, 0.5, true, false, 0 },		 { 16 * SZ_1G, 0.001, false, false, 1.5 },
	{ 16 * SZ_1G, 0.5, false, false, 0 }, { 16 * SZ_1G, 0.5, true, false, 0 },
};

/* The admin backend's rows. */
static const struct cell admin_cells[] = {
	{ SZ_1G, 0.001, false, false, 0 },	 { SZ_1G, 0.5, false, false, 0 },
	{ 16 * SZ_1G, 0.001, false, false, 0 }, { 16 * SZ_1G, 0.5, false, false, 0 },
	{ 16 * SZ_1G, 0, false, true, 0 },
};

/* -c MIB:PERCENT[:packed] or MIB:buffer. */
static bool parse_cell(const char *arg, struct cell *c)
{
	char *end;

	*c = (struct cell){ .tracked = strtoull(arg, &end, 0) << 20 };
	if (*end++ != ':' || !c->tracked || c->tracked % SZ_2M)
		return false;
	if (!strcmp(end, "buffer")) {
		c->all = true;
		return true;
	}
	c->want = strtod(end, &end) / 100;
	if (!strcmp(end, ":packed"))
		c->packed = true;
	else if (*end)
		return false;
	return c->want > 0 && c->want <= 1;
}

/* The -c argument of @c, for the reproduce lines. */
static void cell_arg(const struct cell *c, char *buf, size_t len)
{
	if (c->all)
		snprintf(buf, len, "%llu:buffer", (unsigned long long)(c->tracked >> 20));
	else
		snprintf(buf, len, "%llu:%g%s", (unsigned long long)(c->tracked >> 20),
			 c->want * 100, c->packed ? ":packed" : "");
}

static void cell_label(const struct cell *c, char *buf, size_t len)
{
	if (c->all)
		snprintf(buf, len, "buffer");
	else
		snprintf(buf, len, "%g%%%s", c->want * 100, c->packed ? ", packed" : "");
}

static void tracked_label(uint64_t tracked, char *buf, size_t len)
{
	if (tracked % SZ_1G)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(tracked >> 20));
	else
		snprintf(buf, len, "%llu GiB", (unsigned long long)(tracked >> 30));
}

static void print_tracker(const struct cell *cells, const struct row *rows, unsigned int n)
{
	unsigned int i;

	printf("%-8s %-14s %-20s %7s %12s %10s %9s %12s %8s  %s\n", "tracked", "target",
	       "dirty (reported)", "runs", "REPORT us", "clean us", "1-page us", "user scan us",
	       "ratio", "goal");
	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		double ratio = r->report_us / r->scan_us;
		char dirty_s[64], goal_s[96] = "", target[32], tracked[24];

		cell_label(&cells[i], target, sizeof(target));
		tracked_label(r->tracked, tracked, sizeof(tracked));
		snprintf(dirty_s, sizeof(dirty_s), "%llu (%.3f%%)", (unsigned long long)r->reported,
			 100.0 * r->reported / r->pages);
		if (cells[i].goal && ratio <= cells[i].goal)
			snprintf(goal_s, sizeof(goal_s), "<= %.1f: met", cells[i].goal);
		else if (cells[i].goal)
			snprintf(goal_s, sizeof(goal_s), "<= %.1f: not met; clean REPORT / scan %.2f",
				 cells[i].goal, r->clean_us / r->scan_us);
		printf("%-8s %-14s %-20s %7llu %12.1f %10.1f %9.1f %12.1f %8.1f  %s\n", tracked,
		       target, dirty_s, (unsigned long long)r->runs, r->report_us, r->clean_us,
		       r->page_us, r->scan_us, ratio, goal_s);
	}
	printf("# ratio = REPORT / userspace scan of the same bitmap (reproduce: make bench).\n"
	       "# 'clean' is a REPORT right after, with nothing new; '1-page' one of the range's\n"
	       "# first page, what every REPORT costs (the ioctl, one register read through the\n"
	       "# device model, one page of the bitmap pinned). A target the buffer cannot reach\n"
	       "# shows what was reached.\n"
	       "# Dirty pages are spread evenly over the buffer's pages in the range, or 'packed':\n"
	       "# the lowest ones, in runs as long as the buffer is physically contiguous.\n");
}

static void print_admin(const struct cell *cells, const struct row *rows, unsigned int n,
			const char *argv0, const char *opts, const struct counters *total)
{
	unsigned int i;

	printf("%-8s %-8s %-18s %10s %9s %12s %6s %5s %8s %8s %10s %11s\n", "tracked",
	       "target", "dirty (reported)", "REPORT us", "clean us", "user scan us", "ratio",
	       "cmds", "records", "bytes", "clean cmds", "clean bytes");
	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char dirty_s[64], target[32], tracked[24], arg[48];

		cell_label(&cells[i], target, sizeof(target));
		tracked_label(r->tracked, tracked, sizeof(tracked));
		cell_arg(&cells[i], arg, sizeof(arg));
		if (r->skipped[0]) {
			printf("%-8s %-8s %s\n", tracked, target, r->skipped);
		} else {
			snprintf(dirty_s, sizeof(dirty_s), "%llu (%.3f%%)",
				 (unsigned long long)r->reported, 100.0 * r->reported / r->pages);
			printf("%-8s %-8s %-18s %10.1f %9.1f %12.1f %6.1f %5.0f %8.0f %8llu %10.0f"
			       " %11llu\n", tracked, target, dirty_s, r->report_us, r->clean_us,
			       r->scan_us, r->report_us / r->scan_us, r->cmds, r->records,
			       (unsigned long long)admin_bytes(r->cmds, r->records), r->clean_cmds,
			       (unsigned long long)admin_bytes(r->clean_cmds, r->clean_records));
		}
		printf("#   reproduce: make bench (%s%s -c %s)\n", argv0, opts, arg);
	}
	printf("# ratio = REPORT / userspace scan of the same bitmap; 'clean' is a REPORT right after,\n"
	       "# with nothing new. cmds = admin commands the owner executed for the REPORT, records =\n"
	       "# page records they returned, bytes = %d per command (header, window, status, result\n"
	       "# header) + %d per record (device-model counters admin_commands, write_records_read;\n"
	       "# medians of the per-REPORT deltas).\n", ADMIN_READ_OUT + ADMIN_READ_IN, ADMIN_RECORD);
	printf("%-58s %lld overflows / %lld records stored = ",
	       "record-store overflow rate, this bench's device writes", total->overflows,
	       total->stored);
	if (total->stored)
		printf("%.4f %%\n", 100.0 * total->overflows / total->stored);
	else
		printf("n/a (nothing stored)\n");
	printf("#   reproduce: make bench (%s%s, write_record_overflows / write_records_stored"
	       " deltas over the run)\n", argv0, opts);
}

int main(int argc, char **argv)
{
	struct cell cells[16];
	struct row rows[16];
	const struct cell *defaults = tracker_cells;
	unsigned int n = 0, i;
	char found[8][VD_BDF_LEN], bdf[VD_BDF_LEN] = "", opts[1024] = "";
	size_t buffer_mib = 768, ol = 0;
	struct counters start = {}, end = {};
	int samples = 9, opt;
	const char *argv0;

	while ((opt = getopt(argc, argv, "a:b:c:m:p:s:")) != -1) {
		switch (opt) {
		case 'a':
			stats_file = optarg;
			break;
		case 'b':
			snprintf(bdf, sizeof(bdf), "%s", optarg);
			break;
		case 'c':
			if (n == sizeof(cells) / sizeof(cells[0]) || !parse_cell(optarg, &cells[n++])) {
				fprintf(stderr, "%s: bad or too many -c %s\n", argv[0], optarg);
				return 2;
			}
			continue;
		case 'm':
			buffer_mib = strtoul(optarg, NULL, 0);
			break;
		case 'p':
			pages_per_req = strtoul(optarg, NULL, 0);
			if (!pages_per_req || pages_per_req > MAX_PAGES_PER_REQ) {
				fprintf(stderr, "%s: -p 1..%d\n", argv[0], MAX_PAGES_PER_REQ);
				return 2;
			}
			break;
		case 's':
			samples = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-b BDF] [-m BUFFER_MIB] [-s SAMPLES]"
				" [-p PAGES_PER_READ] [-a STATS_FILE]"
				" [-c MIB:PERCENT[:packed] | -c MIB:buffer]...\n", argv[0]);
			return 2;
		}
		/* Every option but -c, for the reproduce lines. */
		if (ol < sizeof(opts))
			ol += snprintf(opts + ol, sizeof(opts) - ol, " -%c %s", opt, optarg);
	}
	if (samples < 1)
		samples = 1;
	if (stats_file)
		defaults = admin_cells;
	if (!n) {
		n = stats_file ? sizeof(admin_cells) / sizeof(admin_cells[0]) :
				 sizeof(tracker_cells) / sizeof(tracker_cells[0]);
		memcpy(cells, defaults, n * sizeof(cells[0]));
	} else {
		/* A default row keeps its goal. */
		for (i = 0; i < n; i++) {
			const struct cell *d = stats_file ? admin_cells : tracker_cells;
			unsigned int k, nd = stats_file ?
				sizeof(admin_cells) / sizeof(admin_cells[0]) :
				sizeof(tracker_cells) / sizeof(tracker_cells[0]);

			for (k = 0; k < nd; k++)
				if (d[k].tracked == cells[i].tracked &&
				    d[k].want - cells[i].want < 1e-9 && cells[i].want - d[k].want < 1e-9 &&
				    d[k].packed == cells[i].packed && d[k].all == cells[i].all)
					cells[i].goal = d[k].goal;
		}
	}
	if (!bdf[0]) {
		if (vd_find(DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS, found, 8) < 1)
			die("no virtio-devsim function", ENODEV);
		snprintf(bdf, sizeof(bdf), "%s", found[0]);
		if (ol < sizeof(opts))
			ol += snprintf(opts + ol, sizeof(opts) - ol, " -b %s", bdf);
	}
	argv0 = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	setup(bdf, buffer_mib);
	fprintf(stderr, "# %s, %zu MiB buffer (%zu pages), %u pages per read, %d samples per cell,"
		" medians%s\n", bdf, buffer_mib, data_pages, pages_per_req, samples,
		stats_file ? ", admin write recording" : "");
	if (stats_file)
		settle_counters(&start);

	for (i = 0; i < n; i++) {
		rows[i] = (struct row){ .tracked = cells[i].tracked, .want = cells[i].want,
					.packed = cells[i].packed, .all = cells[i].all };
		measure(&rows[i], samples);
	}

	if (stats_file) {
		settle_counters(&end);
		end.stored -= start.stored;
		end.overflows -= start.overflows;
		print_admin(cells, rows, n, argv0, opts, &end);
	} else {
		print_tracker(cells, rows, n);
	}
	vu_reset(&vdev, TIMEOUT_MS);
	vd_close(&dev);
	vu_mem_free(&mem);
	return 0;
}
