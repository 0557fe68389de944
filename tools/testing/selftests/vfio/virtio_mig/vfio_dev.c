// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO plumbing for the virtio_mig selftests; see vfio_dev.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/iommufd.h>

#include "vfio_dev.h"

#define PCI_DEVICES	"/sys/bus/pci/devices"

/* Record what failed and return -errno (or -EIO when errno is clear). */
static int fail(struct vd *d, const char *fmt, ...)
{
	int err = errno ? errno : EIO;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	n = vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	if (n < sizeof(d->err))
		snprintf(d->err + n, sizeof(d->err) - n, ": %s", strerror(err));
	errno = err;
	return -err;
}

static long read_hex(const char *bdf, const char *attr)
{
	char path[PATH_MAX], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", bdf, attr);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strtol(buf, NULL, 16);
}

static int cmp_bdf(const void *a, const void *b)
{
	return strcmp(a, b);
}

int vd_find(uint16_t vendor, uint16_t device, uint16_t subsys_device,
	    char (*bdfs)[VD_BDF_LEN], int max)
{
	DIR *dir = opendir(PCI_DEVICES);
	struct dirent *de;
	int n = 0;

	if (!dir)
		return -errno;
	while ((de = readdir(dir)) && n < max) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' || len >= VD_BDF_LEN)
			continue;
		if (read_hex(de->d_name, "vendor") == vendor &&
		    read_hex(de->d_name, "device") == device &&
		    read_hex(de->d_name, "subsystem_device") == subsys_device)
			memcpy(bdfs[n++], de->d_name, len + 1);
	}
	closedir(dir);
	qsort(bdfs, n, VD_BDF_LEN, cmp_bdf);
	return n;
}

const char *vd_driver(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver", bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		snprintf(buf, len, "%s", "");
		return buf;
	}
	target[n] = 0;
	snprintf(buf, len, "%s", basename(target));
	return buf;
}

static int open_group(struct vd *d)
{
	char path[PATH_MAX], target[PATH_MAX];
	struct vfio_group_status status = { .argsz = sizeof(status) };
	const char *group;
	int type;
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", d->bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return fail(d, "readlink %s", path);
	target[n] = 0;
	group = basename(target);

	/* A no-IOMMU group gets its own node name. */
	snprintf(d->node, sizeof(d->node), "/dev/vfio/noiommu-%s", group);
	d->noiommu = access(d->node, F_OK) == 0;
	if (!d->noiommu)
		snprintf(d->node, sizeof(d->node), "/dev/vfio/%s", group);
	type = d->noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;

	d->container = open("/dev/vfio/vfio", O_RDWR);
	if (d->container < 0)
		return fail(d, "open /dev/vfio/vfio");
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
		errno = EPROTO;
		return fail(d, "VFIO_GET_API_VERSION");
	}
	if (ioctl(d->container, VFIO_CHECK_EXTENSION, type) <= 0) {
		errno = EOPNOTSUPP;
		return fail(d, "VFIO_CHECK_EXTENSION(%s)",
			    d->noiommu ? "VFIO_NOIOMMU_IOMMU" : "VFIO_TYPE1v2_IOMMU");
	}
	d->group = open(d->node, O_RDWR);
	if (d->group < 0)
		return fail(d, "open %s", d->node);
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &status))
		return fail(d, "VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		return fail(d, "group %s not viable", group);
	}
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container))
		return fail(d, "VFIO_GROUP_SET_CONTAINER");
	if (ioctl(d->container, VFIO_SET_IOMMU, type))
		return fail(d, "VFIO_SET_IOMMU");
	d->fd = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
	if (d->fd < 0)
		return fail(d, "VFIO_GROUP_GET_DEVICE_FD(%s)", d->bdf);
	return 0;
}

static int cdev_name(struct vd *d, char *name, size_t len)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/vfio-dev", d->bdf);
	dir = opendir(path);
	if (!dir)
		return fail(d, "opendir %s", path);
	errno = ENOENT;
	while ((de = readdir(dir))) {
		if (strstr(de->d_name, "vfio") && de->d_name[0] != '.') {
			snprintf(name, len, "%s", de->d_name);
			closedir(dir);
			return 0;
		}
	}
	closedir(dir);
	return fail(d, "no device in %s", path);
}

static int bind_iommufd(struct vd *d, int iommufd)
{
	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind),
		.iommufd = iommufd,
	};
	int ret = ioctl(d->fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);

	if (!ret)
		d->devid = bind.out_devid;
	return ret ? -errno : 0;
}

static int open_cdev(struct vd *d)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	char name[NAME_MAX + 1];
	int ret;

	ret = cdev_name(d, name, sizeof(name));
	if (ret)
		return ret;
	d->noiommu = !strncmp(name, "noiommu-", 8);
	snprintf(d->node, sizeof(d->node), "/dev/vfio/devices/%s", name);
	d->fd = open(d->node, O_RDWR);
	if (d->fd < 0)
		return fail(d, "open %s", d->node);

	/*
	 * No-IOMMU devices were once bound without an iommufd (iommufd = -1);
	 * current kernels want a real one, whose IOAS then records the
	 * physical addresses of pinned memory. Try the former first.
	 */
	if (d->noiommu && !bind_iommufd(d, -1))
		return 0;

	d->iommufd = open("/dev/iommu", O_RDWR);
	if (d->iommufd < 0)
		return fail(d, "open /dev/iommu");
	ret = bind_iommufd(d, d->iommufd);
	if (ret) {
		errno = -ret;
		return fail(d, "VFIO_DEVICE_BIND_IOMMUFD");
	}
	if (ioctl(d->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return fail(d, "IOMMU_IOAS_ALLOC");
	d->ioas_id = alloc.out_ioas_id;
	attach.pt_id = d->ioas_id;
	if (ioctl(d->fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		return fail(d, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	return 0;
}

int vd_open(struct vd *d, const char *bdf, enum vd_mode mode)
{
	int ret;

	memset(d, 0, sizeof(*d));
	d->fd = d->container = d->group = d->iommufd = -1;
	d->mode = mode;
	d->dma_iova = VD_DMA_IOVA;
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);

	errno = 0;
	ret = mode == VD_GROUP ? open_group(d) : open_cdev(d);
	if (!ret) {
		d->info.argsz = sizeof(d->info);
		if (ioctl(d->fd, VFIO_DEVICE_GET_INFO, &d->info))
			ret = fail(d, "VFIO_DEVICE_GET_INFO");
	}
	if (ret) {
		char err[sizeof(d->err)];

		memcpy(err, d->err, sizeof(err));
		vd_close(d);
		memcpy(d->err, err, sizeof(err));
	}
	return ret;
}

void vd_close(struct vd *d)
{
	unsigned int i;

	vd_dma_unmap(d);
	for (i = 0; i < 6; i++) {
		if (d->bar[i])
			munmap(d->bar[i], d->bar_size[i]);
		d->bar[i] = NULL;
	}
	if (d->fd >= 0)
		close(d->fd);
	if (d->group >= 0)
		close(d->group);
	if (d->container >= 0)
		close(d->container);
	if (d->iommufd >= 0)
		close(d->iommufd);
	d->fd = d->group = d->container = d->iommufd = -1;
}

int vd_region_info(struct vd *d, unsigned int index, struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(d->fd, VFIO_DEVICE_GET_REGION_INFO, info))
		return -errno;
	return 0;
}

static int config_io(struct vd *d, bool write, unsigned int off, void *buf, size_t len)
{
	struct vfio_region_info info;
	ssize_t n;
	int ret;

	ret = vd_region_info(d, VFIO_PCI_CONFIG_REGION_INDEX, &info);
	if (ret)
		return ret;
	if (off > info.size || len > info.size - off)
		return -EINVAL;
	if (write)
		n = pwrite(d->fd, buf, len, info.offset + off);
	else
		n = pread(d->fd, buf, len, info.offset + off);
	if (n < 0)
		return -errno;
	return n == (ssize_t)len ? 0 : -EIO;
}

int vd_config_read(struct vd *d, unsigned int off, void *buf, size_t len)
{
	return config_io(d, false, off, buf, len);
}

int vd_config_write(struct vd *d, unsigned int off, const void *buf, size_t len)
{
	return config_io(d, true, off, (void *)buf, len);
}

void *vd_map_bar(struct vd *d, unsigned int index)
{
	struct vfio_region_info info;
	void *p;

	if (index >= 6)
		return NULL;
	if (d->bar[index])
		return d->bar[index];
	errno = 0;
	if (vd_region_info(d, index, &info) || !(info.flags & VFIO_REGION_INFO_FLAG_MMAP) ||
	    !info.size) {
		fail(d, "BAR%u is not mmap-able", index);
		return NULL;
	}
	p = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, info.offset);
	if (p == MAP_FAILED) {
		fail(d, "mmap BAR%u", index);
		return NULL;
	}
	d->bar[index] = p;
	d->bar_size[index] = info.size;
	return p;
}

static int map_type1(struct vd *d, struct vu_mem *m)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)m->va,
		.iova = d->dma_iova,
		.size = m->size,
	};

	if (ioctl(d->container, VFIO_IOMMU_MAP_DMA, &map))
		return fail(d, "VFIO_IOMMU_MAP_DMA");
	vu_mem_set_linear(m, d->dma_iova);
	return 0;
}

/* Physical address of every page, as the no-IOMMU IOAS recorded it. */
static int ioas_physical(struct vd *d, struct vu_mem *m)
{
#ifdef IOMMU_IOAS_NOIOMMU_GET_PA
	size_t off = 0;

	while (off < m->size) {
		struct iommu_ioas_noiommu_get_pa pa = {
			.size = sizeof(pa),
			.ioas_id = d->ioas_id,
			.iova = d->dma_iova + off,
			.length = m->size - off,
		};
		size_t i;

		if (ioctl(d->iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa))
			return fail(d, "IOMMU_IOAS_NOIOMMU_GET_PA");
		if (!pa.length || pa.length % VU_PAGE_SIZE || pa.out_phys % VU_PAGE_SIZE) {
			errno = EIO;
			return fail(d, "IOMMU_IOAS_NOIOMMU_GET_PA returned %#llx+%#llx",
				    (unsigned long long)pa.out_phys,
				    (unsigned long long)pa.length);
		}
		for (i = 0; i < pa.length && off < m->size; i += VU_PAGE_SIZE) {
			m->iova[off / VU_PAGE_SIZE] = pa.out_phys + i;
			off += VU_PAGE_SIZE;
		}
	}
	return 0;
#else
	int ret = vu_mem_set_physical(m);

	if (ret) {
		errno = -ret;
		return fail(d, "/proc/self/pagemap");
	}
	return 0;
#endif
}

static int map_ioas(struct vd *d, struct vu_mem *m)
{
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = d->ioas_id,
		.user_va = (uintptr_t)m->va,
		.length = m->size,
		.iova = d->dma_iova,
	};

	if (ioctl(d->iommufd, IOMMU_IOAS_MAP, &map))
		return fail(d, "IOMMU_IOAS_MAP");
	if (d->noiommu)
		return ioas_physical(d, m);
	vu_mem_set_linear(m, d->dma_iova);
	return 0;
}

int vd_dma_map(struct vd *d, struct vu_mem *m)
{
	int ret;

	errno = 0;
	if (d->dma)
		return -EBUSY;
	if (d->mode == VD_CDEV && d->iommufd >= 0) {
		ret = map_ioas(d, m);
	} else if (d->noiommu) {
		/* Nothing pins the pages: they are hugetlb or mlock'ed. */
		ret = vu_mem_set_physical(m);
		if (ret) {
			errno = -ret;
			ret = fail(d, "/proc/self/pagemap");
		}
	} else {
		ret = map_type1(d, m);
	}
	if (!ret)
		d->dma = m;
	return ret;
}

void vd_dma_unmap(struct vd *d)
{
	struct vu_mem *m = d->dma;

	if (!m)
		return;
	d->dma = NULL;
	if (d->mode == VD_CDEV && d->iommufd >= 0) {
		struct iommu_ioas_unmap unmap = {
			.size = sizeof(unmap),
			.ioas_id = d->ioas_id,
			.iova = d->dma_iova,
			.length = m->size,
		};

		ioctl(d->iommufd, IOMMU_IOAS_UNMAP, &unmap);
	} else if (!d->noiommu) {
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap),
			.iova = d->dma_iova,
			.size = m->size,
		};

		ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &unmap);
	}
}

int vd_feature_fd(int fd, uint32_t flags, void *data, size_t len)
{
	struct vfio_device_feature *f;
	int ret = 0;

	f = calloc(1, sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->argsz = sizeof(*f) + len;
	f->flags = flags;
	if (len)
		memcpy(f->data, data, len);
	if (ioctl(fd, VFIO_DEVICE_FEATURE, f))
		ret = -errno;
	else if (len)
		/* GET fills the payload in; some SETs (DMA_LOGGING_START) update it too. */
		memcpy(data, f->data, len);
	free(f);
	return ret;
}

int vd_feature(struct vd *d, uint32_t flags, void *data, size_t len)
{
	return vd_feature_fd(d->fd, flags, data, len);
}

int vd_select_test_device(int *argc, char ***argv, const char *driver, char *bdf,
			  char *skip_reason, size_t skip_len)
{
	char found[8][VD_BDF_LEN], bound[64];
	char *p;

	/* A leading argument that is not an option names the function. */
	if (*argc > 1 && (*argv)[1][0] != '-') {
		snprintf(bdf, VD_BDF_LEN, "%s", (*argv)[1]);
		(*argv)[1] = (*argv)[0];
		(*argv)++;
		(*argc)--;
	} else if (vd_find(0x1af4, 0x1042, 0x1100, found, 8) > 0) {
		snprintf(bdf, VD_BDF_LEN, "%s", found[0]);
	} else {
		snprintf(skip_reason, skip_len,
			 "no virtio-devsim function (1af4:1042 subsystem 1100)");
		return -ENODEV;
	}
	vd_driver(bdf, bound, sizeof(bound));
	/* The kernel names modules with '_' where sysfs may show '-'. */
	for (p = bound; *p; p++)
		if (*p == '-')
			*p = '_';
	if (strcmp(bound, driver)) {
		snprintf(skip_reason, skip_len, "%s is bound to '%s', not %s", bdf, bound, driver);
		return -ENODEV;
	}
	return 0;
}
