// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace virtio-pci driver for the virtio_mig selftests; see virtio_user.h.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "virtio_user.h"

#define PCI_STATUS		0x06
#define PCI_STATUS_CAP_LIST	0x10
#define PCI_CAPABILITY_LIST	0x34
#define PCI_CAP_ID_VNDR		0x09
#define PCI_CAP_ID_MSIX		0x11
#define PCI_STD_NUM_BARS	6

#define PAGEMAP_PRESENT		(1ULL << 63)
#define PAGEMAP_PFN_MASK	((1ULL << 55) - 1)

/* The rings are in coherent memory: ordering is all the CPU needs. */
#define vu_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* DMA memory */

int vu_mem_alloc(struct vu_mem *m, size_t size)
{
	size_t pages, i;

	memset(m, 0, sizeof(*m));
	size = (size + VU_HUGE_PAGE_SIZE - 1) & ~(VU_HUGE_PAGE_SIZE - 1);
	m->va = mmap(NULL, size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (m->va != MAP_FAILED) {
		m->hugetlb = true;
	} else {
		m->va = mmap(NULL, size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m->va == MAP_FAILED)
			return -errno;
		if (mlock(m->va, size)) {
			int ret = -errno;

			munmap(m->va, size);
			return ret;
		}
	}
	m->size = size;
	/* Fault every page in now: pagemap only reports present pages. */
	memset(m->va, 0, size);

	pages = size / VU_PAGE_SIZE;
	m->iova = calloc(pages, sizeof(*m->iova));
	if (!m->iova) {
		munmap(m->va, size);
		return -ENOMEM;
	}
	for (i = 0; i < pages; i++)
		m->iova[i] = i * VU_PAGE_SIZE;
	return 0;
}

void vu_mem_free(struct vu_mem *m)
{
	if (m->va && m->va != MAP_FAILED)
		munmap(m->va, m->size);
	free(m->iova);
	memset(m, 0, sizeof(*m));
}

void vu_mem_set_linear(struct vu_mem *m, uint64_t iova)
{
	size_t i;

	for (i = 0; i < m->size / VU_PAGE_SIZE; i++)
		m->iova[i] = iova + i * VU_PAGE_SIZE;
}

int vu_mem_set_physical(struct vu_mem *m)
{
	size_t pages = m->size / VU_PAGE_SIZE, i;
	uint64_t *entries;
	off_t off;
	int fd, ret = 0;

	entries = calloc(pages, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	off = (uintptr_t)m->va / VU_PAGE_SIZE * sizeof(*entries);
	if (pread(fd, entries, pages * sizeof(*entries), off) !=
	    (ssize_t)(pages * sizeof(*entries))) {
		ret = -EIO;
		goto out_close;
	}
	for (i = 0; i < pages; i++) {
		uint64_t pfn = entries[i] & PAGEMAP_PFN_MASK;

		/* A zero PFN means we lack CAP_SYS_ADMIN. */
		if (!(entries[i] & PAGEMAP_PRESENT) || !pfn) {
			ret = -EPERM;
			goto out_close;
		}
		m->iova[i] = pfn * VU_PAGE_SIZE;
	}
out_close:
	close(fd);
out:
	free(entries);
	return ret;
}

void *vu_mem_zalloc(struct vu_mem *m, size_t len, size_t align)
{
	size_t start = (m->next + align - 1) & ~(align - 1);
	void *p;

	if (start > m->size || len > m->size - start)
		return NULL;
	m->next = start + len;
	p = (uint8_t *)m->va + start;
	memset(p, 0, len);
	return p;
}

bool vu_mem_contains(const struct vu_mem *m, const void *p, size_t len)
{
	uintptr_t start = (uintptr_t)m->va, at = (uintptr_t)p;

	return at >= start && at - start <= m->size && len <= m->size - (at - start);
}

uint64_t vu_mem_iova(const struct vu_mem *m, const void *p)
{
	size_t off = (uintptr_t)p - (uintptr_t)m->va;

	return m->iova[off / VU_PAGE_SIZE] + off % VU_PAGE_SIZE;
}

size_t vu_mem_contig(const struct vu_mem *m, const void *p, size_t len)
{
	size_t off = (uintptr_t)p - (uintptr_t)m->va;
	size_t page = off / VU_PAGE_SIZE;
	size_t n = VU_PAGE_SIZE - off % VU_PAGE_SIZE;

	while (n < len && m->iova[page + 1] == m->iova[page] + VU_PAGE_SIZE) {
		page++;
		n += VU_PAGE_SIZE;
	}
	return n < len ? n : len;
}

/* Capabilities */

int vu_parse_caps(const uint8_t *cfg, size_t len, struct vu_caps *caps)
{
	unsigned int pos, visited = 0;

	memset(caps, 0, sizeof(*caps));
	if (len < 256)
		return -EINVAL;
	if (!(cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST))
		return 0;
	for (pos = cfg[PCI_CAPABILITY_LIST] & ~3u; pos; pos = cfg[pos + 1] & ~3u) {
		uint8_t type;
		struct vu_cap *c;

		/* A loop or a pointer into the header is malformed. */
		if (pos < 0x40 || pos > 256 - 4 || ++visited > 48)
			return -EINVAL;
		if (cfg[pos] == PCI_CAP_ID_MSIX && !caps->msix_pos)
			caps->msix_pos = pos;
		if (cfg[pos] != PCI_CAP_ID_VNDR)
			continue;
		if (pos + sizeof(struct virtio_pci_cap) > 256)
			return -EINVAL;
		type = cfg[pos + VIRTIO_PCI_CAP_CFG_TYPE];
		if (type >= VU_CAP_TYPES || caps->cap[type].present)
			continue;
		c = &caps->cap[type];
		c->present = true;
		c->pos = pos;
		c->cap_len = cfg[pos + VIRTIO_PCI_CAP_LEN];
		c->bar = cfg[pos + VIRTIO_PCI_CAP_BAR];
		memcpy(&c->offset, cfg + pos + VIRTIO_PCI_CAP_OFFSET, 4);
		memcpy(&c->length, cfg + pos + VIRTIO_PCI_CAP_LENGTH, 4);
		c->offset = le32toh(c->offset);
		c->length = le32toh(c->length);
		if (type == VIRTIO_PCI_CAP_NOTIFY_CFG &&
		    c->cap_len >= sizeof(struct virtio_pci_notify_cap) &&
		    pos + sizeof(struct virtio_pci_notify_cap) <= 256) {
			memcpy(&caps->notify_off_multiplier,
			       cfg + pos + sizeof(struct virtio_pci_cap), 4);
			caps->notify_off_multiplier = le32toh(caps->notify_off_multiplier);
		}
	}
	return 0;
}

/* Device */

static uint8_t *cap_ptr(void *const bars[6], const size_t bar_sizes[6], const struct vu_cap *c)
{
	if (!c->present || c->bar >= PCI_STD_NUM_BARS || !bars[c->bar])
		return NULL;
	if (c->offset > bar_sizes[c->bar] || c->length > bar_sizes[c->bar] - c->offset)
		return NULL;
	return (uint8_t *)bars[c->bar] + c->offset;
}

int vu_dev_init(struct vu_dev *d, void *const bars[6], const size_t bar_sizes[6],
		const struct vu_caps *caps, struct vu_mem *mem)
{
	memset(d, 0, sizeof(*d));
	d->common = cap_ptr(bars, bar_sizes, &caps->cap[VIRTIO_PCI_CAP_COMMON_CFG]);
	d->notify = cap_ptr(bars, bar_sizes, &caps->cap[VIRTIO_PCI_CAP_NOTIFY_CFG]);
	d->isr = cap_ptr(bars, bar_sizes, &caps->cap[VIRTIO_PCI_CAP_ISR_CFG]);
	d->device = cap_ptr(bars, bar_sizes, &caps->cap[VIRTIO_PCI_CAP_DEVICE_CFG]);
	d->memory_track = cap_ptr(bars, bar_sizes, &caps->cap[VU_CAP_MEMORY_TRACK_CFG]);
	d->device_state = cap_ptr(bars, bar_sizes, &caps->cap[VU_CAP_DEVICE_STATE_CFG]);
	if (!d->common || !d->notify || !d->isr || !d->device ||
	    caps->cap[VIRTIO_PCI_CAP_COMMON_CFG].length < VIRTIO_PCI_COMMON_Q_USEDHI + 4)
		return -EINVAL;
	d->notify_len = caps->cap[VIRTIO_PCI_CAP_NOTIFY_CFG].length;
	d->notify_off_multiplier = caps->notify_off_multiplier;
	d->device_len = caps->cap[VIRTIO_PCI_CAP_DEVICE_CFG].length;
	d->mem = mem;
	return 0;
}

uint8_t vu_read8(const uint8_t *reg)
{
	return *(const volatile uint8_t *)reg;
}

uint16_t vu_read16(const uint8_t *reg)
{
	return le16toh(*(const volatile uint16_t *)reg);
}

uint32_t vu_read32(const uint8_t *reg)
{
	return le32toh(*(const volatile uint32_t *)reg);
}

void vu_write8(uint8_t *reg, uint8_t v)
{
	*(volatile uint8_t *)reg = v;
}

void vu_write16(uint8_t *reg, uint16_t v)
{
	*(volatile uint16_t *)reg = htole16(v);
}

void vu_write32(uint8_t *reg, uint32_t v)
{
	*(volatile uint32_t *)reg = htole32(v);
}

/* Low half first, as the virtio specification allows for 64-bit fields. */
void vu_write64(uint8_t *reg, uint64_t v)
{
	vu_write32(reg, (uint32_t)v);
	vu_write32(reg + 4, (uint32_t)(v >> 32));
}

static uint8_t rd8(uint8_t *base, size_t off)
{
	return vu_read8(base + off);
}

static uint16_t rd16(uint8_t *base, size_t off)
{
	return vu_read16(base + off);
}

static uint32_t rd32(uint8_t *base, size_t off)
{
	return vu_read32(base + off);
}

static void wr8(uint8_t *base, size_t off, uint8_t v)
{
	vu_write8(base + off, v);
}

static void wr16(uint8_t *base, size_t off, uint16_t v)
{
	vu_write16(base + off, v);
}

static void wr32(uint8_t *base, size_t off, uint32_t v)
{
	vu_write32(base + off, v);
}

static void wr64(uint8_t *base, size_t off, uint64_t v)
{
	vu_write64(base + off, v);
}

uint8_t vu_get_status(struct vu_dev *d)
{
	return rd8(d->common, VIRTIO_PCI_COMMON_STATUS);
}

void vu_set_status(struct vu_dev *d, uint8_t status)
{
	wr8(d->common, VIRTIO_PCI_COMMON_STATUS, status);
}

int vu_reset(struct vu_dev *d, int timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	vu_set_status(d, 0);
	while (vu_get_status(d)) {
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	d->features = 0;
	return 0;
}

uint64_t vu_device_features(struct vu_dev *d)
{
	uint64_t f;

	wr32(d->common, VIRTIO_PCI_COMMON_DFSELECT, 0);
	f = rd32(d->common, VIRTIO_PCI_COMMON_DF);
	wr32(d->common, VIRTIO_PCI_COMMON_DFSELECT, 1);
	f |= (uint64_t)rd32(d->common, VIRTIO_PCI_COMMON_DF) << 32;
	return f;
}

int vu_negotiate(struct vu_dev *d, uint64_t wanted, uint64_t required)
{
	uint64_t offered, accept;

	vu_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vu_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	offered = vu_device_features(d);
	if ((offered & required) != required)
		return -EOPNOTSUPP;
	accept = offered & (wanted | required);
	wr32(d->common, VIRTIO_PCI_COMMON_GFSELECT, 0);
	wr32(d->common, VIRTIO_PCI_COMMON_GF, (uint32_t)accept);
	wr32(d->common, VIRTIO_PCI_COMMON_GFSELECT, 1);
	wr32(d->common, VIRTIO_PCI_COMMON_GF, (uint32_t)(accept >> 32));
	vu_set_status(d, vu_get_status(d) | VIRTIO_CONFIG_S_FEATURES_OK);
	if (!(vu_get_status(d) & VIRTIO_CONFIG_S_FEATURES_OK))
		return -EIO;
	d->features = accept;
	return 0;
}

void vu_driver_ok(struct vu_dev *d)
{
	vu_mb();
	vu_set_status(d, vu_get_status(d) | VIRTIO_CONFIG_S_DRIVER_OK);
}

uint16_t vu_num_queues(struct vu_dev *d)
{
	return rd16(d->common, VIRTIO_PCI_COMMON_NUMQ);
}

uint8_t vu_cfg_read8(struct vu_dev *d, size_t off)
{
	return rd8(d->device, off);
}

uint16_t vu_cfg_read16(struct vu_dev *d, size_t off)
{
	return rd16(d->device, off);
}

uint32_t vu_cfg_read32(struct vu_dev *d, size_t off)
{
	return rd32(d->device, off);
}

/* Retry while config_generation changes under us. */
uint64_t vu_cfg_read64(struct vu_dev *d, size_t off)
{
	uint8_t gen;
	uint64_t v;

	do {
		gen = rd8(d->common, VIRTIO_PCI_COMMON_CFGGENERATION);
		v = rd32(d->device, off) | (uint64_t)rd32(d->device, off + 4) << 32;
	} while (gen != rd8(d->common, VIRTIO_PCI_COMMON_CFGGENERATION));
	return v;
}

/* Virtqueues */

/* Rings are page aligned (beyond what they need) and contiguous in IOVA space. */
static void *ring_alloc(struct vu_mem *m, size_t len)
{
	void *p = vu_mem_zalloc(m, len, VU_PAGE_SIZE);

	if (!p || vu_mem_contig(m, p, len) != len)
		return NULL;
	return p;
}

int vu_vq_setup(struct vu_dev *d, struct vu_vq *vq, uint16_t index, uint16_t size)
{
	uint8_t *c = d->common;
	uint16_t max;
	unsigned int i;

	memset(vq, 0, sizeof(*vq));
	if (index >= vu_num_queues(d))
		return -EINVAL;
	wr16(c, VIRTIO_PCI_COMMON_Q_SELECT, index);
	max = rd16(c, VIRTIO_PCI_COMMON_Q_SIZE);
	if (!max)
		return -EINVAL;
	if (size > max)
		size = max;
	/* Split rings have power-of-two sizes. */
	while (size & (size - 1))
		size &= size - 1;
	if (!size)
		return -EINVAL;

	vq->desc = ring_alloc(d->mem, sizeof(struct vring_desc) * size);
	vq->avail = ring_alloc(d->mem, sizeof(struct vring_avail) + 2 * size + 2);
	vq->used = ring_alloc(d->mem, sizeof(struct vring_used) +
			      sizeof(struct vring_used_elem) * size + 2);
	vq->cookie = calloc(size, sizeof(*vq->cookie));
	if (!vq->desc || !vq->avail || !vq->used || !vq->cookie) {
		free(vq->cookie);
		vq->cookie = NULL;
		return -ENOMEM;
	}
	vq->index = index;
	vq->size = size;
	for (i = 0; i < size; i++)
		vq->desc[i].next = htole16((i + 1) % size);
	vq->free_head = 0;
	vq->num_free = size;
	/* Polled: ask the device not to interrupt. */
	vq->avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	return vu_vq_program(d, vq);
}

int vu_vq_program(struct vu_dev *d, struct vu_vq *vq)
{
	uint8_t *c = d->common;
	uint16_t notify_off;
	size_t notify_at;

	wr16(c, VIRTIO_PCI_COMMON_Q_SELECT, vq->index);
	if (vq->size > rd16(c, VIRTIO_PCI_COMMON_Q_SIZE))
		return -EINVAL;
	if (rd16(c, VIRTIO_PCI_COMMON_Q_ENABLE))
		return -EBUSY;
	notify_off = rd16(c, VIRTIO_PCI_COMMON_Q_NOFF);
	notify_at = (size_t)notify_off * d->notify_off_multiplier;
	if (notify_at + 2 > d->notify_len)
		return -EINVAL;
	vq->dev = d;
	vq->notify = d->notify + notify_at;

	wr16(c, VIRTIO_PCI_COMMON_Q_SIZE, vq->size);
	wr16(c, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	wr64(c, VIRTIO_PCI_COMMON_Q_DESCLO, vu_mem_iova(d->mem, vq->desc));
	wr64(c, VIRTIO_PCI_COMMON_Q_AVAILLO, vu_mem_iova(d->mem, vq->avail));
	wr64(c, VIRTIO_PCI_COMMON_Q_USEDLO, vu_mem_iova(d->mem, vq->used));
	vu_mb();
	wr16(c, VIRTIO_PCI_COMMON_Q_ENABLE, 1);
	if (rd16(c, VIRTIO_PCI_COMMON_Q_ENABLE) != 1)
		return -EIO;
	return 0;
}

void vu_vq_release(struct vu_vq *vq)
{
	free(vq->cookie);
	memset(vq, 0, sizeof(*vq));
}

/* Descriptors needed for @len bytes at @p. */
static unsigned int descs_for(const struct vu_mem *m, const void *p, uint32_t len)
{
	unsigned int n = 0;
	size_t done = 0;

	do {
		done += vu_mem_contig(m, (const uint8_t *)p + done, len - done);
		n++;
	} while (done < len);
	return n;
}

int vu_vq_add(struct vu_vq *vq, const struct vu_buf *bufs, unsigned int n_out,
	      unsigned int n_in, void *cookie)
{
	struct vu_mem *m = vq->dev->mem;
	unsigned int i, needed = 0;
	uint16_t head, cur = 0, prev = 0;

	if ((!n_out && !n_in) || !cookie)
		return -EINVAL;
	for (i = 0; i < n_out + n_in; i++) {
		if (!bufs[i].len || !vu_mem_contains(m, bufs[i].addr, bufs[i].len))
			return -EINVAL;
		needed += descs_for(m, bufs[i].addr, bufs[i].len);
	}
	if (needed > vq->num_free)
		return -ENOSPC;

	head = vq->free_head;
	cur = head;
	for (i = 0; i < n_out + n_in; i++) {
		const uint8_t *p = bufs[i].addr;
		uint32_t left = bufs[i].len;

		while (left) {
			struct vring_desc *desc = &vq->desc[cur];
			uint32_t n = vu_mem_contig(m, p, left);

			desc->addr = htole64(vu_mem_iova(m, p));
			desc->len = htole32(n);
			desc->flags = htole16(VRING_DESC_F_NEXT |
					      (i >= n_out ? VRING_DESC_F_WRITE : 0));
			p += n;
			left -= n;
			prev = cur;
			cur = le16toh(desc->next);
		}
	}
	vq->desc[prev].flags &= htole16(~VRING_DESC_F_NEXT);
	vq->free_head = cur;
	vq->num_free -= needed;
	vq->cookie[head] = cookie;

	vq->avail->ring[vq->avail_idx % vq->size] = htole16(head);
	vq->avail_idx++;
	/* The descriptors and ring entry are visible before the index. */
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_idx), __ATOMIC_RELEASE);
	vq->in_flight++;
	return head;
}

void vu_vq_kick(struct vu_vq *vq)
{
	vu_mb();
	vu_write16(vq->notify, vq->index);
}

uint16_t vu_vq_used_idx(const struct vu_vq *vq)
{
	return le16toh(__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE));
}

int vu_vq_harvest(struct vu_vq *vq, void **cookie, uint32_t *len)
{
	struct vring_used_elem elem;
	uint16_t head, i, n = 1;

	/* Acquire: the entry and the buffers it covers are read after the index. */
	if (vu_vq_used_idx(vq) == vq->last_used)
		return 0;
	elem = vq->used->ring[vq->last_used % vq->size];
	head = le32toh(elem.id);
	if (head >= vq->size || !vq->cookie[head])
		return -EIO;

	/* Return the chain to the free list. */
	for (i = head; le16toh(vq->desc[i].flags) & VRING_DESC_F_NEXT;
	     i = le16toh(vq->desc[i].next))
		n++;
	vq->desc[i].next = htole16(vq->free_head);
	vq->free_head = head;
	vq->num_free += n;

	*cookie = vq->cookie[head];
	*len = le32toh(elem.len);
	vq->cookie[head] = NULL;
	vq->last_used++;
	vq->in_flight--;
	return 1;
}

/* virtio-blk */

struct vu_blk_req *vu_blk_req_alloc(struct vu_mem *m, uint32_t len)
{
	struct vu_blk_req *r = vu_mem_zalloc(m, sizeof(*r), 64);

	if (!r)
		return NULL;
	r->len = len;
	if (len) {
		r->data = vu_mem_zalloc(m, len, len >= VU_PAGE_SIZE ? VU_PAGE_SIZE : 512);
		if (!r->data)
			return NULL;
	}
	return r;
}

int vu_blk_submit(struct vu_vq *vq, struct vu_blk_req *r, uint32_t type, uint64_t sector)
{
	struct vu_buf bufs[3];
	unsigned int n = 0;
	bool out = type == VIRTIO_BLK_T_OUT;
	int ret;

	r->hdr.type = htole32(type);
	r->hdr.ioprio = 0;
	r->hdr.sector = htole64(sector);
	r->status = VU_BLK_STATUS_NONE;
	r->done = false;
	r->used_len = 0;

	bufs[n++] = (struct vu_buf){ &r->hdr, sizeof(r->hdr) };
	if (r->len)
		bufs[n++] = (struct vu_buf){ r->data, r->len };
	bufs[n++] = (struct vu_buf){ &r->status, 1 };
	ret = vu_vq_add(vq, bufs, out ? n - 1 : 1, out ? 1 : n - 1, r);
	return ret < 0 ? ret : 0;
}

int vu_blk_wait_all(struct vu_vq *vq, int timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	while (vq->in_flight) {
		struct vu_blk_req *r;
		void *cookie;
		uint32_t len;
		int ret = vu_vq_harvest(vq, &cookie, &len);

		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (now_ms() > deadline)
				return -ETIMEDOUT;
			usleep(1000);
			continue;
		}
		r = cookie;
		r->used_len = len;
		r->done = true;
		deadline = now_ms() + timeout_ms;
	}
	return 0;
}
