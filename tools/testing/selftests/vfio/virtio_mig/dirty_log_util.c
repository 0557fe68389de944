// SPDX-License-Identifier: GPL-2.0
/*
 * Device DMA dirty logging helpers; see dirty_log_util.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "dirty_log_util.h"

int dl_start(int fd, const struct dl_range *r, unsigned int n, uint64_t *page_size)
{
	struct vfio_device_feature_dma_logging_range ranges[DL_MAX_RANGES];
	struct vfio_device_feature_dma_logging_control ctl = {
		.page_size = *page_size,
		.num_ranges = n,
		.ranges = (uintptr_t)ranges,
	};
	unsigned int i;
	int ret;

	if (n > DL_MAX_RANGES)
		return -E2BIG;
	for (i = 0; i < n; i++) {
		ranges[i].iova = r[i].iova;
		ranges[i].length = r[i].len;
	}
	ret = vd_feature_fd(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
			 &ctl, sizeof(ctl));
	if (!ret)
		*page_size = ctl.page_size;
	return ret;
}

int dl_stop(int fd)
{
	return vd_feature_fd(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
			  NULL, 0);
}

int dl_report(int fd, uint64_t iova, uint64_t len, uint64_t page_size, void *bitmap)
{
	struct vfio_device_feature_dma_logging_report rep = {
		.iova = iova,
		.length = len,
		.page_size = page_size,
		.bitmap = (uintptr_t)bitmap,
	};

	return vd_feature_fd(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			  &rep, sizeof(rep));
}

size_t dl_bitmap_bytes(uint64_t len, uint64_t page_size)
{
	uint64_t bits = (len + page_size - 1) / page_size;

	return (bits + 63) / 64 * 8;
}

int dl_add_range(struct dl_set *s, uint64_t iova, uint64_t len)
{
	uint64_t end = iova + len;
	unsigned int i, j;

	if (!len)
		return 0;
	/* Swallow every range that touches [iova, end). */
	for (i = 0; i < s->n;) {
		struct dl_range *r = &s->r[i];

		if (r->iova <= end && iova <= r->iova + r->len) {
			if (r->iova < iova)
				iova = r->iova;
			if (r->iova + r->len > end)
				end = r->iova + r->len;
			memmove(r, r + 1, (s->n - i - 1) * sizeof(*r));
			s->n--;
			continue;
		}
		i++;
	}
	if (s->n == DL_MAX_RANGES)
		return -E2BIG;
	for (i = 0; i < s->n && s->r[i].iova < iova; i++)
		;
	for (j = s->n; j > i; j--)
		s->r[j] = s->r[j - 1];
	s->r[i] = (struct dl_range){ iova, end - iova };
	s->n++;
	return 0;
}

int dl_add_mem(struct dl_set *s, const struct vu_mem *m, uint64_t align, uint64_t guard)
{
	size_t i;
	int ret;

	for (i = 0; i < m->size / VU_PAGE_SIZE; i++) {
		uint64_t start = m->iova[i] & ~(align - 1);
		uint64_t end = (m->iova[i] + VU_PAGE_SIZE + align - 1) & ~(align - 1);

		start = start > guard ? start - guard : 0;
		end += guard;
		ret = dl_add_range(s, start, end - start);
		if (ret)
			return ret;
	}
	return 0;
}

int dl_set_alloc(struct dl_set *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++) {
		size_t bytes = dl_bitmap_bytes(s->r[i].len, s->page_size);

		s->acc[i] = calloc(1, bytes);
		s->tmp[i] = calloc(1, bytes);
		if (!s->acc[i] || !s->tmp[i])
			return -ENOMEM;
	}
	return 0;
}

void dl_set_free(struct dl_set *s)
{
	unsigned int i;

	for (i = 0; i < DL_MAX_RANGES; i++) {
		free(s->acc[i]);
		free(s->tmp[i]);
		s->acc[i] = s->tmp[i] = NULL;
	}
}

void dl_acc_clear(struct dl_set *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++)
		memset(s->acc[i], 0, dl_bitmap_bytes(s->r[i].len, s->page_size));
}

long dl_report_all(int fd, struct dl_set *s)
{
	unsigned int i;
	long dirty = 0;
	size_t w;
	int ret;

	for (i = 0; i < s->n; i++) {
		size_t words = dl_bitmap_bytes(s->r[i].len, s->page_size) / 8;

		memset(s->tmp[i], 0, words * 8);
		ret = dl_report(fd, s->r[i].iova, s->r[i].len, s->page_size, s->tmp[i]);
		if (ret)
			return ret;
		for (w = 0; w < words; w++) {
			dirty += __builtin_popcountll(s->tmp[i][w]);
			s->acc[i][w] |= s->tmp[i][w];
		}
	}
	return dirty;
}

int dl_find(const struct dl_set *s, uint64_t iova)
{
	unsigned int i;

	for (i = 0; i < s->n; i++)
		if (iova >= s->r[i].iova && iova - s->r[i].iova < s->r[i].len)
			return i;
	return -1;
}

bool dl_acc_test(const struct dl_set *s, uint64_t iova)
{
	int i = dl_find(s, iova);
	uint64_t bit;

	if (i < 0)
		return false;
	bit = (iova - s->r[i].iova) / s->page_size;
	return s->acc[i][bit / 64] >> (bit % 64) & 1;
}

uint64_t dl_acc_count(const struct dl_set *s)
{
	uint64_t n = 0;
	unsigned int i;
	size_t w;

	for (i = 0; i < s->n; i++)
		for (w = 0; w < dl_bitmap_bytes(s->r[i].len, s->page_size) / 8; w++)
			n += __builtin_popcountll(s->acc[i][w]);
	return n;
}

static int push(struct dl_pages *p, uint64_t page)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		uint64_t *n = realloc(p->page, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->page = n;
		p->cap = cap;
	}
	p->page[p->n++] = page;
	return 0;
}

int dl_pages_add(struct dl_pages *p, const struct vu_mem *m, const void *addr, size_t len,
		 uint64_t page_size)
{
	const uint8_t *at = addr;
	int ret;

	while (len) {
		size_t chunk = VU_PAGE_SIZE - ((uintptr_t)at - (uintptr_t)m->va) % VU_PAGE_SIZE;
		uint64_t first, last, pg;

		if (chunk > len)
			chunk = len;
		first = vu_mem_iova(m, at) & ~(page_size - 1);
		last = (vu_mem_iova(m, at) + chunk - 1) & ~(page_size - 1);
		for (pg = first; pg <= last; pg += page_size) {
			ret = push(p, pg);
			if (ret)
				return ret;
		}
		at += chunk;
		len -= chunk;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void dl_pages_finish(struct dl_pages *p)
{
	size_t i, j = 0;

	if (!p->n)
		return;
	qsort(p->page, p->n, sizeof(*p->page), cmp_u64);
	for (i = 1; i < p->n; i++)
		if (p->page[i] != p->page[j])
			p->page[++j] = p->page[i];
	p->n = j + 1;
}

bool dl_pages_has(const struct dl_pages *p, uint64_t page)
{
	return bsearch(&page, p->page, p->n, sizeof(*p->page), cmp_u64) != NULL;
}

void dl_pages_free(struct dl_pages *p)
{
	free(p->page);
	memset(p, 0, sizeof(*p));
}
