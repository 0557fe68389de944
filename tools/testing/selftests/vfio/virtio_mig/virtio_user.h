/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small userspace virtio-pci (modern) driver for the virtio_mig selftests.
 *
 * It knows nothing about VFIO: the caller maps the BARs, parses configuration
 * space with vu_parse_caps(), and provides DMA memory (struct vu_mem) whose
 * I/O virtual addresses it has filled in (physical addresses in VFIO no-IOMMU
 * mode, mapped IOVAs otherwise).
 *
 * Virtqueues are split rings. Requests are asynchronous: any number may be
 * outstanding up to the ring size, each carries a caller cookie, and used
 * entries are harvested by polling (no interrupts). On top of that sits a
 * virtio-blk request helper with per-request DMA buffers.
 */
#ifndef VIRTIO_USER_H
#define VIRTIO_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

/* Granularity of the IOVA table of struct vu_mem. */
#define VU_PAGE_SIZE		4096UL
#define VU_HUGE_PAGE_SIZE	(2UL << 20)

/* Capability types of the virtio-pci migration extension. */
#define VU_CAP_MEMORY_TRACK_CFG	10
#define VU_CAP_DEVICE_STATE_CFG	11
#define VU_CAP_TYPES		12

#define VU_SECTOR_SIZE		512

/*
 * DMA memory: one anonymous mapping (2 MiB hugepages when available,
 * otherwise locked 4 KiB pages), the I/O virtual address of every 4 KiB
 * page, and a bump allocator.
 */
struct vu_mem {
	void *va;
	size_t size;
	bool hugetlb;
	uint64_t *iova;		/* size / VU_PAGE_SIZE entries */
	size_t next;		/* first free byte for vu_mem_zalloc() */
};

int vu_mem_alloc(struct vu_mem *m, size_t size);
void vu_mem_free(struct vu_mem *m);
/* IOVA of page n is @iova + n * VU_PAGE_SIZE (a mapped IOMMU range). */
void vu_mem_set_linear(struct vu_mem *m, uint64_t iova);
/* IOVA of every page is its physical address, from /proc/self/pagemap. */
int vu_mem_set_physical(struct vu_mem *m);
/* Zeroed memory from the arena, or NULL when it is exhausted. */
void *vu_mem_zalloc(struct vu_mem *m, size_t len, size_t align);
bool vu_mem_contains(const struct vu_mem *m, const void *p, size_t len);
uint64_t vu_mem_iova(const struct vu_mem *m, const void *p);
/* How many of the @len bytes at @p are contiguous in IOVA space. */
size_t vu_mem_contig(const struct vu_mem *m, const void *p, size_t len);

/* One virtio vendor capability as found in PCI configuration space. */
struct vu_cap {
	bool present;
	uint8_t pos;		/* offset in configuration space */
	uint8_t cap_len;
	uint8_t bar;
	uint32_t offset;	/* within the BAR */
	uint32_t length;
};

struct vu_caps {
	struct vu_cap cap[VU_CAP_TYPES];	/* indexed by cfg_type */
	uint32_t notify_off_multiplier;
	int msix_pos;				/* 0 when absent */
};

/*
 * Walk the capability list of @cfg (at least 256 bytes of configuration
 * space) and record the first capability of every virtio cfg_type below
 * VU_CAP_TYPES. Returns 0, or -EINVAL for a malformed list.
 */
int vu_parse_caps(const uint8_t *cfg, size_t len, struct vu_caps *caps);

/* A virtio-pci device whose structures are mapped in this process. */
/* The register blocks are device memory: access them through the helpers only. */
struct vu_dev {
	uint8_t *common;
	uint8_t *notify;
	size_t notify_len;
	uint32_t notify_off_multiplier;
	uint8_t *isr;
	uint8_t *device;
	size_t device_len;
	uint8_t *memory_track;		/* NULL when absent */
	uint8_t *device_state;		/* NULL when absent */
	struct vu_mem *mem;		/* where rings and requests live */
	uint64_t features;		/* negotiated */
};

/*
 * Point @d at the structures described by @caps inside the mapped BARs
 * @bars (NULL for BARs not mapped) of sizes @bar_sizes.
 */
int vu_dev_init(struct vu_dev *d, void *const bars[6], const size_t bar_sizes[6],
		const struct vu_caps *caps, struct vu_mem *mem);

uint8_t vu_get_status(struct vu_dev *d);
void vu_set_status(struct vu_dev *d, uint8_t status);
/* Write 0 to device_status and wait until it reads 0. */
int vu_reset(struct vu_dev *d, int timeout_ms);
uint64_t vu_device_features(struct vu_dev *d);
/*
 * ACKNOWLEDGE | DRIVER, then accept the offered subset of @wanted, which
 * must include @required, and set FEATURES_OK. Returns -EOPNOTSUPP when a
 * required feature is not offered, -EIO when the device refuses.
 */
int vu_negotiate(struct vu_dev *d, uint64_t wanted, uint64_t required);
void vu_driver_ok(struct vu_dev *d);
uint16_t vu_num_queues(struct vu_dev *d);

uint8_t vu_cfg_read8(struct vu_dev *d, size_t off);
uint16_t vu_cfg_read16(struct vu_dev *d, size_t off);
uint32_t vu_cfg_read32(struct vu_dev *d, size_t off);
uint64_t vu_cfg_read64(struct vu_dev *d, size_t off);

/* Little-endian device register accessors (64-bit writes as two halves). */
uint8_t vu_read8(const uint8_t *reg);
uint16_t vu_read16(const uint8_t *reg);
uint32_t vu_read32(const uint8_t *reg);
void vu_write8(uint8_t *reg, uint8_t v);
void vu_write16(uint8_t *reg, uint16_t v);
void vu_write32(uint8_t *reg, uint32_t v);
void vu_write64(uint8_t *reg, uint64_t v);

/* A split virtqueue. */
struct vu_vq {
	struct vu_dev *dev;
	uint16_t index;
	uint16_t size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint8_t *notify;		/* this queue's doorbell */
	void **cookie;		/* per descriptor chain head */
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;	/* next avail->idx the driver publishes */
	uint16_t last_used;	/* next used entry to harvest */
	unsigned int in_flight;	/* published and not harvested */
};

/* A buffer of a request: device-readable or device-writable by position. */
struct vu_buf {
	void *addr;
	uint32_t len;
};

/*
 * Program queue @index with @size entries (clamped to the device maximum)
 * and enable it. The rings are taken from d->mem. Must be called between
 * FEATURES_OK and DRIVER_OK.
 */
int vu_vq_setup(struct vu_dev *d, struct vu_vq *vq, uint16_t index, uint16_t size);
/*
 * Program the rings of @vq into queue vq->index of @d (another device
 * sharing d->mem, e.g. a migration destination) and enable it; @vq then
 * kicks @d. The ring contents are left alone.
 */
int vu_vq_program(struct vu_dev *d, struct vu_vq *vq);
void vu_vq_release(struct vu_vq *vq);
/*
 * Publish a request made of @n_out device-readable buffers followed by
 * @n_in device-writable ones (all in d->mem) with a non-NULL @cookie
 * that vu_vq_harvest() hands back. Buffers that are not
 * contiguous in IOVA space take several descriptors. The device is not
 * notified: call vu_vq_kick(). Returns the chain head, -ENOSPC when the
 * ring is full, -EINVAL for a buffer outside d->mem.
 */
int vu_vq_add(struct vu_vq *vq, const struct vu_buf *bufs, unsigned int n_out,
	      unsigned int n_in, void *cookie);
void vu_vq_kick(struct vu_vq *vq);
/*
 * Harvest one used entry: 1 with its cookie and written length, 0 when the
 * device has not returned anything new, -EIO for an entry naming a chain the
 * driver did not publish.
 */
int vu_vq_harvest(struct vu_vq *vq, void **cookie, uint32_t *len);
/* The used index as the device last wrote it. */
uint16_t vu_vq_used_idx(const struct vu_vq *vq);

/* A virtio-blk request and its buffers, all in DMA memory. */
struct vu_blk_req {
	struct virtio_blk_outhdr hdr;
	uint8_t status;
	bool done;
	uint32_t used_len;
	uint8_t *data;
	uint32_t len;		/* bytes of data: sectors, or the GET_ID string */
};

#define VU_BLK_STATUS_NONE	0xff	/* not written by the device yet */

/* A request with a data buffer of @len bytes, or NULL if d->mem is full. */
struct vu_blk_req *vu_blk_req_alloc(struct vu_mem *m, uint32_t len);
/*
 * Queue @r as a request of @type (VIRTIO_BLK_T_IN, _OUT, _GET_ID, ...) at
 * @sector; data goes to the device for OUT, comes from it otherwise. No
 * kick. Returns 0 or the error of vu_vq_add().
 */
int vu_blk_submit(struct vu_vq *vq, struct vu_blk_req *r, uint32_t type, uint64_t sector);
/*
 * Poll until every request in flight on @vq has completed, marking each
 * done. Returns 0, -ETIMEDOUT if @timeout_ms passed without progress, or
 * -EIO for a bad used entry.
 */
int vu_blk_wait_all(struct vu_vq *vq, int timeout_ms);

#endif /* VIRTIO_USER_H */
