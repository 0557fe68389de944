// SPDX-License-Identifier: GPL-2.0
/*
 * Live migration of a running virtio-blk workload between two device-model
 * functions, narrated: the demo behind `make run`.
 *
 * A userspace driver runs a batch of writes on the source (A) with requests
 * still in flight, migrates A's state to the destination (B) through the VFIO
 * migration uAPI, points its rings at B and finishes there. It prints every
 * state, the stream size, the time of each step and, from the device model's
 * counters, the register accesses each device saw while the driver migrated it.
 *
 * Usage: virtio_mig_demo [-n REQUESTS] SOURCE_BDF DEST_BDF [STATS_DIR]
 *
 * -n sets the batch in flight on A (default and at most 20); 0 migrates an
 * idle queue, the baseline of the register-access count.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vfio_mig_util.h"

#define MAX_REQUESTS	20	/* three descriptors each in a 64-entry ring */
#define IO_LEN		4096
#define FIRST_SECTOR	4096

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

/* The counters are refreshed twice a second: wait until they settle. */
static void snapshot(const char *stats_dir, long counts[2])
{
	if (mig_devsim_settle(stats_dir, 2, "mmio_", counts))
		counts[0] = counts[1] = -1;
}

static int step(struct mig_dev *m, const char *who, uint32_t state, int *fd)
{
	uint64_t t0 = now_us();
	int ret = mig_set_state(&m->vd, state, fd);

	printf("  %s -> %-12s %s (%.1f ms)\n", who, mig_state_name(state),
	       ret ? strerror(-ret) : "ok", (now_us() - t0) / 1000.0);
	return ret;
}

static void move_rings(struct vu_vq *vq, struct vu_dev *d)
{
	uint16_t off;

	vu_write16(d->common + VIRTIO_PCI_COMMON_Q_SELECT, vq->index);
	off = vu_read16(d->common + VIRTIO_PCI_COMMON_Q_NOFF);
	vq->dev = d;
	vq->notify = d->notify + (size_t)off * d->notify_off_multiplier;
}

int main(int argc, char **argv)
{
	const char *stats_dir = mig_devsim_stats_dir();
	struct vu_blk_req *req[MAX_REQUESTS];
	int requests = MAX_REQUESTS, opt;
	long before[2], after[2];
	struct mig_dev a, b;
	int fd = -1, i, done_a, ret, total;
	bool ok;
	uint8_t *stream = NULL;
	size_t len = 0;
	struct vu_mem mem;
	struct vu_vq vq;
	uint64_t t0;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		requests = opt == 'n' ? atoi(optarg) : -1;
		if (requests < 0 || requests > MAX_REQUESTS) {
			fprintf(stderr, "usage: %s [-n 0..%d] SOURCE_BDF DEST_BDF [STATS_DIR]\n",
				argv[0], MAX_REQUESTS);
			return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: %s [-n REQUESTS] SOURCE_BDF DEST_BDF [STATS_DIR]\n",
			argv[0]);
		return 2;
	}
	argv += optind - 1;
	argc -= optind - 1;
	if (argc > 3)
		stats_dir = argv[3];
	if (vu_mem_alloc(&mem, 2 << 20) || vu_mem_set_physical(&mem) ||
	    mig_dev_open(&a, argv[1], &mem) || mig_dev_open(&b, argv[2], &mem)) {
		fprintf(stderr, "cannot open %s and %s through VFIO\n", argv[1], argv[2]);
		return 1;
	}
	printf("source A %s, destination B %s (no-IOMMU, shared DMA memory)\n", argv[1], argv[2]);

	/* A runs a batch of writes; the device model holds each a while. */
	ret = mig_blk_start(&a, &vq, 64);
	if (!ret)
		ret = vu_reset(&b.vu, MIG_RESET_TIMEOUT_MS);
	if (ret) {
		fprintf(stderr, "cannot start the devices: %s\n", strerror(-ret));
		return 1;
	}
	/* From here on this program's only register access is the one doorbell write below. */
	snapshot(stats_dir, before);
	for (i = 0; i < requests; i++) {
		req[i] = vu_blk_req_alloc(&mem, IO_LEN);
		if (req[i])
			mig_fill_pattern(req[i]->data, IO_LEN, 1, FIRST_SECTOR + i * 8);
		if (!req[i] || vu_blk_submit(&vq, req[i], VIRTIO_BLK_T_OUT, FIRST_SECTOR + i * 8)) {
			fprintf(stderr, "cannot submit request %d\n", i);
			return 1;
		}
	}
	if (requests) {
		vu_vq_kick(&vq);
		usleep(50 * 1000);
	}
	printf("A: %d writes published, %u completed so far\n", requests, vu_vq_used_idx(&vq));

	printf("migrating:\n");
	t0 = now_us();
	if (step(&a, "A", VFIO_DEVICE_STATE_RUNNING_P2P, NULL) ||
	    step(&a, "A", VFIO_DEVICE_STATE_STOP, NULL) ||
	    step(&a, "A", VFIO_DEVICE_STATE_STOP_COPY, &fd))
		return 1;
	ret = mig_read_stream(fd, &stream, &len);
	close(fd);
	if (ret)
		return 1;
	printf("  A stream: %zu bytes; A stopped at used index %u\n", len, vu_vq_used_idx(&vq));
	if (step(&b, "B", VFIO_DEVICE_STATE_RUNNING_P2P, NULL) ||
	    step(&b, "B", VFIO_DEVICE_STATE_STOP, NULL) ||
	    step(&b, "B", VFIO_DEVICE_STATE_RESUMING, &fd) ||
	    mig_write_stream(fd, stream, len, 4096) ||
	    step(&b, "B", VFIO_DEVICE_STATE_STOP, NULL))
		return 1;
	close(fd);
	if (step(&b, "B", VFIO_DEVICE_STATE_RUNNING_P2P, NULL) ||
	    step(&b, "B", VFIO_DEVICE_STATE_RUNNING, NULL))
		return 1;
	printf("  downtime (A stopping to B running): %.1f ms\n", (now_us() - t0) / 1000.0);
	snapshot(stats_dir, after);
	/* The demo's own doorbell goes to B from now on. */
	move_rings(&vq, &b.vu);

	/* The same rings go on on B: first whatever A left to complete, then a second batch. */
	ret = vu_blk_wait_all(&vq, MIG_REQUEST_TIMEOUT_MS);
	if (ret) {
		printf("B: the first batch did not complete: %s\n", strerror(-ret));
		return 1;
	}
	for (i = 0; i < requests / 2; i++) {
		struct vu_blk_req *r = req[i];

		r->done = false;
		r->status = VU_BLK_STATUS_NONE;
		mig_fill_pattern(r->data, IO_LEN, 2, FIRST_SECTOR + i * 8);
		if (vu_blk_submit(&vq, r, VIRTIO_BLK_T_OUT, FIRST_SECTOR + i * 8))
			return 1;
	}
	vu_vq_kick(&vq);
	ret = vu_blk_wait_all(&vq, MIG_REQUEST_TIMEOUT_MS);
	done_a = 0;
	for (i = 0; i < requests; i++)
		done_a += req[i]->done && req[i]->status == VIRTIO_BLK_S_OK;
	total = requests + requests / 2;
	ok = ret == 0 && done_a == requests && vu_vq_used_idx(&vq) == total;
	printf("B: %d more writes on the same rings: used index %u of %d submitted, %s\n",
	       requests / 2, vu_vq_used_idx(&vq), total,
	       ok ? "every request completed once" : "requests missing or failed");
	printf("device register accesses by the driver during the migration (device-model "
	       "counters, the doorbell write left out):\n  devsim0 %ld, devsim1 %ld\n",
	       after[0] - before[0] - (requests > 0), after[1] - before[1]);
	/* A's queue still points at the rings B now owns: reset it rather than resume it. */
	mig_dev_reset(&a);
	return !ok;
}
