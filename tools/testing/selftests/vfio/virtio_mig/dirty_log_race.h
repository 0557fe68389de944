/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Device writes racing dirty-log reports, for the dirty-log tests of both
 * backends (memory tracker, admin write recording): a workload thread reads
 * from the disk into 4 KiB buffers round-robin, some requests at a time,
 * while the caller reports every range again and again. Every read the device
 * completed must be in one of the reports that ended after its submission, up
 * to the first that started after its completion. Times are ticks of one
 * sequence counter both threads advance.
 */
#ifndef DIRTY_LOG_RACE_H
#define DIRTY_LOG_RACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dirty_log_util.h"
#include "virtio_user.h"

#define DL_RACE_MAX_DEPTH	64
#define DL_RACE_MAX_BUFS	256

struct dl_race_read {
	uint16_t buf;
	uint64_t t_sub, t_done;
};

struct dl_race_report {
	uint64_t t_start, t_end;
	uint64_t bufs[DL_RACE_MAX_BUFS / 64];	/* the buffers the report held */
};

struct dl_race {
	/* Set by the caller. */
	int fd;				/* the device, for the reports */
	struct dl_set *set;		/* logging started on it */
	struct vu_vq *vq;
	struct vu_blk_req *const *req;	/* @depth requests */
	uint8_t *const *buf;		/* @nbuf 4 KiB buffers in @mem */
	const struct vu_mem *mem;
	unsigned int depth, nbuf, requests, seconds;
	uint64_t capacity;		/* of the disk, in sectors */
	/* Filled by dl_race_run(). */
	struct dl_race_read *done;
	unsigned int ndone;
	struct dl_race_report *rep;
	size_t nrep;
	volatile int stop;
	int err;
};

/*
 * Runs the race until @requests reads completed (or the workload failed,
 * or @seconds passed), reporting meanwhile, then reports once more with the
 * device idle. Returns 0, or -errno of the workload or of a report.
 */
int dl_race_run(struct dl_race *r);
/*
 * Add to @required every page the device wrote during the race: the buffers,
 * each request's status byte and the used ring's index, then finish it.
 * Returns 0 or -ENOMEM.
 */
int dl_race_written_pages(const struct dl_race *r, struct dl_pages *required);
/* Whether read @c is in one of the reports that must hold it. */
bool dl_race_seen(const struct dl_race *r, unsigned int c);
void dl_race_free(struct dl_race *r);

#endif /* DIRTY_LOG_RACE_H */
