/* SPDX-License-Identifier: GPL-2.0 */
/*
 * VFIO migration helpers for the virtio_mig selftests: the migration state
 * feature, the data files, and the stream format of virtio_vfio_mig
 * (rust/virtio_mig_core/src/mig_stream.rs), enough to take a saved stream
 * apart, damage it on purpose and make its CRC valid again.
 *
 * Also the setup every migration test repeats: opening a device-model
 * function, mapping its virtio structures, and bringing up a virtio-blk
 * queue on it.
 */
#ifndef VFIO_MIG_UTIL_H
#define VFIO_MIG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

#include "vfio_dev.h"
#include "virtio_user.h"

#define DEVSIM_VENDOR		0x1af4
#define DEVSIM_DEVICE		0x1042
#define DEVSIM_SUBSYS		0x1100
#define MIG_DRIVER		"virtio_vfio_mig"

/*
 * Layout of the device model
 * (Documentation/driver-api/virtio/migration-capabilities.rst).
 */
#define MIG_VIRTIO_BAR		4

/* The device model runs under TCG in the test VM: be generous. */
#define MIG_REQUEST_TIMEOUT_MS	10000
#define MIG_RESET_TIMEOUT_MS	5000

/* Stream format, version 1. */
#define VVMS_HEADER_LEN		16
#define VVMS_SECTION_HDR_LEN	8
#define VVMS_CRC_LEN		4
#define VVMS_FRAME_PRECOPY	0x1
#define VVMS_FRAME_FINAL	0x2
#define VVMS_SEC_IDENTITY	1
#define VVMS_SEC_DRIVER_STATE	2
#define VVMS_SEC_MSIX_CONFIG	3
#define VVMS_SEC_QUEUE		4
#define VVMS_SEC_DEVICE_CONFIG	5
#define VVMS_MAX_FRAME_LEN	(128 * 1024)
/* What a resuming file takes at most: a pre-copy and a final frame. */
#define VVMS_MAX_RESUME_LEN	(2 * VVMS_MAX_FRAME_LEN)
/* Offsets in the identity payload. */
#define VVMS_ID_DEVICE_TYPE	0
#define VVMS_ID_DEVICE_ID	6
#define VVMS_ID_DEVICE_FEATURES	12
#define VVMS_ID_NUM_QUEUES	20
/* Offsets in the driver state payload. */
#define VVMS_DS_DRIVER_FEATURES	0
#define VVMS_DS_DEVICE_STATUS	8
/* Offsets in a queue payload. */
#define VVMS_Q_INDEX		0
#define VVMS_Q_ENABLE		4
#define VVMS_Q_LAST_AVAIL	10

/* A function of the device model opened through VFIO, its virtio structures mapped. */
struct mig_dev {
	struct vd vd;
	struct vu_caps caps;
	struct vu_dev vu;
	bool mapped;
};

/* Open @bdf (group interface), enable memory and bus mastering, map BAR4. */
int mig_dev_open(struct mig_dev *m, const char *bdf, struct vu_mem *mem);
/* Reset the function (VFIO_DEVICE_RESET), then the virtio device; close it. */
void mig_dev_close(struct mig_dev *m);
/* VFIO_DEVICE_RESET; 0 or -errno. */
int mig_dev_reset(struct mig_dev *m);

/*
 * Negotiate VERSION_1 (and ACCESS_PLATFORM and CONFIG_WCE when offered), set up queue 0 with
 * @size entries in m->vu.mem and set DRIVER_OK.
 */
int mig_blk_start(struct mig_dev *m, struct vu_vq *vq, uint16_t size);
/*
 * One write of @len bytes at @sector followed by a read back, on a fresh
 * queue; 0 when the data came back, else -errno. Resets the virtio device
 * before and after. Ring and buffer memory is taken from m->vu.mem.
 */
int mig_blk_io_check(struct mig_dev *m, uint64_t sector, uint32_t len, uint32_t seed);

/* Pattern byte at absolute disk offset @pos for a run seeded with @seed. */
uint8_t mig_pattern(uint32_t seed, uint64_t pos);
void mig_fill_pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t sector);
/* Offset of the first byte differing from the pattern, or -1. */
long mig_check_pattern(const uint8_t *buf, size_t len, uint32_t seed, uint64_t sector);

const char *mig_state_name(uint32_t state);
/*
 * VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE SET: request @state. Returns 0 or
 * -errno; *data_fd gets what the kernel returned in data_fd (-1 for none).
 */
int mig_set_state(struct vd *d, uint32_t state, int *data_fd);
/* VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE GET; 0 or -errno. */
int mig_get_state(struct vd *d, uint32_t *state);
/* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE; 0 or -errno. */
int mig_data_size(struct vd *d, uint64_t *len);
/*
 * Request each of the @n states in turn (single arcs). Stops at the first
 * failure: returns -errno and the index of the failed request in *failed_at.
 * A data fd returned by an arc is kept in *data_fd (closing a previous one);
 * *data_fd must be initialised (-1).
 */
int mig_walk(struct vd *d, const uint32_t *states, int n, int *data_fd, int *failed_at);
/* VFIO_MIG_GET_PRECOPY_INFO on a saving fd; 0 or -errno. */
int mig_precopy_info(int fd, struct vfio_precopy_info *info);

/*
 * Read a saving fd until read() returns 0 or fails, appending to *buf
 * (realloc'ed) at *len. Returns 0 at end of stream or -errno of the failed
 * read (e.g. -ENOMSG at a temporary end in pre-copy).
 */
int mig_read_stream(int fd, uint8_t **buf, size_t *len);
/* write() all of @buf in chunks of @chunk; 0 or -errno. */
int mig_write_stream(int fd, const uint8_t *buf, size_t len, size_t chunk);

uint16_t vvms_get16(const uint8_t *p);
uint32_t vvms_get32(const uint8_t *p);
uint64_t vvms_get64(const uint8_t *p);
void vvms_put16(uint8_t *p, uint16_t v);
void vvms_put32(uint8_t *p, uint32_t v);
void vvms_put64(uint8_t *p, uint64_t v);
uint32_t vvms_crc32(const uint8_t *data, size_t len);
/*
 * Check the frame at @buf (up to @len bytes): magic, version, flags,
 * length and CRC. Returns its length or -1, with the reason in @why.
 */
long vvms_frame_check(const uint8_t *buf, size_t len, const char **why);
/* Recompute the CRC of the frame at @frame (its total_length is trusted). */
void vvms_frame_fix_crc(uint8_t *frame);
/*
 * Offset (from @frame) of the section header of the @nth section of @type
 * (0-based) in the frame, or -1.
 */
long vvms_find_section(const uint8_t *frame, uint16_t type, unsigned int nth);

/*
 * The device models' counters (tools/testing/vm/run-vm.sh: instance i is the
 * i-th device-model function in PCI address order) are in
 * $VVM_CACHE/build/devsim-stats/devsim<i>.stats, one key=value per line,
 * refreshed twice a second. mig_devsim_stats_dir() is that directory.
 */
const char *mig_devsim_stats_dir(void);
/* Sum of the counters of @instance whose names start with @prefix, or -1. */
long mig_devsim_stat(const char *dir, int instance, const char *prefix);
/*
 * Waits until the @prefix counters of instances 0..@n-1 stopped changing
 * and stores them in @out. Returns 0, or -1 when a file is missing.
 */
int mig_devsim_settle(const char *dir, int n, const char *prefix, long *out);

#endif /* VFIO_MIG_UTIL_H */
