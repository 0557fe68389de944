// SPDX-License-Identifier: GPL-2.0
/*
 * Binding of virtio_vfio_mig to the devices of the virtio-devsim model.
 *
 * The driver must never take a virtio-pci function by itself (its IDs are
 * override-only), must bind through driver_override, must report the
 * migration capabilities it found, and must survive unbind/rebind.
 *
 * Usage: virtio_mig_bind_test [EXPECTED_DEVICES]   (default 2)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../kselftest.h"
#include "vfio_dev.h"

#define DRIVER "virtio_vfio_mig"
#define PCI_DEVICES "/sys/bus/pci/devices"
#define MAX_DEVICES 8

/* The device model: modern virtio-blk with its own subsystem ID. */
#define DEVSIM_VENDOR 0x1af4
#define DEVSIM_DEVICE 0x1042
#define DEVSIM_SUBSYS 0x1100

static char devices[MAX_DEVICES][VD_BDF_LEN];
static int nr_devices;

static int write_attr(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* Name of the driver bound to @bdf, or "" when none. */
static const char *bound_driver(const char *bdf)
{
	static char name[64];

	return vd_driver(bdf, name, sizeof(name));
}

static int bind_to_driver(const char *bdf)
{
	char path[PATH_MAX];
	int ret;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	ret = write_attr(path, DRIVER);
	if (ret)
		return ret;
	if (*bound_driver(bdf)) {
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", bdf);
		ret = write_attr(path, bdf);
		if (ret)
			return ret;
	}
	ret = write_attr("/sys/bus/pci/drivers_probe", bdf);
	if (ret)
		return ret;
	return strcmp(bound_driver(bdf), DRIVER) ? -ENODEV : 0;
}

static int unbind_from_driver(const char *bdf)
{
	return write_attr("/sys/bus/pci/drivers/" DRIVER "/unbind", bdf);
}

/*
 * Count the probe reports for @bdf in the kernel log that say both migration
 * capabilities are present.
 */
static int probe_reports(const char *bdf)
{
	char line[1024], prefix[64];
	int fd, count = 0;
	ssize_t n;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	snprintf(prefix, sizeof(prefix), DRIVER " %s: ", bdf);
	while ((n = read(fd, line, sizeof(line) - 1)) != 0) {
		if (n < 0) {
			if (errno == EPIPE)
				continue; /* overwritten records */
			break;
		}
		line[n] = 0;
		if (strstr(line, prefix) &&
		    strstr(line, "memory-track present, device-state present"))
			count++;
	}
	close(fd);
	return count;
}

int main(int argc, char **argv)
{
	int expected = argc > 1 ? atoi(argv[1]) : 2;
	int i;

	ksft_print_header();
	nr_devices = vd_find(DEVSIM_VENDOR, DEVSIM_DEVICE, DEVSIM_SUBSYS, devices, MAX_DEVICES);
	if (nr_devices < expected)
		ksft_exit_fail_msg("found %d device-model functions, expected %d\n",
				   nr_devices, expected);
	ksft_set_plan(4 * nr_devices);

	for (i = 0; i < nr_devices; i++) {
		const char *bdf = devices[i];
		int before = probe_reports(bdf);

		ksft_test_result(strcmp(bound_driver(bdf), DRIVER) != 0,
				 "%s not taken without driver_override (driver '%s')\n",
				 bdf, bound_driver(bdf));
		ksft_test_result(bind_to_driver(bdf) == 0, "%s binds through driver_override\n",
				 bdf);
		ksft_test_result(probe_reports(bdf) == before + 1,
				 "%s probe reports both migration capabilities\n", bdf);
		ksft_test_result(unbind_from_driver(bdf) == 0 && *bound_driver(bdf) == 0 &&
				 bind_to_driver(bdf) == 0 && probe_reports(bdf) == before + 2,
				 "%s unbinds and binds again\n", bdf);
	}
	ksft_finished();
}
