// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO migration helpers for the virtio_mig selftests; see vfio_mig_util.h.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "vfio_mig_util.h"

int mig_dev_open(struct mig_dev *m, const char *bdf, struct vu_mem *mem)
{
	uint8_t cfg[256];
	uint16_t cmd;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = vd_open(&m->vd, bdf, VD_GROUP);
	if (ret)
		return ret;
	ret = vd_config_read(&m->vd, 0, cfg, sizeof(cfg));
	if (ret)
		return ret;
	ret = vu_parse_caps(cfg, sizeof(cfg), &m->caps);
	if (ret)
		return ret;
	memcpy(&cmd, cfg + PCI_COMMAND, 2);
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	ret = vd_config_write(&m->vd, PCI_COMMAND, &cmd, 2);
	if (ret)
		return ret;
	if (!vd_map_bar(&m->vd, MIG_VIRTIO_BAR))
		return -errno ? -errno : -EIO;
	ret = vu_dev_init(&m->vu, m->vd.bar, m->vd.bar_size, &m->caps, mem);
	if (ret)
		return ret;
	if (!m->vu.device_state)
		return -ENODEV;
	m->mapped = true;
	return 0;
}

int mig_dev_reset(struct mig_dev *m)
{
	return ioctl(m->vd.fd, VFIO_DEVICE_RESET) ? -errno : 0;
}

void mig_dev_close(struct mig_dev *m)
{
	if (m->vd.fd >= 0 && m->mapped) {
		/* Nothing may touch the rings once their memory goes away. */
		mig_dev_reset(m);
		vu_reset(&m->vu, MIG_RESET_TIMEOUT_MS);
	}
	m->mapped = false;
	vd_close(&m->vd);
}

int mig_blk_start(struct mig_dev *m, struct vu_vq *vq, uint16_t size)
{
	struct vu_dev *v = &m->vu;
	int ret;

	ret = vu_reset(v, MIG_RESET_TIMEOUT_MS);
	if (ret)
		return ret;
	ret = vu_negotiate(v, 1ULL << VIRTIO_F_ACCESS_PLATFORM | 1ULL << VIRTIO_BLK_F_CONFIG_WCE,
			   1ULL << VIRTIO_F_VERSION_1);
	if (ret)
		return ret;
	ret = vu_vq_setup(v, vq, 0, size);
	if (ret)
		return ret;
	vu_driver_ok(v);
	return 0;
}

int mig_blk_io_check(struct mig_dev *m, uint64_t sector, uint32_t len, uint32_t seed)
{
	struct vu_blk_req *wr, *rd;
	struct vu_vq vq;
	uint16_t cmd;
	int ret;

	/* A function reset clears the command register: decode and master again. */
	ret = vd_config_read(&m->vd, PCI_COMMAND, &cmd, 2);
	if (ret)
		return ret;
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	ret = vd_config_write(&m->vd, PCI_COMMAND, &cmd, 2);
	if (ret)
		return ret;
	ret = mig_blk_start(m, &vq, 16);
	if (ret)
		return ret;
	wr = vu_blk_req_alloc(m->vu.mem, len);
	rd = vu_blk_req_alloc(m->vu.mem, len);
	if (!wr || !rd) {
		ret = -ENOMEM;
		goto out;
	}
	mig_fill_pattern(wr->data, len, seed, sector);
	ret = vu_blk_submit(&vq, wr, VIRTIO_BLK_T_OUT, sector);
	if (ret)
		goto out;
	vu_vq_kick(&vq);
	ret = vu_blk_wait_all(&vq, MIG_REQUEST_TIMEOUT_MS);
	if (ret)
		goto out;
	ret = vu_blk_submit(&vq, rd, VIRTIO_BLK_T_IN, sector);
	if (ret)
		goto out;
	vu_vq_kick(&vq);
	ret = vu_blk_wait_all(&vq, MIG_REQUEST_TIMEOUT_MS);
	if (ret)
		goto out;
	if (wr->status != VIRTIO_BLK_S_OK || rd->status != VIRTIO_BLK_S_OK ||
	    mig_check_pattern(rd->data, len, seed, sector) >= 0)
		ret = -EIO;
out:
	vu_reset(&m->vu, MIG_RESET_TIMEOUT_MS);
	vu_vq_release(&vq);
	return ret;
}

uint8_t mig_pattern(uint32_t seed, uint64_t pos)
{
	uint64_t x = (pos + 1) * 0x9e3779b97f4a7c15ULL ^ seed;

	return (uint8_t)(x >> 29 ^ x >> 47);
}

void mig_fill_pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t sector)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = mig_pattern(seed, sector * VU_SECTOR_SIZE + i);
}

long mig_check_pattern(const uint8_t *buf, size_t len, uint32_t seed, uint64_t sector)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != mig_pattern(seed, sector * VU_SECTOR_SIZE + i))
			return i;
	return -1;
}

const char *mig_state_name(uint32_t state)
{
	static const char *const names[] = {
		[VFIO_DEVICE_STATE_ERROR] = "ERROR",
		[VFIO_DEVICE_STATE_STOP] = "STOP",
		[VFIO_DEVICE_STATE_RUNNING] = "RUNNING",
		[VFIO_DEVICE_STATE_STOP_COPY] = "STOP_COPY",
		[VFIO_DEVICE_STATE_RESUMING] = "RESUMING",
		[VFIO_DEVICE_STATE_RUNNING_P2P] = "RUNNING_P2P",
		[VFIO_DEVICE_STATE_PRE_COPY] = "PRE_COPY",
		[VFIO_DEVICE_STATE_PRE_COPY_P2P] = "PRE_COPY_P2P",
	};

	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "(invalid)";
}

struct mig_state_feature {
	struct vfio_device_feature hdr;
	struct vfio_device_feature_mig_state mig;
};

int mig_set_state(struct vd *d, uint32_t state, int *data_fd)
{
	struct mig_state_feature f = {
		.hdr = {
			.argsz = sizeof(f),
			.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		},
		/* Not a valid fd: shows whether the kernel wrote the field. */
		.mig = { .device_state = state, .data_fd = -2 },
	};
	int ret = ioctl(d->fd, VFIO_DEVICE_FEATURE, &f) ? -errno : 0;

	if (data_fd)
		*data_fd = f.mig.data_fd;
	return ret;
}

int mig_get_state(struct vd *d, uint32_t *state)
{
	struct mig_state_feature f = {
		.hdr = {
			.argsz = sizeof(f),
			.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		},
		.mig = { .device_state = ~0u },
	};

	if (ioctl(d->fd, VFIO_DEVICE_FEATURE, &f))
		return -errno;
	*state = f.mig.device_state;
	return 0;
}

int mig_data_size(struct vd *d, uint64_t *len)
{
	struct vfio_device_feature_mig_data_size size = { .stop_copy_length = ~0ULL };
	int ret = vd_feature(d, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
			     &size, sizeof(size));

	if (!ret)
		*len = size.stop_copy_length;
	return ret;
}

int mig_walk(struct vd *d, const uint32_t *states, int n, int *data_fd, int *failed_at)
{
	int i, fd, ret;

	for (i = 0; i < n; i++) {
		ret = mig_set_state(d, states[i], &fd);
		if (ret) {
			if (failed_at)
				*failed_at = i;
			return ret;
		}
		if (fd >= 0) {
			if (*data_fd >= 0)
				close(*data_fd);
			*data_fd = fd;
		}
	}
	return 0;
}

int mig_precopy_info(int fd, struct vfio_precopy_info *info)
{
	memset(info, 0xff, sizeof(*info));
	info->argsz = sizeof(*info);
	info->flags = 0;
	return ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, info) ? -errno : 0;
}

int mig_read_stream(int fd, uint8_t **buf, size_t *len)
{
	size_t cap = *len + 4096;
	uint8_t *p;
	ssize_t n;

	for (;;) {
		p = realloc(*buf, cap);
		if (!p)
			return -ENOMEM;
		*buf = p;
		/* Odd-sized reads: the file must keep its position between them. */
		n = read(fd, p + *len, cap - *len > 1000 ? 1000 : cap - *len);
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		*len += n;
		if (cap - *len < 1000)
			cap *= 2;
	}
}

int mig_write_stream(int fd, const uint8_t *buf, size_t len, size_t chunk)
{
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < chunk ? len - done : chunk;
		ssize_t w = write(fd, buf + done, n);

		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		done += w;
	}
	return 0;
}

uint16_t vvms_get16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

uint32_t vvms_get32(const uint8_t *p)
{
	return vvms_get16(p) | (uint32_t)vvms_get16(p + 2) << 16;
}

uint64_t vvms_get64(const uint8_t *p)
{
	return vvms_get32(p) | (uint64_t)vvms_get32(p + 4) << 32;
}

void vvms_put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

void vvms_put32(uint8_t *p, uint32_t v)
{
	vvms_put16(p, v);
	vvms_put16(p + 2, v >> 16);
}

void vvms_put64(uint8_t *p, uint64_t v)
{
	vvms_put32(p, v);
	vvms_put32(p + 4, v >> 32);
}

/* CRC-32 (IEEE 802.3, reflected), as zlib computes it. */
uint32_t vvms_crc32(const uint8_t *data, size_t len)
{
	uint32_t c = ~0u;
	size_t i;
	int k;

	for (i = 0; i < len; i++) {
		c ^= data[i];
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return ~c;
}

long vvms_frame_check(const uint8_t *buf, size_t len, const char **why)
{
	uint32_t total, flags;

	if (len < VVMS_HEADER_LEN) {
		*why = "shorter than a header";
		return -1;
	}
	if (memcmp(buf, "VVMS", 4)) {
		*why = "bad magic";
		return -1;
	}
	if (vvms_get16(buf + 4) != 1) {
		*why = "bad version";
		return -1;
	}
	flags = vvms_get16(buf + 6);
	if (flags != VVMS_FRAME_PRECOPY && flags != VVMS_FRAME_FINAL) {
		*why = "bad flags";
		return -1;
	}
	total = vvms_get32(buf + 8);
	if (total < VVMS_HEADER_LEN + VVMS_CRC_LEN || total > VVMS_MAX_FRAME_LEN) {
		*why = "bad total_length";
		return -1;
	}
	if (total > len) {
		*why = "truncated";
		return -1;
	}
	if (vvms_get32(buf + total - VVMS_CRC_LEN) !=
	    vvms_crc32(buf, total - VVMS_CRC_LEN)) {
		*why = "CRC mismatch";
		return -1;
	}
	*why = "ok";
	return total;
}

void vvms_frame_fix_crc(uint8_t *frame)
{
	uint32_t total = vvms_get32(frame + 8);

	vvms_put32(frame + total - VVMS_CRC_LEN, vvms_crc32(frame, total - VVMS_CRC_LEN));
}

long vvms_find_section(const uint8_t *frame, uint16_t type, unsigned int nth)
{
	uint32_t total = vvms_get32(frame + 8);
	size_t off = VVMS_HEADER_LEN;

	while (off + VVMS_SECTION_HDR_LEN <= total - VVMS_CRC_LEN) {
		uint32_t len = vvms_get32(frame + off + 4);

		if (vvms_get16(frame + off) == type && nth-- == 0)
			return off;
		off += VVMS_SECTION_HDR_LEN + ((len + 7) & ~7u);
	}
	return -1;
}

const char *mig_devsim_stats_dir(void)
{
	static char dir[512];
	const char *cache = getenv("VVM_CACHE");

	snprintf(dir, sizeof(dir), "%s/build/devsim-stats",
		 cache && *cache ? cache : "/var/cache/virtio-vfio-mig");
	return dir;
}

long mig_devsim_stat(const char *dir, int instance, const char *prefix)
{
	char path[600], line[128];
	size_t plen = strlen(prefix);
	long total = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "%s/devsim%d.stats", dir, instance);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '=');

		if (eq && !strncmp(line, prefix, plen) && sscanf(eq + 1, "%ld", &v) == 1)
			total += v;
	}
	fclose(f);
	return total;
}

int mig_devsim_settle(const char *dir, int n, const char *prefix, long *out)
{
	long prev[8];
	int i, round;

	if (n > 8)
		return -1;
	for (i = 0; i < n; i++)
		prev[i] = -2;
	for (round = 0; round < 20; round++) {
		bool same = true;

		usleep(600 * 1000);
		for (i = 0; i < n; i++) {
			out[i] = mig_devsim_stat(dir, i, prefix);
			if (out[i] < 0)
				return -1;
			same &= out[i] == prev[i];
			prev[i] = out[i];
		}
		if (same)
			return 0;
	}
	return 0;
}
