/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Opening a PCI function through VFIO for the virtio_mig selftests: the
 * legacy group/container interface or the device cdev with iommufd, in
 * no-IOMMU mode (DMA addresses are physical) or behind an IOMMU (memory is
 * mapped at a fixed IOVA).
 */
#ifndef VFIO_DEV_H
#define VFIO_DEV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

#include "virtio_user.h"

#define VD_BDF_LEN	32
/* Where DMA memory goes when an IOMMU translates: clear of the x86 MSI window. */
#define VD_DMA_IOVA	(1ULL << 30)

enum vd_mode {
	VD_GROUP,	/* /dev/vfio/[noiommu-]N + /dev/vfio/vfio */
	VD_CDEV,	/* /dev/vfio/devices/[noiommu-]vfioX + /dev/iommu */
};

struct vd {
	char bdf[VD_BDF_LEN];
	enum vd_mode mode;
	bool noiommu;
	char node[PATH_MAX];	/* the group or device node opened */
	int fd;			/* device */
	int container;		/* VD_GROUP */
	int group;		/* VD_GROUP */
	int iommufd;		/* VD_CDEV; -1 when bound without one */
	uint32_t ioas_id;	/* VD_CDEV with an iommufd */
	uint32_t devid;		/* VD_CDEV */
	struct vfio_device_info info;
	void *bar[6];
	size_t bar_size[6];
	struct vu_mem *dma;	/* mapped by vd_dma_map() */
	uint64_t dma_iova;	/* where vd_dma_map() maps behind an IOMMU; VD_DMA_IOVA */
	char err[256];		/* what failed, for the test log */
};

/* PCI functions with these IDs under /sys/bus/pci/devices; returns the count. */
int vd_find(uint16_t vendor, uint16_t device, uint16_t subsys_device,
	    char (*bdfs)[VD_BDF_LEN], int max);
/*
 * The device-model function a test runs on: a leading argument that is not an
 * option names it (and is removed from @argc/@argv), else the first one found.
 * Returns 0, or -ENODEV with @skip_reason saying why the tests must skip (none
 * found, or not bound to @driver).
 */
int vd_select_test_device(int *argc, char ***argv, const char *driver, char *bdf,
			  char *skip_reason, size_t skip_len);
/* Name of the driver bound to @bdf ("" when none) in @buf. */
const char *vd_driver(const char *bdf, char *buf, size_t len);

/* Open @bdf through @mode and read its device info. Returns 0 or -errno. */
int vd_open(struct vd *d, const char *bdf, enum vd_mode mode);
void vd_close(struct vd *d);

int vd_region_info(struct vd *d, unsigned int index, struct vfio_region_info *info);
int vd_config_read(struct vd *d, unsigned int off, void *buf, size_t len);
int vd_config_write(struct vd *d, unsigned int off, const void *buf, size_t len);
/* mmap a whole BAR (recorded in d->bar / d->bar_size); NULL on failure. */
void *vd_map_bar(struct vd *d, unsigned int index);

/*
 * Make @m reachable by the device and fill in its IOVAs: physical addresses
 * in no-IOMMU mode, d->dma_iova (VD_DMA_IOVA unless the caller changed it
 * after vd_open()) onwards otherwise.
 */
int vd_dma_map(struct vd *d, struct vu_mem *m);
void vd_dma_unmap(struct vd *d);

/*
 * VFIO_DEVICE_FEATURE with @flags (operation and feature); @data of @len
 * bytes is the payload, filled in on GET. Returns 0 or -errno.
 */
int vd_feature(struct vd *d, uint32_t flags, void *data, size_t len);
/* The same on a device file descriptor; the payload is copied back on success. */
int vd_feature_fd(int fd, uint32_t flags, void *data, size_t len);

#endif /* VFIO_DEV_H */
