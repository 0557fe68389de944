// SPDX-License-Identifier: GPL-2.0
/*
 * Drive a virtio-devsim virtio-blk function through VFIO, as a userspace
 * driver would, while virtio_vfio_mig is bound to it.
 *
 * Every test runs twice: with the device opened through its VFIO group and
 * container, and through its VFIO device cdev bound to an iommufd. They
 * check the device info and regions, the virtio capabilities seen through
 * the config region, a virtio-blk write and read back over a polled split
 * virtqueue in BAR4, VFIO_DEVICE_RESET, and the migration and dirty-logging
 * features the variant driver advertises.
 *
 * Usage: vfio_virtio_blk_test [BDF] [harness options]
 *   Without BDF the first device-model function (1af4:1042, subsystem
 *   0x1100) is used. The function must already be bound to virtio_vfio_mig
 *   (tools/testing/vm/guest/lib.sh: bind_driver), otherwise every test is
 *   skipped.
 *
 * Needs root, and VFIO no-IOMMU mode (vfio.enable_unsafe_noiommu_mode=1) or
 * an IOMMU. DMA memory is one 2 MiB hugepage per test when the pool has one
 * free (echo 4 >/proc/sys/vm/nr_hugepages is plenty); otherwise locked 4 KiB
 * pages are used and buffers crossing a page take several descriptors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "../../kselftest_harness.h"
#include "vfio_dev.h"
#include "virtio_user.h"

#define DEVSIM_VENDOR		0x1af4
#define DEVSIM_DEVICE		0x1042
#define DEVSIM_SUBSYS		0x1100
#define DRIVER			"virtio_vfio_mig"

/*
 * Layout of the device model
 * (Documentation/driver-api/virtio/migration-capabilities.rst).
 */
#define VIRTIO_BAR		4
#define VIRTIO_BAR_SIZE		0x8000ULL
#define MSIX_BAR		1
#define MSIX_BAR_SIZE		0x1000ULL
#define NOTIFY_MULTIPLIER	4U

/* The device model runs under TCG in the test VM: be generous. */
#define REQUEST_TIMEOUT_MS	10000
#define RESET_TIMEOUT_MS	5000

#define IO_SECTOR		2048ULL	/* 1 MiB into the disk */
#define IO_REQUESTS		4
#define IO_LEN			4096U

static const struct {
	uint8_t type;
	uint8_t pos;
	uint8_t cap_len;
	uint32_t offset;
	uint32_t length;
} expected_caps[] = {
	{ VIRTIO_PCI_CAP_COMMON_CFG, 0x40, 16, 0x0000, 0x38 },
	{ VIRTIO_PCI_CAP_NOTIFY_CFG, 0x50, 20, 0x3000, 0x1000 },
	{ VIRTIO_PCI_CAP_ISR_CFG, 0x64, 16, 0x1000, 1 },
	{ VIRTIO_PCI_CAP_DEVICE_CFG, 0x74, 16, 0x2000, 0x3c },
	{ VU_CAP_MEMORY_TRACK_CFG, 0x84, 16, 0x4000, 24 },
	{ VU_CAP_DEVICE_STATE_CFG, 0x94, 16, 0x5000, 8 },
};

static char bdf[VD_BDF_LEN];
static char skip_reason[256];

FIXTURE(vfio_virtio_blk) {
	struct vd dev;
	struct vu_mem mem;
	struct vu_caps caps;
	struct vu_dev vdev;
	bool virtio_mapped;
};

FIXTURE_VARIANT(vfio_virtio_blk) {
	enum vd_mode mode;
};

FIXTURE_VARIANT_ADD(vfio_virtio_blk, group) {
	.mode = VD_GROUP,
};

FIXTURE_VARIANT_ADD(vfio_virtio_blk, cdev) {
	.mode = VD_CDEV,
};

FIXTURE_SETUP(vfio_virtio_blk)
{
	int ret;

	if (skip_reason[0])
		SKIP(return, "%s", skip_reason);
	ret = vd_open(&self->dev, bdf, variant->mode);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s", bdf, self->dev.err);
}

FIXTURE_TEARDOWN(vfio_virtio_blk)
{
	/* Stop the device before its rings and buffers go away. */
	if (self->virtio_mapped)
		vu_reset(&self->vdev, RESET_TIMEOUT_MS);
	vd_close(&self->dev);
	if (self->mem.va)
		vu_mem_free(&self->mem);
}

/* Enable memory decoding and bus mastering, map BAR4 and find the structures. */
static void map_virtio(struct __test_metadata *_metadata, FIXTURE_DATA(vfio_virtio_blk) *self)
{
	uint8_t cfg[256];
	uint16_t cmd;

	ASSERT_EQ(0, vd_config_read(&self->dev, 0, cfg, sizeof(cfg)));
	ASSERT_EQ(0, vu_parse_caps(cfg, sizeof(cfg), &self->caps));
	memcpy(&cmd, cfg + PCI_COMMAND, 2);
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	ASSERT_EQ(0, vd_config_write(&self->dev, PCI_COMMAND, &cmd, 2));
	ASSERT_NE(NULL, vd_map_bar(&self->dev, VIRTIO_BAR)) TH_LOG("%s", self->dev.err);
	ASSERT_EQ(0, vu_dev_init(&self->vdev, self->dev.bar, self->dev.bar_size,
				 &self->caps, &self->mem));
	self->virtio_mapped = true;
}

TEST_F(vfio_virtio_blk, device_info)
{
	struct vfio_device_info *info = &self->dev.info;

	TH_LOG("%s opened through %s (%s), flags %#x, %u regions, %u irqs", bdf,
	       self->dev.node, self->dev.noiommu ? "no-IOMMU" : "IOMMU", info->flags,
	       info->num_regions, info->num_irqs);
	if (variant->mode == VD_CDEV)
		TH_LOG("bound %s, devid %u", self->dev.iommufd >= 0 ?
		       "to /dev/iommu" : "without an iommufd", self->dev.devid);
	ASSERT_LE(0, self->dev.fd);
	EXPECT_TRUE(!!(info->flags & VFIO_DEVICE_FLAGS_PCI));
	EXPECT_LE(VFIO_PCI_CONFIG_REGION_INDEX + 1U, info->num_regions);
	EXPECT_LE(VFIO_PCI_MSIX_IRQ_INDEX + 1U, info->num_irqs);
}

TEST_F(vfio_virtio_blk, regions)
{
	const uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	struct vfio_region_info info;
	unsigned int i;

	for (i = VFIO_PCI_BAR0_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; i++) {
		ASSERT_EQ(0, vd_region_info(&self->dev, i, &info));
		TH_LOG("BAR%u: size %#llx flags %#x offset %#llx", i,
		       (unsigned long long)info.size, info.flags,
		       (unsigned long long)info.offset);
		switch (i) {
		case VIRTIO_BAR:
			EXPECT_EQ(VIRTIO_BAR_SIZE, info.size);
			EXPECT_EQ(rw | VFIO_REGION_INFO_FLAG_MMAP,
				  info.flags & (rw | VFIO_REGION_INFO_FLAG_MMAP));
			break;
		case MSIX_BAR:
			EXPECT_EQ(MSIX_BAR_SIZE, info.size);
			EXPECT_EQ(rw, info.flags & rw);
			break;
		default:
			/* BAR5 is the upper half of the 64-bit BAR4. */
			EXPECT_EQ(0ULL, info.size);
		}
	}
	ASSERT_EQ(0, vd_region_info(&self->dev, VFIO_PCI_CONFIG_REGION_INDEX, &info));
	TH_LOG("config: size %#llx flags %#x", (unsigned long long)info.size, info.flags);
	EXPECT_LE(256ULL, info.size);
	EXPECT_EQ(rw, info.flags & rw);
	ASSERT_EQ(0, vd_region_info(&self->dev, VFIO_PCI_ROM_REGION_INDEX, &info));
	EXPECT_EQ(0ULL, info.size);
}

TEST_F(vfio_virtio_blk, config_caps)
{
	uint8_t cfg[256];
	uint16_t vendor, device, subsys;
	unsigned int i;

	ASSERT_EQ(0, vd_config_read(&self->dev, 0, cfg, sizeof(cfg)));
	memcpy(&vendor, cfg + PCI_VENDOR_ID, 2);
	memcpy(&device, cfg + PCI_DEVICE_ID, 2);
	memcpy(&subsys, cfg + PCI_SUBSYSTEM_ID, 2);
	EXPECT_EQ(DEVSIM_VENDOR, vendor);
	EXPECT_EQ(DEVSIM_DEVICE, device);
	EXPECT_EQ(DEVSIM_SUBSYS, subsys);
	EXPECT_LE(1, cfg[PCI_REVISION_ID]);

	ASSERT_EQ(0, vu_parse_caps(cfg, sizeof(cfg), &self->caps));
	for (i = 0; i < ARRAY_SIZE(expected_caps); i++) {
		const struct vu_cap *c = &self->caps.cap[expected_caps[i].type];

		TH_LOG("cfg_type %u: %s at %#x len %u, BAR%u %#x+%#x", expected_caps[i].type,
		       c->present ? "present" : "absent", c->pos, c->cap_len, c->bar,
		       c->offset, c->length);
		ASSERT_TRUE(c->present);
		EXPECT_EQ(expected_caps[i].pos, c->pos);
		EXPECT_EQ(expected_caps[i].cap_len, c->cap_len);
		EXPECT_EQ(VIRTIO_BAR, c->bar);
		EXPECT_EQ(expected_caps[i].offset, c->offset);
		EXPECT_EQ(expected_caps[i].length, c->length);
	}
	EXPECT_EQ(NOTIFY_MULTIPLIER, self->caps.notify_off_multiplier);
	EXPECT_NE(0, self->caps.msix_pos);
}

/* The byte at absolute disk offset @pos for a run seeded with @seed. */
static uint8_t pattern(uint32_t seed, uint64_t pos)
{
	uint64_t x = (pos + 1) * 0x9e3779b97f4a7c15ULL ^ seed;

	return (uint8_t)(x >> 29 ^ x >> 47);
}

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t sector)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = pattern(seed, sector * VU_SECTOR_SIZE + i);
}

/* Offset of the first byte differing from the pattern, or -1. */
static long check_pattern(const uint8_t *buf, size_t len, uint32_t seed, uint64_t sector)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != pattern(seed, sector * VU_SECTOR_SIZE + i))
			return i;
	return -1;
}

TEST_F_TIMEOUT(vfio_virtio_blk, blk_io, 300)
{
	const uint8_t running = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	struct vu_blk_req *wr[IO_REQUESTS], *rd[IO_REQUESTS], *big, *id;
	uint32_t seed = (uint32_t)getpid() * 2654435761u ^ (uint32_t)time(NULL);
	struct vu_dev *vdev = &self->vdev;
	uint64_t offered, capacity;
	unsigned int submitted = 0, i;
	struct vu_vq vq;
	int ret;

	map_virtio(_metadata, self);
	ASSERT_EQ(0, vu_mem_alloc(&self->mem, VU_HUGE_PAGE_SIZE));
	TH_LOG("DMA memory: %s", self->mem.hugetlb ? "a 2 MiB hugepage" :
	       "locked 4 KiB pages (no free hugepage)");
	ret = vd_dma_map(&self->dev, &self->mem);
	ASSERT_EQ(0, ret) TH_LOG("%s", self->dev.err);

	ASSERT_EQ(0, vu_reset(vdev, RESET_TIMEOUT_MS));
	offered = vu_device_features(vdev);
	TH_LOG("device features %#llx", (unsigned long long)offered);
	ASSERT_EQ(0, vu_negotiate(vdev, 1ULL << VIRTIO_F_ACCESS_PLATFORM,
				  1ULL << VIRTIO_F_VERSION_1));
	EXPECT_EQ(offered & (1ULL << VIRTIO_F_ACCESS_PLATFORM),
		  vdev->features & (1ULL << VIRTIO_F_ACCESS_PLATFORM));
	ASSERT_LE(1, vu_num_queues(vdev));
	ret = vu_vq_setup(vdev, &vq, 0, 64);
	ASSERT_EQ(0, ret) TH_LOG("queue 0 setup: %s", strerror(-ret));
	vu_driver_ok(vdev);
	ASSERT_EQ(running, vu_get_status(vdev));

	capacity = vu_cfg_read64(vdev, 0);
	TH_LOG("capacity %llu sectors, queue 0: %u entries, notify at %#lx",
	       (unsigned long long)capacity, vq.size,
	       (unsigned long)(vq.notify - vdev->notify));
	ASSERT_LE(IO_SECTOR + IO_REQUESTS * IO_LEN / VU_SECTOR_SIZE, capacity);

	/* Several writes in flight at once, one kick. */
	for (i = 0; i < IO_REQUESTS; i++) {
		uint64_t sector = IO_SECTOR + i * IO_LEN / VU_SECTOR_SIZE;

		wr[i] = vu_blk_req_alloc(&self->mem, IO_LEN);
		ASSERT_NE(NULL, wr[i]);
		fill_pattern(wr[i]->data, IO_LEN, seed, sector);
		ASSERT_EQ(0, vu_blk_submit(&vq, wr[i], VIRTIO_BLK_T_OUT, sector));
		submitted++;
	}
	vu_vq_kick(&vq);
	ret = vu_blk_wait_all(&vq, REQUEST_TIMEOUT_MS);
	ASSERT_EQ(0, ret) TH_LOG("writes: %s, used idx %u of %u", strerror(-ret),
				 vu_vq_used_idx(&vq), submitted);
	for (i = 0; i < IO_REQUESTS; i++) {
		EXPECT_TRUE(wr[i]->done);
		EXPECT_EQ(VIRTIO_BLK_S_OK, wr[i]->status);
		EXPECT_EQ(1U, wr[i]->used_len);
	}

	/*
	 * Read back: the same requests, one spanning all of them (several
	 * descriptors if its pages are not contiguous), and GET_ID.
	 */
	for (i = 0; i < IO_REQUESTS; i++) {
		rd[i] = vu_blk_req_alloc(&self->mem, IO_LEN);
		ASSERT_NE(NULL, rd[i]);
		memset(rd[i]->data, 0x5a, IO_LEN);
		ASSERT_EQ(0, vu_blk_submit(&vq, rd[i], VIRTIO_BLK_T_IN,
					   IO_SECTOR + i * IO_LEN / VU_SECTOR_SIZE));
		submitted++;
	}
	big = vu_blk_req_alloc(&self->mem, IO_REQUESTS * IO_LEN);
	ASSERT_NE(NULL, big);
	memset(big->data, 0xa5, big->len);
	ASSERT_EQ(0, vu_blk_submit(&vq, big, VIRTIO_BLK_T_IN, IO_SECTOR));
	submitted++;
	id = vu_blk_req_alloc(&self->mem, VIRTIO_BLK_ID_BYTES);
	ASSERT_NE(NULL, id);
	ASSERT_EQ(0, vu_blk_submit(&vq, id, VIRTIO_BLK_T_GET_ID, 0));
	submitted++;
	vu_vq_kick(&vq);
	ret = vu_blk_wait_all(&vq, REQUEST_TIMEOUT_MS);
	ASSERT_EQ(0, ret) TH_LOG("reads: %s, used idx %u of %u", strerror(-ret),
				 vu_vq_used_idx(&vq), submitted);

	for (i = 0; i < IO_REQUESTS; i++) {
		long bad = check_pattern(rd[i]->data, IO_LEN, seed,
					 IO_SECTOR + i * IO_LEN / VU_SECTOR_SIZE);

		EXPECT_EQ(VIRTIO_BLK_S_OK, rd[i]->status);
		EXPECT_EQ(IO_LEN + 1, rd[i]->used_len);
		EXPECT_EQ(-1, bad) TH_LOG("read %u differs at byte %ld", i, bad);
	}
	EXPECT_EQ(VIRTIO_BLK_S_OK, big->status);
	EXPECT_EQ(big->len + 1, big->used_len);
	EXPECT_EQ(-1, check_pattern(big->data, big->len, seed, IO_SECTOR));
	EXPECT_EQ(VIRTIO_BLK_S_OK, id->status);
	EXPECT_EQ(VIRTIO_BLK_ID_BYTES + 1U, id->used_len);
	TH_LOG("serial '%.*s'", VIRTIO_BLK_ID_BYTES, (char *)id->data);
	EXPECT_EQ(0, strncmp((char *)id->data, "devsim", 6));

	/* Every request came back exactly once. */
	EXPECT_EQ(submitted, vu_vq_used_idx(&vq));
	EXPECT_EQ(submitted, vq.last_used);
	EXPECT_EQ(vq.size, vq.num_free);

	EXPECT_EQ(0, vu_reset(vdev, RESET_TIMEOUT_MS));
	vu_vq_release(&vq);
}

TEST_F(vfio_virtio_blk, device_reset)
{
	const uint8_t started = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;

	map_virtio(_metadata, self);
	ASSERT_EQ(0, vu_reset(&self->vdev, RESET_TIMEOUT_MS));
	vu_set_status(&self->vdev, started);
	ASSERT_EQ(started, vu_get_status(&self->vdev));
	if (!(self->dev.info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "VFIO reports no reset method for %s (no FLR, PM or bus reset)",
		     bdf);
	ASSERT_EQ(0, ioctl(self->dev.fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	EXPECT_EQ(0, vu_get_status(&self->vdev));
	/* The device still works afterwards. */
	vu_set_status(&self->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	EXPECT_EQ(VIRTIO_CONFIG_S_ACKNOWLEDGE, vu_get_status(&self->vdev));
}

TEST_F(vfio_virtio_blk, migration_feature)
{
	const uint64_t want = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
			      VFIO_MIGRATION_PRE_COPY;
	struct vfio_device_feature_migration mig = {};
	int ret;

	ret = vd_feature(&self->dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
			 VFIO_DEVICE_FEATURE_MIGRATION, NULL, 0);
	ASSERT_EQ(0, ret) TH_LOG("PROBE|GET MIGRATION: %s", strerror(-ret));
	ret = vd_feature(&self->dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
			 &mig, sizeof(mig));
	ASSERT_EQ(0, ret) TH_LOG("GET MIGRATION: %s", strerror(-ret));
	TH_LOG("migration flags %#llx", (unsigned long long)mig.flags);
	EXPECT_EQ(want, mig.flags & want);
}

TEST_F(vfio_virtio_blk, dma_logging_probe)
{
	int ret = vd_feature(&self->dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
			     VFIO_DEVICE_FEATURE_DMA_LOGGING_START, NULL, 0);

	TH_LOG("DMA_LOGGING_START %s", !ret ? "supported" :
	       ret == -ENOTTY ? "not supported (ENOTTY)" : strerror(-ret));
	EXPECT_TRUE(ret == 0 || ret == -ENOTTY);
}

int main(int argc, char **argv)
{
	vd_select_test_device(&argc, &argv, DRIVER, bdf, skip_reason, sizeof(skip_reason));
	return test_harness_run(argc, argv);
}
