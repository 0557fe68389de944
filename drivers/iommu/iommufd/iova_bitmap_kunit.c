// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of iova_bitmap_set_pages() and iova_bitmap_words(): in a user
 * bitmap the test maps, a word of pages given to the first, or ORed into the
 * words the second lends, must mark exactly the pages that one
 * iova_bitmap_set() per page marks, wherever the word lands (bit offsets, the
 * pages of the user's bitmap, the end of the pinned window, the edges of the
 * bitmap's range). The lent words must be the right ones and no more. And of
 * what counts as an error: a user bitmap that cannot be pinned, never a range
 * that runs past the bitmap's end.
 */
#include <kunit/test.h>
#include <linux/iova_bitmap.h>
#include <linux/mman.h>
#include <linux/prandom.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#define PGSHIFT		12
#define PGSZ		(1UL << PGSHIFT)
/* Bits in one page of the user's bitmap. */
#define BITS_PER_UPAGE	(PAGE_SIZE * BITS_PER_BYTE)
/* iova_bitmap pins at most this many pages of the user's bitmap at once. */
#define PINNED_PAGES	(PAGE_SIZE / sizeof(struct page *))
/* Enough user bitmap for a range that needs two pinned windows. */
#define UBUF_PAGES	(PINNED_PAGES + 4)
#define RANGE_IOVA	(1UL << 32)

struct mark {
	unsigned long iova;
	u64 pages;
};

KUNIT_DEFINE_ACTION_WRAPPER(kvfree_action, kvfree, const void *);

static u64 *test_kvzalloc(struct kunit *test, size_t size)
{
	u64 *p = kvzalloc(size, GFP_KERNEL);

	if (p && kunit_add_action_or_reset(test, kvfree_action, p))
		return NULL;
	return p;
}

struct fixture {
	u64 __user *ubuf;
	u64 *expect;
	u64 *got;
};

static int iova_bitmap_test_init(struct kunit *test)
{
	struct fixture *f = kunit_kzalloc(test, sizeof(*f), GFP_KERNEL);
	unsigned long addr;

	KUNIT_ASSERT_NOT_NULL(test, f);
	addr = kunit_vm_mmap(test, NULL, 0, UBUF_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
			     MAP_ANONYMOUS | MAP_PRIVATE, 0);
	KUNIT_ASSERT_NE_MSG(test, addr, 0, "cannot map a user bitmap");
	f->ubuf = (u64 __user *)addr;
	f->expect = test_kvzalloc(test, UBUF_PAGES * PAGE_SIZE);
	f->got = test_kvzalloc(test, UBUF_PAGES * PAGE_SIZE);
	KUNIT_ASSERT_NOT_NULL(test, f->expect);
	KUNIT_ASSERT_NOT_NULL(test, f->got);
	test->priv = f;
	return 0;
}

/* Bytes of user bitmap a range covers, and one page more to catch overruns. */
static size_t span_bytes(size_t skip, size_t length)
{
	size_t bytes = DIV_ROUND_UP(length >> PGSHIFT, 64) * sizeof(u64) + PAGE_SIZE;

	return min(bytes, UBUF_PAGES * PAGE_SIZE - skip);
}

enum marking {
	PER_PAGE,	/* iova_bitmap_set() per page */
	PER_WORD,	/* iova_bitmap_set_pages() per word */
	LENT,		/* an OR into iova_bitmap_words(), else iova_bitmap_set_pages() */
};

/*
 * Applies @marks to a zeroed user bitmap for [@iova, @iova + @length) that
 * starts @skip bytes into the mapping, marking as @how says, and copies it to
 * @out.
 */
static void apply(struct kunit *test, size_t skip, unsigned long iova, size_t length,
		  const struct mark *marks, int n, enum marking how, u64 *out)
{
	struct fixture *f = test->priv;
	u64 __user *data = (u64 __user *)((u8 __user *)f->ubuf + skip);
	size_t bytes = span_bytes(skip, length);
	struct iova_bitmap *bitmap;
	int i, bit;

	KUNIT_ASSERT_EQ(test, clear_user(data, bytes), 0);
	bitmap = iova_bitmap_alloc(iova, length, PGSZ, data);
	KUNIT_ASSERT_FALSE(test, IS_ERR(bitmap));
	for (i = 0; i < n; i++) {
		unsigned int nwords = 0;
		u64 *words;

		if (how == LENT) {
			words = iova_bitmap_words(bitmap, marks[i].iova, &nwords);
			if (words) {
				KUNIT_EXPECT_GT(test, nwords, 0U);
				words[0] |= marks[i].pages;
				continue;
			}
		}
		if (how != PER_PAGE) {
			iova_bitmap_set_pages(bitmap, marks[i].iova, marks[i].pages);
			continue;
		}
		for (bit = 0; bit < 64; bit++) {
			unsigned long page = marks[i].iova + ((unsigned long)bit << PGSHIFT);

			if (!(marks[i].pages & BIT_ULL(bit)))
				continue;
			/* iova_bitmap_set() leaves pages outside the range to its caller. */
			if (page >= iova && page - iova < length)
				iova_bitmap_set(bitmap, page, PGSZ);
		}
	}
	KUNIT_EXPECT_EQ(test, iova_bitmap_error(bitmap), 0);
	iova_bitmap_free(bitmap);
	KUNIT_ASSERT_EQ(test, copy_from_user(out, data, bytes), 0);
}

static void expect_same(struct kunit *test, size_t skip, unsigned long iova, size_t length,
			const struct mark *marks, int n)
{
	static const enum marking by_word[] = { PER_WORD, LENT };
	struct fixture *f = test->priv;
	size_t bytes = span_bytes(skip, length);
	u64 set = 0;
	size_t i, k;

	apply(test, skip, iova, length, marks, n, PER_PAGE, f->expect);
	for (i = 0; i < bytes / sizeof(u64); i++)
		set += hweight64(f->expect[i]);
	/* A comparison of two empty bitmaps would prove nothing. */
	KUNIT_EXPECT_GT(test, set, 0);
	for (k = 0; k < ARRAY_SIZE(by_word); k++) {
		apply(test, skip, iova, length, marks, n, by_word[k], f->got);
		for (i = 0; i < bytes / sizeof(u64); i++) {
			if (f->expect[i] != f->got[i]) {
				KUNIT_FAIL(test, "word %zu: per page %#llx, %s %#llx (skip %zu)",
					   i, f->expect[i],
					   by_word[k] == LENT ? "lent" : "per word", f->got[i], skip);
				return;
			}
		}
	}
}

/* Words at every bit offset from the start of the user's bitmap. */
static void iova_bitmap_test_bit_offsets(struct kunit *test)
{
	static const u64 patterns[] = { 1, ~0ULL, 0x5555555555555555ULL, BIT_ULL(63) | 1,
					0x00ff00000000f00fULL };
	struct mark m;
	int p, shift;

	for (p = 0; p < ARRAY_SIZE(patterns); p++) {
		for (shift = 0; shift < 130; shift++) {
			m.iova = RANGE_IOVA + ((unsigned long)shift << PGSHIFT);
			m.pages = patterns[p];
			expect_same(test, 0, RANGE_IOVA, 1UL << 30, &m, 1);
		}
	}
}

/* A user bitmap that does not start on a page: words straddle its pages. */
static void iova_bitmap_test_unaligned_user_bitmap(struct kunit *test)
{
	static const size_t skips[] = { 8, 64, PAGE_SIZE - 8 };
	struct mark m[3];
	int s;

	for (s = 0; s < ARRAY_SIZE(skips); s++) {
		unsigned long edge = (BITS_PER_UPAGE - skips[s] * BITS_PER_BYTE) << PGSHIFT;

		m[0] = (struct mark){ RANGE_IOVA + edge - 3 * PGSZ, ~0ULL };
		m[1] = (struct mark){ RANGE_IOVA + edge - 40 * PGSZ, 0x8000000100000001ULL };
		m[2] = (struct mark){ RANGE_IOVA + 5 * PGSZ, 0xf0f0f0f0f0f0f0f0ULL };
		expect_same(test, skips[s], RANGE_IOVA, 1UL << 32, m, ARRAY_SIZE(m));
	}
}

/* Pages before and after the bitmap's range are dropped, the others kept. */
static void iova_bitmap_test_range_edges(struct kunit *test)
{
	size_t length = 1000 * PGSZ;
	struct mark m[] = {
		{ RANGE_IOVA - 10 * PGSZ, ~0ULL },
		{ RANGE_IOVA + length - 5 * PGSZ, ~0ULL },
		{ RANGE_IOVA - 63 * PGSZ, BIT_ULL(63) | BIT_ULL(62) },
		{ RANGE_IOVA + length, ~0ULL },
	};

	expect_same(test, 0, RANGE_IOVA, length, m, ARRAY_SIZE(m));
}

/* Marks far apart make the bitmap pin another window of the user's pages. */
static void iova_bitmap_test_window_advance(struct kunit *test)
{
	unsigned long window = (PINNED_PAGES * BITS_PER_UPAGE) << PGSHIFT;
	size_t length = window + 2 * (BITS_PER_UPAGE << PGSHIFT);
	struct mark m[] = {
		{ RANGE_IOVA + 7 * PGSZ, 0xabcdef0123456789ULL },
		/* Straddles the end of the first pinned window. */
		{ RANGE_IOVA + window - 20 * PGSZ, ~0ULL },
		{ RANGE_IOVA + window + 100 * PGSZ, 0x1111ULL },
		/* Back into the first window. */
		{ RANGE_IOVA + 1000 * PGSZ, 0x8000000000000001ULL },
	};

	expect_same(test, 0, RANGE_IOVA, length, m, ARRAY_SIZE(m));
}

/* Random words at random places, a fixed seed so that a failure repeats. */
static void iova_bitmap_test_random(struct kunit *test)
{
	struct rnd_state rnd;
	struct mark m[64];
	int round, i;

	prandom_seed_state(&rnd, 0x10ba);
	for (round = 0; round < 8; round++) {
		size_t length = (1 + prandom_u32_state(&rnd) % (4 * BITS_PER_UPAGE)) * PGSZ;

		for (i = 0; i < ARRAY_SIZE(m); i++) {
			long page = (long)(prandom_u32_state(&rnd) % (length / PGSZ + 128)) - 64;

			m[i].iova = RANGE_IOVA + page * (long)PGSZ;
			m[i].pages = ((u64)prandom_u32_state(&rnd) << 32) | prandom_u32_state(&rnd);
		}
		expect_same(test, 8 * (round % 3), RANGE_IOVA, length, m, ARRAY_SIZE(m));
	}
}

/*
 * A range that runs past the end of the bitmap's range (a dirty IOPTE larger
 * than what was asked for) sets the bits inside it and is no error, even
 * when its tail reaches into a page of user bitmap past the end.
 */
static void iova_bitmap_test_tail_past_range(struct kunit *test)
{
	struct fixture *f = test->priv;
	size_t length = BITS_PER_UPAGE * PGSZ;
	size_t words = BITS_PER_UPAGE / 64;
	struct iova_bitmap *bitmap;
	size_t i;

	KUNIT_ASSERT_EQ(test, clear_user(f->ubuf, 2 * PAGE_SIZE), 0);
	bitmap = iova_bitmap_alloc(RANGE_IOVA, length, PGSZ, f->ubuf);
	KUNIT_ASSERT_FALSE(test, IS_ERR(bitmap));
	iova_bitmap_set(bitmap, RANGE_IOVA + length - 4 * PGSZ, 64 * PGSZ);
	iova_bitmap_set(bitmap, RANGE_IOVA + length, PGSZ);
	iova_bitmap_set(bitmap, RANGE_IOVA + 3 * PGSZ, PGSZ);
	KUNIT_EXPECT_EQ(test, iova_bitmap_error(bitmap), 0);
	iova_bitmap_free(bitmap);
	KUNIT_ASSERT_EQ(test, copy_from_user(f->got, f->ubuf, PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, f->got[0], BIT_ULL(3));
	for (i = 1; i < words - 1; i++)
		KUNIT_EXPECT_EQ(test, f->got[i], 0);
	KUNIT_EXPECT_EQ(test, f->got[words - 1], GENMASK_ULL(63, 60));
}

/*
 * The words iova_bitmap_words() lends are the user's bitmap words from the
 * one asked for to the end of its page of the user's bitmap or of the range,
 * whichever comes first; it lends none for a word that is not whole in the
 * range or does not start a word of the user's bitmap.
 */
struct lent_probe {
	struct kunit *test;
	size_t skip, whole, first_n;
};

/* Two pages of user bitmap and then some, the last word partial. */
#define LENT_WHOLE	(2 * (BITS_PER_UPAGE / 64) + 10)
#define LENT_LENGTH	((LENT_WHOLE * 64 + 5) * PGSZ)

static int lent_probe_window(struct iova_bitmap *bitmap, unsigned long iova, size_t length,
			     void *opaque)
{
	struct lent_probe *p = opaque;
	struct kunit *test = p->test;
	size_t per_page = BITS_PER_UPAGE / 64, lead = p->skip / sizeof(u64);
	size_t probes[] = { 0, per_page - lead - 1, per_page - lead, LENT_WHOLE - 1 };
	unsigned int nwords;
	size_t i, w;
	u64 *words;

	/* The whole range is one pinned window. */
	KUNIT_EXPECT_EQ(test, iova, RANGE_IOVA);
	KUNIT_EXPECT_EQ(test, length, LENT_LENGTH);
	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		size_t expect;

		w = probes[i];
		expect = min(LENT_WHOLE - w, per_page - (lead + w) % per_page);
		nwords = 0;
		words = iova_bitmap_words(bitmap, RANGE_IOVA + w * 64 * PGSZ, &nwords);
		KUNIT_EXPECT_NOT_NULL_MSG(test, words, "word %zu (skip %zu)", w, p->skip);
		if (!words)
			return -EINVAL;
		KUNIT_EXPECT_EQ_MSG(test, (size_t)nwords, expect, "word %zu (skip %zu)", w,
				    p->skip);
		if (!w) {
			/* Fill every lent word: no more, no fewer, and the right ones. */
			memset(words, 0xff, nwords * sizeof(u64));
			p->first_n = nwords;
		}
	}
	KUNIT_EXPECT_NULL(test, iova_bitmap_words(bitmap, RANGE_IOVA + LENT_WHOLE * 64 * PGSZ,
						  &nwords));
	KUNIT_EXPECT_NULL(test, iova_bitmap_words(bitmap, RANGE_IOVA + 64 * PGSZ + PGSZ,
						  &nwords));
	KUNIT_EXPECT_NULL(test, iova_bitmap_words(bitmap, RANGE_IOVA - 64 * PGSZ, &nwords));
	KUNIT_EXPECT_NULL(test, iova_bitmap_words(bitmap, RANGE_IOVA + LENT_LENGTH, &nwords));
	return 0;
}

static void lent_extent(struct kunit *test, size_t skip)
{
	struct fixture *f = test->priv;
	u64 __user *data = (u64 __user *)((u8 __user *)f->ubuf + skip);
	struct lent_probe p = { .test = test, .skip = skip };
	struct iova_bitmap *bitmap;
	size_t w;

	KUNIT_ASSERT_EQ(test, clear_user(data, span_bytes(skip, LENT_LENGTH)), 0);
	bitmap = iova_bitmap_alloc(RANGE_IOVA, LENT_LENGTH, PGSZ, data);
	KUNIT_ASSERT_FALSE(test, IS_ERR(bitmap));
	KUNIT_EXPECT_EQ(test, iova_bitmap_for_each(bitmap, &p, lent_probe_window), 0);
	iova_bitmap_free(bitmap);

	KUNIT_ASSERT_EQ(test, copy_from_user(f->got, data, (LENT_WHOLE + 1) * sizeof(u64)), 0);
	KUNIT_EXPECT_EQ(test, p.first_n, BITS_PER_UPAGE / 64 - skip / sizeof(u64));
	for (w = 0; w <= LENT_WHOLE; w++) {
		u64 expect = w < p.first_n ? ~0ULL : 0;

		if (f->got[w] != expect) {
			KUNIT_FAIL(test, "word %zu: %#llx, expected %#llx (skip %zu)", w,
				   f->got[w], expect, skip);
			return;
		}
	}
}

static void iova_bitmap_test_lent_words(struct kunit *test)
{
	lent_extent(test, 0);
	lent_extent(test, 8);
}

static int set_first_page(struct iova_bitmap *bitmap, unsigned long iova, size_t length,
			  void *opaque)
{
	iova_bitmap_set(bitmap, iova, PGSZ);
	return 0;
}

/* A user bitmap that cannot be pinned fails the report: no silent loss. */
static void iova_bitmap_test_unpinnable(struct kunit *test)
{
	struct iova_bitmap *bitmap;
	unsigned long addr;

	addr = kunit_vm_mmap(test, NULL, 0, PAGE_SIZE, PROT_READ, MAP_ANONYMOUS | MAP_PRIVATE, 0);
	KUNIT_ASSERT_NE(test, addr, 0);
	bitmap = iova_bitmap_alloc(RANGE_IOVA, 64 * PGSZ, PGSZ, (u64 __user *)addr);
	KUNIT_ASSERT_FALSE(test, IS_ERR(bitmap));
	KUNIT_EXPECT_EQ(test, iova_bitmap_for_each(bitmap, NULL, set_first_page), -EFAULT);
	KUNIT_EXPECT_EQ(test, iova_bitmap_error(bitmap), -EFAULT);
	iova_bitmap_free(bitmap);
}

static struct kunit_case iova_bitmap_test_cases[] = {
	KUNIT_CASE(iova_bitmap_test_bit_offsets),
	KUNIT_CASE(iova_bitmap_test_unaligned_user_bitmap),
	KUNIT_CASE(iova_bitmap_test_range_edges),
	KUNIT_CASE(iova_bitmap_test_window_advance),
	KUNIT_CASE(iova_bitmap_test_random),
	KUNIT_CASE(iova_bitmap_test_tail_past_range),
	KUNIT_CASE(iova_bitmap_test_unpinnable),
	KUNIT_CASE(iova_bitmap_test_lent_words),
	{}
};

static struct kunit_suite iova_bitmap_test_suite = {
	.name = "iova_bitmap",
	.init = iova_bitmap_test_init,
	.test_cases = iova_bitmap_test_cases,
};
kunit_test_suite(iova_bitmap_test_suite);

MODULE_DESCRIPTION("KUnit tests of iova_bitmap recording");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS("IOMMUFD");
