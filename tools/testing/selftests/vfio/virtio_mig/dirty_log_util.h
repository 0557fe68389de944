/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Device DMA dirty logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START, _STOP and
 * _REPORT) for the virtio_mig selftests and the dirty-log benchmark: the three
 * operations, sets of tracked IOVA ranges, and the accumulated reports.
 */
#ifndef DIRTY_LOG_UTIL_H
#define DIRTY_LOG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

#include "vfio_dev.h"
#include "virtio_user.h"

/* What the VFIO core accepts at least: a page of struct vfio_device_feature_dma_logging_range. */
#define DL_MAX_RANGES	256

struct dl_range {
	uint64_t iova;
	uint64_t len;
};

/*
 * A logging session as the user sees it: the ranges passed to START, the page
 * size START returned, and the union of every report since the last
 * dl_acc_clear(), one bitmap per range.
 */
struct dl_set {
	unsigned int n;
	struct dl_range r[DL_MAX_RANGES];
	uint64_t page_size;
	uint64_t *acc[DL_MAX_RANGES];
	uint64_t *tmp[DL_MAX_RANGES];
};

/*
 * START over @n ranges with *@page_size; on success *@page_size is the
 * page size the driver uses. Returns 0 or -errno.
 */
int dl_start(int fd, const struct dl_range *r, unsigned int n, uint64_t *page_size);
int dl_stop(int fd);
/* REPORT of [@iova, @iova + @len) at @page_size into @bitmap. 0 or -errno. */
int dl_report(int fd, uint64_t iova, uint64_t len, uint64_t page_size, void *bitmap);

/* Bytes of a report bitmap for @len bytes at @page_size, whole 64-bit words. */
size_t dl_bitmap_bytes(uint64_t len, uint64_t page_size);

/*
 * Add [@iova, @iova + @len) to the sorted, merged range list @s (ranges
 * touching or overlapping coalesce). Returns 0, or -E2BIG when full.
 */
int dl_add_range(struct dl_set *s, uint64_t iova, uint64_t len);
/*
 * Ranges covering every page of @m rounded out to @align, plus @guard bytes
 * on either side (clamped at 0).
 */
int dl_add_mem(struct dl_set *s, const struct vu_mem *m, uint64_t align, uint64_t guard);

/* Allocate the report bitmaps for s->page_size; 0 or -ENOMEM. */
int dl_set_alloc(struct dl_set *s);
void dl_set_free(struct dl_set *s);
void dl_acc_clear(struct dl_set *s);
/*
 * REPORT every range and OR the result into the accumulated bitmaps.
 * Returns the number of dirty pages this report held, or -errno.
 */
long dl_report_all(int fd, struct dl_set *s);
/* Whether the page holding @iova is set in the accumulated bitmaps. */
bool dl_acc_test(const struct dl_set *s, uint64_t iova);
/* Index of the range holding @iova, or -1. */
int dl_find(const struct dl_set *s, uint64_t iova);
/* Dirty pages accumulated. */
uint64_t dl_acc_count(const struct dl_set *s);

/* Pages of a DMA buffer. */
struct dl_pages {
	size_t n, cap;
	uint64_t *page;		/* sorted, unique page addresses */
};

/*
 * Add the pages (of @page_size) holding the @len bytes at @p in @m, through
 * their IOVAs. Returns 0 or -ENOMEM.
 */
int dl_pages_add(struct dl_pages *p, const struct vu_mem *m, const void *addr, size_t len,
		 uint64_t page_size);
/* Sort and drop duplicates. */
void dl_pages_finish(struct dl_pages *p);
bool dl_pages_has(const struct dl_pages *p, uint64_t page);
void dl_pages_free(struct dl_pages *p);

#endif /* DIRTY_LOG_UTIL_H */
