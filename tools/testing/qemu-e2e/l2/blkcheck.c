// SPDX-License-Identifier: GPL-2.0
/*
 * blkcheck - prove data integrity on a block device across a live migration.
 *
 *   blkcheck run [OPTIONS] DEV     write, re-read and verify blocks continuously
 *   blkcheck check [OPTIONS] DEV   verify a region offline (the writer is stopped)
 *
 * DEV is a block device (one request per I/O: O_DIRECT, 4 KiB aligned) or, for
 * tests on a build host, a regular file on a filesystem that supports O_DIRECT.
 *
 * Region: blocks 0 .. N-1 of 4 KiB from offset 0. Block 0 is a header (magic,
 * version, run id, N), zero elsewhere so no partition table is ever seen in it.
 * Writes cycle through blocks 1 .. N-1 with strictly increasing sequence
 * numbers starting at 1, so sequence s always lands in block 1 + (s - 1) % (N - 1).
 *
 * Every 512-byte sector of a data block written with sequence s carries
 *
 *   word 0  magic "BLKCHKD1"
 *   word 1  s
 *   word 2  run id (random per "run", so data of an earlier run is stale)
 *   word 3  block number (low 32 bits) | sector index (high 32 bits)
 *   rest    payload words derived from (run, s, block, sector, word index)
 *
 * and word 4 of sector 0 holds a checksum over the whole block (that word
 * taken as zero). A block is good when it is exactly the image of the sequence
 * expected for it. Otherwise the sectors tell what went wrong: a sector that is
 * not the image of its own stamp is corrupt ("checksum"); sectors of different
 * writes are a torn write ("torn"); a whole older write, a write of another run
 * or a block still zero is "stale"; a write newer than the last one that
 * completed is "future"; a failed read or write is "io".
 *
 * "run" keeps the expected sequence of every block in memory, verifies each
 * write by reading it back and one pseudo-random earlier block after it, and
 * takes line commands on stdin (pause, resume, verify, stats, status, quit).
 * All output lines start with "blkcheck: " and are flushed at once.
 *
 * "stats" prints the completed read, write and flush requests of the device as
 * the block layer counts them (/sys/dev/block/M:m/stat): that count includes
 * the partition scan, and every flush (fsync) adds one empty write that carries
 * it, which never reaches the device. blkcheck's own counts follow on the
 * "iostat" line.
 *
 * The on-disk words are in host byte order (little-endian on x86).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define BLK_SIZE		4096
#define SECTOR_SIZE		512
#define SECTORS			(BLK_SIZE / SECTOR_SIZE)
#define SECTOR_WORDS		(SECTOR_SIZE / 8)
#define BLK_WORDS		(BLK_SIZE / 8)

#define HDR_MAGIC		0x31484b48434b4c42ULL	/* "BLKCHKH1" */
#define DATA_MAGIC		0x31444b48434b4c42ULL	/* "BLKCHKD1" */
#define HDR_VERSION		1

/* Word indices. */
#define W_MAGIC			0
#define W_SEQ			1
#define W_RUN			2
#define W_WHERE			3
#define W_CSUM			4	/* sector 0 only */
#define HDR_W_VERSION		1
#define HDR_W_RUN		2
#define HDR_W_BLOCKS		3
#define HDR_W_CSUM		4

#define NO_ALT			UINT64_MAX

#define DEFAULT_BLOCKS		4096
#define DEFAULT_DELAY_MS	20
#define DEFAULT_FLUSH_EVERY	64

enum reason {
	V_OK,
	V_TORN,
	V_STALE,
	V_FUTURE,
	V_CHECKSUM,
	V_IO,
};

static const char *const reason_name[] = {
	[V_OK] = "ok",
	[V_TORN] = "torn",
	[V_STALE] = "stale",
	[V_FUTURE] = "future",
	[V_CHECKSUM] = "checksum",
	[V_IO] = "io",
};

struct opts {
	unsigned int blocks;
	unsigned int delay_ms;
	unsigned int flush_every;
	unsigned int duration_s;
	uint64_t seed;
	bool seed_set;
};

struct state {
	const char *dev;
	int fd;
	unsigned int blocks;
	unsigned int flush_every;
	uint64_t size;		/* bytes on the device */
	uint64_t run;

	/* Expected sequence of every block; 0: never written. */
	uint64_t *expected;
	/*
	 * Sequence also accepted after a write that failed (the old content; 0 is
	 * a block never written), NO_ALT when there is none.
	 */
	uint64_t *alt;
	uint64_t *hdr;		/* header image */
	uint64_t *wbuf;		/* image written or expected */
	uint64_t *rbuf;		/* block read back */

	uint64_t seq;		/* last sequence issued */
	unsigned int next_block;
	unsigned int high_block;	/* highest block written so far */
	uint64_t rng;

	uint64_t writes, reads, verified, errors, flushes;
	uint64_t max_io_ns;
	uint64_t t0;
	bool running;
	bool quit;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("blkcheck: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t next_rand(uint64_t *rng)
{
	*rng += 0x9e3779b97f4a7c15ULL;
	return mix64(*rng);
}

/* Payload word @i of sector @sector of block @block written with @seq. */
static uint64_t payload_word(uint64_t run, uint64_t seq, unsigned int block,
			     unsigned int sector, unsigned int i)
{
	uint64_t key = mix64(run ^ mix64(seq ^ ((uint64_t)block << 32 | sector)));

	return mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
}

static uint64_t block_csum(const uint64_t *w, unsigned int skip)
{
	uint64_t h = 0x6a09e667f3bcc908ULL;
	unsigned int i;

	for (i = 0; i < BLK_WORDS; i++) {
		h ^= i == skip ? 0 : w[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

static unsigned int sector_payload_first(unsigned int sector)
{
	return sector == 0 ? W_CSUM + 1 : W_CSUM;
}

static void fill_sector(uint64_t *w, uint64_t run, uint64_t seq,
			unsigned int block, unsigned int sector)
{
	unsigned int i;

	w[W_MAGIC] = DATA_MAGIC;
	w[W_SEQ] = seq;
	w[W_RUN] = run;
	w[W_WHERE] = (uint64_t)sector << 32 | block;
	for (i = sector_payload_first(sector); i < SECTOR_WORDS; i++)
		w[i] = payload_word(run, seq, block, sector, i);
}

static void fill_block(uint64_t *w, uint64_t run, uint64_t seq, unsigned int block)
{
	unsigned int s;

	for (s = 0; s < SECTORS; s++)
		fill_sector(w + s * SECTOR_WORDS, run, seq, block, s);
	w[W_CSUM] = 0;
	w[W_CSUM] = block_csum(w, W_CSUM);
}

static void fill_header(uint64_t *w, uint64_t run, unsigned int blocks)
{
	memset(w, 0, BLK_SIZE);
	w[W_MAGIC] = HDR_MAGIC;
	w[HDR_W_VERSION] = HDR_VERSION;
	w[HDR_W_RUN] = run;
	w[HDR_W_BLOCKS] = blocks;
	w[HDR_W_CSUM] = block_csum(w, HDR_W_CSUM);
}

/* Whether sector @w is the image of its own stamp, as a write of block @block. */
static bool sector_consistent(const uint64_t *w, unsigned int block, unsigned int sector)
{
	unsigned int i;

	if (w[W_MAGIC] != DATA_MAGIC || w[W_WHERE] != ((uint64_t)sector << 32 | block))
		return false;
	for (i = sector_payload_first(sector); i < SECTOR_WORDS; i++)
		if (w[i] != payload_word(w[W_RUN], w[W_SEQ], block, sector, i))
			return false;
	return true;
}

static bool all_zero(const uint64_t *w)
{
	unsigned int i;

	for (i = 0; i < BLK_WORDS; i++)
		if (w[i])
			return false;
	return true;
}

/*
 * Classify block @block read into @got against the expected sequence @want
 * (and @alt, also accepted unless NO_ALT). @img is scratch for the image.
 * Sets *found to the sequence the block claims (0 when it claims none).
 */
static enum reason classify(const struct state *st, const uint64_t *got, uint64_t *img,
			    unsigned int block, uint64_t want, uint64_t alt, uint64_t *found)
{
	unsigned int s;
	bool mixed = false;

	*found = got[W_MAGIC] == DATA_MAGIC ? got[W_SEQ] : 0;
	fill_block(img, st->run, want, block);
	if (!memcmp(got, img, BLK_SIZE))
		return V_OK;
	if (alt != NO_ALT) {
		if (alt == 0 && all_zero(got))
			return V_OK;
		fill_block(img, st->run, alt, block);
		if (alt && !memcmp(got, img, BLK_SIZE))
			return V_OK;
	}
	if (all_zero(got))
		return V_STALE;

	for (s = 0; s < SECTORS; s++) {
		const uint64_t *w = got + s * SECTOR_WORDS;

		if (!sector_consistent(w, block, s))
			return V_CHECKSUM;
		if (w[W_SEQ] != got[W_SEQ] || w[W_RUN] != got[W_RUN])
			mixed = true;
	}
	if (mixed)
		return V_TORN;
	/* Every sector is one whole write: only the checksum word can be off. */
	if (got[W_CSUM] != block_csum(got, W_CSUM))
		return V_CHECKSUM;
	if (got[W_RUN] != st->run || *found < want)
		return V_STALE;
	if (*found > want)
		return V_FUTURE;
	return V_CHECKSUM;
}

static void report(struct state *st, unsigned int block, uint64_t want, uint64_t found,
		   enum reason why)
{
	st->errors++;
	say("ERROR block=%u expected_seq=%" PRIu64 " found_seq=%" PRIu64 " reason=%s",
	    block, want, found, reason_name[why]);
}

/* A failed read, write or flush; @err is the errno. */
static void report_io(struct state *st, unsigned int block, uint64_t want, const char *op,
		      int err)
{
	st->errors++;
	say("ERROR block=%u expected_seq=%" PRIu64 " found_seq=0 reason=io op=%s errno=%d",
	    block, want, op, err);
}

static void account_io(struct state *st, uint64_t start)
{
	uint64_t d = now_ns() - start;

	if (d > st->max_io_ns)
		st->max_io_ns = d;
}

static int read_block(struct state *st, unsigned int block, uint64_t *buf)
{
	uint64_t start = now_ns();
	ssize_t n = pread(st->fd, buf, BLK_SIZE, (off_t)block * BLK_SIZE);

	account_io(st, start);
	st->reads++;
	if (n == BLK_SIZE)
		return 0;
	return n < 0 ? errno : EIO;
}

static int write_block(struct state *st, unsigned int block, const uint64_t *buf)
{
	uint64_t start = now_ns();
	ssize_t n = pwrite(st->fd, buf, BLK_SIZE, (off_t)block * BLK_SIZE);

	account_io(st, start);
	if (n == BLK_SIZE) {
		st->writes++;
		return 0;
	}
	return n < 0 ? errno : EIO;
}

/* Read block @block back and check it; returns whether it is good. */
static bool verify_block(struct state *st, unsigned int block)
{
	uint64_t want = st->expected[block], found;
	enum reason why;
	int err;

	err = read_block(st, block, st->rbuf);
	if (err) {
		report_io(st, block, want, "read", err);
		return false;
	}
	if (block == 0) {
		if (memcmp(st->rbuf, st->hdr, BLK_SIZE)) {
			report(st, 0, 0, 0, V_CHECKSUM);
			return false;
		}
		st->verified++;
		return true;
	}
	why = classify(st, st->rbuf, st->wbuf, block, want, st->alt[block], &found);
	if (why != V_OK) {
		report(st, block, want, found, why);
		return false;
	}
	st->verified++;
	return true;
}

static void print_status(struct state *st)
{
	say("t=%" PRIu64 " writes=%" PRIu64 " reads=%" PRIu64 " verified=%" PRIu64
	    " errors=%" PRIu64 " seq=%" PRIu64, (now_ns() - st->t0) / 1000000000,
	    st->writes, st->reads, st->verified, st->errors, st->seq);
}

/* One step of the workload: a write, its read-back and one earlier block. */
static void step(struct state *st)
{
	unsigned int b = st->next_block, r;
	uint64_t seq = ++st->seq;
	int err;

	fill_block(st->wbuf, st->run, seq, b);
	err = write_block(st, b, st->wbuf);
	if (err) {
		/* The device may or may not have written it: accept either. */
		report_io(st, b, seq, "write", err);
		st->alt[b] = st->expected[b];
	} else {
		st->alt[b] = NO_ALT;
	}
	st->expected[b] = seq;
	if (b > st->high_block)
		st->high_block = b;
	st->next_block = b + 1 < st->blocks ? b + 1 : 1;

	if (st->flush_every && seq % st->flush_every == 0) {
		uint64_t start = now_ns();

		if (fsync(st->fd))
			report_io(st, 0, seq, "flush", errno);
		else
			st->flushes++;
		account_io(st, start);
	}

	verify_block(st, b);
	if (st->high_block > 1) {
		r = 1 + next_rand(&st->rng) % (st->high_block - 1);
		if (r >= b)
			r++;
		verify_block(st, r);
	}
}

static void cmd_verify(struct state *st)
{
	uint64_t start = now_ns(), next = start + 1000000000ULL;
	uint64_t errors = st->errors;
	unsigned int b, n = 0;

	st->running = false;
	for (b = 0; b < st->blocks; b++) {
		if (b && !st->expected[b])
			continue;
		verify_block(st, b);
		n++;
		if (now_ns() >= next) {
			print_status(st);
			next += 1000000000ULL;
		}
	}
	say("verify blocks=%u errors=%" PRIu64 " seq=%" PRIu64 " ms=%" PRIu64,
	    n, st->errors - errors, st->seq, (now_ns() - start) / 1000000);
}

static void cmd_stats(struct state *st)
{
	unsigned long long f[17] = { 0 };
	char path[64];
	struct stat sb;
	FILE *fp;
	int n;

	if (fstat(st->fd, &sb) || !S_ISBLK(sb.st_mode)) {
		say("diskstat unavailable reason=not-a-block-device");
	} else {
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat",
			 major(sb.st_rdev), minor(sb.st_rdev));
		fp = fopen(path, "r");
		n = 0;
		if (fp) {
			while (n < 17 && fscanf(fp, "%llu", &f[n]) == 1)
				n++;
			fclose(fp);
		}
		if (n < 5)
			say("diskstat unavailable reason=%s", fp ? "short" : strerror(errno));
		else
			say("diskstat reads=%llu writes=%llu flushes=%llu", f[0], f[4], f[15]);
	}
	say("iostat writes=%" PRIu64 " reads=%" PRIu64 " flushes=%" PRIu64 " max_io_ms=%" PRIu64,
	    st->writes, st->reads, st->flushes, st->max_io_ns / 1000000);
}

static void handle_line(struct state *st, char *line)
{
	char *end;

	/* Serial noise: carriage returns, blanks, stray control characters. */
	while (*line && (*line == ' ' || *line == '\t' || *line == '\r'))
		line++;
	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	if (!*line)
		return;

	if (!strcmp(line, "pause")) {
		st->running = false;
		say("paused seq=%" PRIu64 " writes=%" PRIu64, st->seq, st->writes);
	} else if (!strcmp(line, "resume")) {
		st->running = true;
		say("resumed seq=%" PRIu64, st->seq);
	} else if (!strcmp(line, "verify")) {
		cmd_verify(st);
	} else if (!strcmp(line, "stats")) {
		cmd_stats(st);
	} else if (!strcmp(line, "status")) {
		print_status(st);
	} else if (!strcmp(line, "quit")) {
		st->quit = true;
	} else {
		for (end = line; *end; end++)
			if (*end < 0x20 || *end > 0x7e || *end == '"')
				*end = '?';
		say("unknown command \"%.64s\" (pause resume verify stats status quit)", line);
	}
}

/* Line reader for stdin; returns false once stdin is closed. */
static bool read_commands(struct state *st)
{
	static char buf[256];
	static size_t len;
	static bool overlong;
	ssize_t n;
	char *nl;

	n = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	len += n;
	buf[len] = '\0';
	while ((nl = memchr(buf, '\n', len))) {
		*nl = '\0';
		if (!overlong)
			handle_line(st, buf);
		overlong = false;
		len -= nl + 1 - buf;
		memmove(buf, nl + 1, len);
		buf[len] = '\0';
	}
	if (len == sizeof(buf) - 1) {
		/* Garbage without a newline: drop it and the rest of its line. */
		say("unknown command (line too long)");
		overlong = true;
		len = 0;
	}
	return true;
}

static struct termios saved_tio;
static bool tio_saved;

static void restore_tty(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

/* On a console the tty would echo every command into the output: turn that off. */
static void quiet_tty(void)
{
	struct termios tio;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio))
		return;
	tio = saved_tio;
	tio.c_lflag &= ~(ECHO | ECHONL);
	tio.c_lflag |= ICANON;
	tio.c_iflag |= ICRNL;
	if (!tcsetattr(STDIN_FILENO, TCSANOW, &tio)) {
		tio_saved = true;
		atexit(restore_tty);
	}
}

static uint64_t pick_run_id(const struct opts *o)
{
	uint64_t r;

	if (o->seed_set)
		return mix64(o->seed);
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == sizeof(r))
		return r;
	/* Early boot without entropy: time and pid are unique enough. */
	return mix64(now_ns() ^ (uint64_t)getpid() << 48);
}

static void *alloc_block(void)
{
	void *p;

	if (posix_memalign(&p, BLK_SIZE, BLK_SIZE))
		return NULL;
	memset(p, 0, BLK_SIZE);
	return p;
}

static int open_dev(struct state *st, int flags)
{
	struct stat sb;

	st->fd = open(st->dev, flags | O_DIRECT);
	if (st->fd < 0) {
		say("cannot open %s: %s", st->dev, strerror(errno));
		return -1;
	}
	if (fstat(st->fd, &sb)) {
		say("cannot stat %s: %s", st->dev, strerror(errno));
		return -1;
	}
	if (!S_ISBLK(sb.st_mode)) {
		st->size = sb.st_size;
	} else if (ioctl(st->fd, BLKGETSIZE64, &st->size)) {
		say("cannot size %s: %s", st->dev, strerror(errno));
		return -1;
	}
	st->hdr = alloc_block();
	st->wbuf = alloc_block();
	st->rbuf = alloc_block();
	if (!st->hdr || !st->wbuf || !st->rbuf) {
		say("out of memory");
		return -1;
	}
	return 0;
}

static bool region_fits(const struct state *st)
{
	if (st->size >= (uint64_t)st->blocks * BLK_SIZE)
		return true;
	say("%s holds %" PRIu64 " bytes, the region needs %" PRIu64,
	    st->dev, st->size, (uint64_t)st->blocks * BLK_SIZE);
	return false;
}

static int do_run(struct state *st, const struct opts *o)
{
	const uint64_t second = 1000000000ULL;
	uint64_t delay = (uint64_t)o->delay_ms * 1000000ULL;
	uint64_t now, next_io, next_status, end;
	bool have_stdin = true;
	int err, timeout;
	struct pollfd pfd;

	if (open_dev(st, O_RDWR) || !region_fits(st))
		return 2;
	st->expected = calloc(st->blocks, sizeof(*st->expected));
	st->alt = calloc(st->blocks, sizeof(*st->alt));
	if (!st->expected || !st->alt) {
		say("out of memory");
		return 2;
	}
	for (unsigned int b = 0; b < st->blocks; b++)
		st->alt[b] = NO_ALT;
	st->run = pick_run_id(o);
	st->rng = st->run;
	st->next_block = 1;
	fill_header(st->hdr, st->run, st->blocks);
	err = write_block(st, 0, st->hdr);
	if (err) {
		say("cannot write the header to %s: %s", st->dev, strerror(err));
		return 2;
	}
	if (!verify_block(st, 0))
		return 2;

	quiet_tty();
	st->t0 = now_ns();
	st->running = true;
	say("ready dev=%s blocks=%u delay_ms=%u flush_every=%u run=%016" PRIx64,
	    st->dev, st->blocks, o->delay_ms, o->flush_every, st->run);

	next_io = st->t0;
	next_status = st->t0 + second;
	end = o->duration_s ? st->t0 + o->duration_s * second : 0;
	while (!st->quit) {
		now = now_ns();
		if (now >= next_status) {
			print_status(st);
			next_status += second;
			if (next_status <= now)
				next_status = now + second;
		}
		if (end && now >= end)
			break;

		if (st->running && now >= next_io) {
			step(st);
			next_io = now_ns() + delay;
			timeout = 0;
		} else {
			uint64_t until = next_status;

			if (st->running && next_io < until)
				until = next_io;
			if (end && end < until)
				until = end;
			timeout = until > now ? (int)((until - now + 999999) / 1000000) : 0;
		}

		if (have_stdin) {
			pfd.fd = STDIN_FILENO;
			pfd.events = POLLIN;
			if (poll(&pfd, 1, timeout) > 0) {
				if (pfd.revents & POLLNVAL)
					have_stdin = false;
				else if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
					have_stdin = read_commands(st);
			}
		} else if (timeout) {
			struct timespec ts = {
				.tv_sec = timeout / 1000,
				.tv_nsec = (long)(timeout % 1000) * 1000000,
			};

			nanosleep(&ts, NULL);
		}
	}

	if (end && !st->quit)
		cmd_verify(st);
	print_status(st);
	say("exit errors=%" PRIu64, st->errors);
	return st->errors ? 1 : 0;
}

/*
 * Offline check: the header gives run id and region (--blocks is not used); the
 * highest intact sequence
 * S says what every block must hold (the last write of the cycle position).
 */
static int do_check(struct state *st)
{
	uint64_t max_seq = 0, found;
	unsigned int b, n = 0, data;
	enum reason why;
	int err;

	if (open_dev(st, O_RDONLY))
		return 2;
	err = read_block(st, 0, st->hdr);
	if (err) {
		say("cannot read the header of %s: %s", st->dev, strerror(err));
		return 2;
	}
	if (st->hdr[W_MAGIC] != HDR_MAGIC || st->hdr[HDR_W_VERSION] != HDR_VERSION ||
	    st->hdr[HDR_W_CSUM] != block_csum(st->hdr, HDR_W_CSUM)) {
		say("check blocks=0 errors=1 reason=no-header");
		return 1;
	}
	st->run = st->hdr[HDR_W_RUN];
	if (st->hdr[HDR_W_BLOCKS] < 2 || st->hdr[HDR_W_BLOCKS] > 1U << 28) {
		say("check blocks=0 errors=1 reason=header-region blocks=%" PRIu64,
		    st->hdr[HDR_W_BLOCKS]);
		return 1;
	}
	st->blocks = st->hdr[HDR_W_BLOCKS];
	if (!region_fits(st))
		return 2;
	data = st->blocks - 1;

	/* The newest intact write of this run. */
	for (b = 1; b < st->blocks; b++) {
		if (read_block(st, b, st->rbuf))
			continue;
		if (st->rbuf[W_MAGIC] != DATA_MAGIC || st->rbuf[W_RUN] != st->run)
			continue;
		found = st->rbuf[W_SEQ];
		if (found <= max_seq || found == 0 || 1 + (found - 1) % data != b)
			continue;
		fill_block(st->wbuf, st->run, found, b);
		if (!memcmp(st->rbuf, st->wbuf, BLK_SIZE))
			max_seq = found;
	}

	for (b = 1; b < st->blocks; b++) {
		/* The last sequence at most max_seq that lands in block b. */
		uint64_t pos = b - 1, want = 0;

		if (max_seq > pos)
			want = max_seq - (max_seq - 1 - pos) % data;
		if (!want)
			continue;
		n++;
		err = read_block(st, b, st->rbuf);
		if (err) {
			report_io(st, b, want, "read", err);
			continue;
		}
		why = classify(st, st->rbuf, st->wbuf, b, want, NO_ALT, &found);
		if (why != V_OK)
			report(st, b, want, found, why);
		else
			st->verified++;
	}
	say("check blocks=%u errors=%" PRIu64 " seq=%" PRIu64 " run=%016" PRIx64,
	    n, st->errors, max_seq, st->run);
	return st->errors ? 1 : 0;
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: blkcheck run|check [OPTIONS] DEV\n"
		"  --blocks N        region of N 4 KiB blocks, block 0 the header (default %u)\n"
		"  --delay-ms MS     pause between writes (run; default %u)\n"
		"  --flush-every N   flush the device cache every N writes, 0: never (default %u)\n"
		"  --duration S      stop after S seconds with a full verify (run; default: never)\n"
		"  --seed N          fixed run id instead of a random one\n"
		"stdin commands (run): pause resume verify stats status quit\n",
		DEFAULT_BLOCKS, DEFAULT_DELAY_MS, DEFAULT_FLUSH_EVERY);
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return !errno && end != s && !*end && *s != '-' && *out <= max;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "blocks", required_argument, NULL, 'b' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "flush-every", required_argument, NULL, 'f' },
		{ "duration", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.blocks = DEFAULT_BLOCKS,
		.delay_ms = DEFAULT_DELAY_MS,
		.flush_every = DEFAULT_FLUSH_EVERY,
	};
	struct state st = { .fd = -1 };
	unsigned long long v;
	const char *mode;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	mode = argv[1];
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (!parse_uint(optarg, 1U << 28, &v) || v < 2)
				goto bad;
			o.blocks = v;
			break;
		case 'd':
			if (!parse_uint(optarg, 3600000, &v))
				goto bad;
			o.delay_ms = v;
			break;
		case 'f':
			if (!parse_uint(optarg, UINT32_MAX, &v))
				goto bad;
			o.flush_every = v;
			break;
		case 't':
			if (!parse_uint(optarg, 100000000, &v))
				goto bad;
			o.duration_s = v;
			break;
		case 's':
			if (!parse_uint(optarg, UINT64_MAX, &v))
				goto bad;
			o.seed = v;
			o.seed_set = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	st.dev = argv[optind];
	st.blocks = o.blocks;
	st.flush_every = 0;

	if (!strcmp(mode, "run")) {
		st.flush_every = o.flush_every;
		return do_run(&st, &o);
	}
	if (!strcmp(mode, "check"))
		return do_check(&st);
	usage(stderr);
	return 2;

bad:
	fprintf(stderr, "blkcheck: bad value \"%s\" for an option\n", optarg);
	return 2;
}
