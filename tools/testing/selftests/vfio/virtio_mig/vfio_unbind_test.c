// SPDX-License-Identifier: GPL-2.0
/*
 * Unbinding virtio_vfio_mig while a VFIO user holds the device open.
 *
 * The driver core must wait until the user closes the device (VFIO asks the
 * user to release it), nothing may crash, and afterwards the function binds
 * again and opens as before.
 *
 * Usage: vfio_unbind_test [BDF]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../kselftest.h"
#include "vfio_dev.h"

#define DRIVER "virtio_vfio_mig"

static char bdf[VD_BDF_LEN];
static volatile int unbind_done;
static int unbind_ret;

static int write_attr(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static void *unbind_thread(void *arg)
{
	(void)arg;
	unbind_ret = write_attr("/sys/bus/pci/drivers/" DRIVER "/unbind", bdf);
	unbind_done = 1;
	return NULL;
}

/* Open the device and keep it open until killed; report readiness on @ready. */
static void hold_device(int ready)
{
	struct vd d;
	char ok = 1;

	if (vd_open(&d, bdf, VD_GROUP) || !vd_map_bar(&d, 4))
		ok = 0;
	if (write(ready, &ok, 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static const char *driver_of(char *buf, size_t len)
{
	return vd_driver(bdf, buf, len);
}

int main(int argc, char **argv)
{
	char drv[64], ok = 0;
	pthread_t thread;
	int pipefd[2];
	struct vd d;
	pid_t child;

	ksft_print_header();
	if (argc > 1) {
		snprintf(bdf, sizeof(bdf), "%s", argv[1]);
	} else if (vd_find(0x1af4, 0x1042, 0x1100, &bdf, 1) < 1) {
		ksft_exit_skip("no device-model function\n");
	}
	if (strcmp(driver_of(drv, sizeof(drv)), DRIVER))
		ksft_exit_skip("%s is bound to '%s', not %s\n", bdf, drv, DRIVER);
	ksft_set_plan(4);

	if (pipe(pipefd))
		ksft_exit_fail_msg("pipe: %s\n", strerror(errno));
	child = fork();
	if (child == 0)
		hold_device(pipefd[1]);
	if (read(pipefd[0], &ok, 1) != 1 || !ok) {
		kill(child, SIGKILL);
		ksft_exit_fail_msg("the holder could not open %s\n", bdf);
	}

	pthread_create(&thread, NULL, unbind_thread, NULL);
	sleep(2);
	ksft_test_result(!unbind_done, "unbind waits while a user holds %s open\n", bdf);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	/* The holder's descriptors are closed now: the unbind must finish, within 20 s. */
	for (int i = 0; i < 200 && !unbind_done; i++)
		usleep(100 * 1000);
	ksft_test_result(unbind_done && unbind_ret == 0 && !*driver_of(drv, sizeof(drv)),
			 "unbind completes once the user is gone (ret %d)\n", unbind_ret);
	if (!unbind_done)
		ksft_exit_fail_msg("unbind still blocked\n");
	pthread_join(thread, NULL);

	/* driver_override still names the driver: probing binds it again. */
	ksft_test_result(write_attr("/sys/bus/pci/drivers_probe", bdf) == 0 &&
			 !strcmp(driver_of(drv, sizeof(drv)), DRIVER),
			 "%s binds again\n", bdf);
	ksft_test_result(vd_open(&d, bdf, VD_GROUP) == 0, "%s opens again\n", bdf);
	vd_close(&d);
	ksft_finished();
}
