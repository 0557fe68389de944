// SPDX-License-Identifier: GPL-2.0
/* Device writes racing dirty-log reports: see dirty_log_race.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/virtio_blk.h>

#include "dirty_log_race.h"

static uint64_t seq;

static uint64_t tick(void)
{
	return __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static void *workload(void *arg)
{
	struct dl_race *r = arg;
	uint64_t t_sub[DL_RACE_MAX_DEPTH], deadline = now_ms() + r->seconds * 1000ULL;
	unsigned int next_buf = 0, submitted = 0, i;
	uint16_t req_buf[DL_RACE_MAX_DEPTH];
	bool busy[DL_RACE_MAX_DEPTH] = {};

	while (r->ndone < r->requests && !r->stop) {
		unsigned int was = submitted;
		void *cookie;
		uint32_t len;
		int ret;

		for (i = 0; i < r->depth && submitted < r->requests; i++) {
			struct vu_blk_req *q = r->req[i];

			if (busy[i])
				continue;
			req_buf[i] = next_buf;
			q->data = r->buf[next_buf];
			q->len = 4096;
			next_buf = (next_buf + 1) % r->nbuf;
			t_sub[i] = tick();
			ret = vu_blk_submit(r->vq, q, VIRTIO_BLK_T_IN,
					    (submitted * 8) % (r->capacity - 8));
			if (ret) {
				r->err = ret;
				return NULL;
			}
			busy[i] = true;
			submitted++;
		}
		/* Each kick is a message to the device model: only for new requests. */
		if (submitted != was)
			vu_vq_kick(r->vq);
		ret = vu_vq_harvest(r->vq, &cookie, &len);
		if (ret < 0) {
			r->err = ret;
			return NULL;
		}
		if (!ret) {
			if (now_ms() > deadline) {
				r->err = -ETIMEDOUT;
				return NULL;
			}
			continue;
		}
		for (i = 0; i < r->depth && r->req[i] != cookie; i++)
			;
		if (i == r->depth || ((struct vu_blk_req *)cookie)->status != VIRTIO_BLK_S_OK) {
			r->err = -EIO;
			return NULL;
		}
		r->done[r->ndone] = (struct dl_race_read){ req_buf[i], t_sub[i], tick() };
		__atomic_store_n(&r->ndone, r->ndone + 1, __ATOMIC_RELEASE);
		busy[i] = false;
	}
	return NULL;
}

/* One report of every range, and which buffers it held. */
static int record_report(struct dl_race *r, struct dl_race_report *rec)
{
	struct dl_set *s = r->set;
	unsigned int b;
	long ret;

	memset(rec, 0, sizeof(*rec));
	rec->t_start = tick();
	ret = dl_report_all(r->fd, s);
	rec->t_end = tick();
	if (ret < 0)
		return (int)ret;
	for (b = 0; b < r->nbuf; b++) {
		uint64_t at = vu_mem_iova(r->mem, r->buf[b]);
		int i = dl_find(s, at);
		uint64_t bit;

		if (i < 0)
			return -ERANGE;
		bit = (at - s->r[i].iova) / s->page_size;
		if (s->tmp[i][bit / 64] >> (bit % 64) & 1)
			rec->bufs[b / 64] |= 1ULL << (b % 64);
	}
	return 0;
}

int dl_race_run(struct dl_race *r)
{
	size_t cap = 0;
	pthread_t th;
	int ret = 0;

	if (r->depth > DL_RACE_MAX_DEPTH || r->nbuf > DL_RACE_MAX_BUFS || r->capacity <= 8)
		return -EINVAL;
	r->done = calloc(r->requests, sizeof(*r->done));
	if (!r->done)
		return -ENOMEM;
	ret = -pthread_create(&th, NULL, workload, r);
	if (ret)
		return ret;
	for (;;) {
		bool finished = __atomic_load_n(&r->ndone, __ATOMIC_ACQUIRE) >= r->requests ||
				r->err;

		/* Room for this report and the final one. */
		if (r->nrep + 2 > cap) {
			struct dl_race_report *rep;

			cap = cap ? 2 * cap : 1024;
			rep = realloc(r->rep, cap * sizeof(*rep));
			if (!rep) {
				ret = -ENOMEM;
				break;
			}
			r->rep = rep;
		}
		if (finished)
			break;
		ret = record_report(r, &r->rep[r->nrep++]);
		if (ret)
			break;
	}
	r->stop = 1;
	pthread_join(th, NULL);
	if (ret)
		return ret;
	if (r->err)
		return r->err;
	/* The final report, with the device idle. */
	return record_report(r, &r->rep[r->nrep++]);
}

int dl_race_written_pages(const struct dl_race *r, struct dl_pages *required)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < r->nbuf && !ret; i++)
		ret = dl_pages_add(required, r->mem, r->buf[i], 4096, 4096);
	for (i = 0; i < r->depth && !ret; i++)
		ret = dl_pages_add(required, r->mem, &r->req[i]->status, 1, 4096);
	if (!ret)
		ret = dl_pages_add(required, r->mem, &r->vq->used->idx, 2, 4096);
	if (!ret)
		dl_pages_finish(required);
	return ret;
}

bool dl_race_seen(const struct dl_race *r, unsigned int c)
{
	const struct dl_race_read *d = &r->done[c];
	size_t lo = 0, hi = r->nrep, k;

	/* The first report that ended after the submission. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->rep[mid].t_end < d->t_sub)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (k = lo; k < r->nrep; k++) {
		if (r->rep[k].bufs[d->buf / 64] >> (d->buf % 64) & 1)
			return true;
		if (r->rep[k].t_start > d->t_done)
			break;
	}
	return false;
}

void dl_race_free(struct dl_race *r)
{
	free(r->done);
	free(r->rep);
	r->done = NULL;
	r->rep = NULL;
}
