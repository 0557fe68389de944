// SPDX-License-Identifier: GPL-2.0

//! Device dirty-page logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`).
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/iova_bitmap.h`](srctree/include/linux/iova_bitmap.h)

use crate::{
    bindings,
    ffi::c_uint, //
};
use core::{
    marker::PhantomData,
    sync::atomic::{
        AtomicU64,
        Ordering, //
    },
};

/// One IOVA range to track, inclusive of `last` (as the VFIO core hands them over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First byte of the range.
    pub start: u64,
    /// Last byte of the range.
    pub last: u64,
}

/// The ranges of a `DMA_LOGGING_START` request, already checked by the VFIO core (page-size
/// aligned, non-overlapping, at most `LOG_MAX_RANGES` after combining), in ascending order.
///
/// # Invariants
///
/// `root` points to a valid interval tree with `count` nodes that is neither modified nor freed
/// for `'a`.
pub struct IovaRanges<'a> {
    root: *mut bindings::rb_root_cached,
    count: u32,
    _p: PhantomData<&'a bindings::rb_root_cached>,
}

impl IovaRanges<'_> {
    /// # Safety
    ///
    /// `root` must point to a valid interval tree with `count` nodes that outlives the returned
    /// object and is not modified meanwhile.
    pub(crate) unsafe fn from_raw(root: *mut bindings::rb_root_cached, count: u32) -> Self {
        // INVARIANT: Per the safety requirements.
        Self {
            root,
            count,
            _p: PhantomData,
        }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there is no range at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The ranges in ascending order.
    pub fn iter(&self) -> IovaRangeIter<'_> {
        // SAFETY: By the type invariants `root` is a valid interval tree.
        let first = unsafe { bindings::interval_tree_iter_first(self.root, 0, usize::MAX) };
        IovaRangeIter {
            node: first,
            _p: PhantomData,
        }
    }
}

/// Iterator over [`IovaRanges`].
pub struct IovaRangeIter<'a> {
    node: *mut bindings::interval_tree_node,
    _p: PhantomData<&'a bindings::rb_root_cached>,
}

impl Iterator for IovaRangeIter<'_> {
    type Item = IovaRange;

    fn next(&mut self) -> Option<IovaRange> {
        if self.node.is_null() {
            return None;
        }
        // SAFETY: `node` is a node of the tree borrowed for `'a`, which is not modified.
        let (start, last) = unsafe { ((*self.node).start, (*self.node).last) };
        // SAFETY: As above; the iteration bounds cover every node.
        self.node = unsafe { bindings::interval_tree_iter_next(self.node, 0, usize::MAX) };
        Some(IovaRange {
            start: start as u64,
            last: last as u64,
        })
    }
}

/// The user's dirty bitmap of a `DMA_LOGGING_REPORT` (`struct iova_bitmap`).
///
/// Marking is the only operation: the VFIO core owns the pinning of the user pages and copies
/// the bitmap out after the driver returns.
///
/// Words of pages at the user's page size go straight into the words of the user's bitmap that
/// the core lends (`iova_bitmap_words()`), without a call into the core per word.
///
/// # Invariants
///
/// - `ptr` points to a valid `struct iova_bitmap` exclusively lent to the driver for `'a`.
/// - Unless `lent_end <= lent_iova`, `lent` points to the words the core lent for the pages
///   `[lent_iova, lent_end)`, `1 << word_shift` bytes of IOVA each, and no call into the core
///   was made since.
pub struct IovaBitmap<'a> {
    ptr: *mut bindings::iova_bitmap,
    lent: *mut u64,
    lent_iova: u64,
    lent_end: u64,
    /// Log2 of the IOVA one word of the user's bitmap stands for; 0 if too large to lend.
    word_shift: u32,
    /// Words below this IOVA are not asked to be lent: the core declined one a little below.
    lend_from: u64,
    _p: PhantomData<&'a mut bindings::iova_bitmap>,
}

/// Words of the user's bitmap to go on without asking for a loan after the core declined one:
/// one page of the user's bitmap.
const WORDS_AFTER_DECLINE: u32 = 512;

impl IovaBitmap<'_> {
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct iova_bitmap` that nothing else uses while the returned
    /// object lives.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::iova_bitmap) -> Self {
        // SAFETY: Per the safety requirements, `ptr` is a valid bitmap.
        let word_shift = unsafe { bindings::iova_bitmap_page_shift(ptr) } + 6;
        // INVARIANT: Per the safety requirements; nothing is lent yet.
        Self {
            ptr,
            lent: core::ptr::null_mut(),
            lent_iova: 0,
            lent_end: 0,
            word_shift: if word_shift < 64 { word_shift } else { 0 },
            lend_from: 0,
            _p: PhantomData,
        }
    }

    /// Forgets the lent words, before a call into the core that may move its pinned window.
    #[inline]
    fn forget_lent(&mut self) {
        // INVARIANT: An empty loan.
        self.lent_end = 0;
        self.lent_iova = 0;
    }

    /// Marks `[iova, iova + length)` dirty. Parts outside the reported range are ignored by the
    /// core, so marking generously is safe.
    pub fn set(&mut self, iova: u64, length: u64) {
        if length == 0 {
            return;
        }
        self.forget_lent();
        // SAFETY: By the type invariants `ptr` is a valid bitmap lent to us exclusively.
        unsafe { bindings::iova_bitmap_set(self.ptr, iova as usize, length as usize) };
    }

    /// Log2 of the page size each bit of the bitmap stands for, which the caller of the report
    /// chose (it may differ from the page size logging started with).
    pub fn page_shift(&self) -> u32 {
        // SAFETY: By the type invariants `ptr` is a valid bitmap lent to us exclusively.
        unsafe { bindings::iova_bitmap_page_shift(self.ptr) }
    }

    /// Marks dirty the pages `iova + i * page size` for every set bit `i` of `pages`; `iova` is
    /// aligned to the bitmap's page size. A word inside the words the core lent costs no call
    /// into the core, others one per 64 pages, where [`Self::set`] costs one per run. Pages
    /// outside the reported range are ignored.
    #[inline]
    pub fn set_pages(&mut self, iova: u64, pages: u64) {
        if pages == 0 {
            return;
        }
        let offset = iova.wrapping_sub(self.lent_iova);
        if iova >= self.lent_iova
            && iova < self.lent_end
            && offset & ((1u64 << self.word_shift) - 1) == 0
        {
            self.or_lent((offset >> self.word_shift) as usize, pages);
            return;
        }
        self.set_pages_unlent(iova, pages);
    }

    /// ORs `pages` into lent word `index`, which must be below the number of words lent.
    #[inline]
    fn or_lent(&mut self, index: usize, pages: u64) {
        // SAFETY: By the type invariants and the caller's promise, `lent + index` is a word of
        // the user's bitmap the core lent us and still pins, aligned (the core lends only
        // whole words of its pages). The user may write its bitmap meanwhile, so the word is
        // reached atomically; the load and store compile to plain moves, as the core's own OR.
        let word = unsafe { AtomicU64::from_ptr(self.lent.add(index)) };
        word.store(word.load(Ordering::Relaxed) | pages, Ordering::Relaxed);
    }

    /// [`Self::set_pages`] outside the lent words: borrows the words from `iova` on if the core
    /// lends them, else lets the core record the word (and move its window).
    #[inline(never)]
    fn set_pages_unlent(&mut self, iova: u64, pages: u64) {
        self.forget_lent();
        if self.word_shift != 0 && iova >= self.lend_from {
            let mut count: c_uint = 0;
            // SAFETY: By the type invariants `ptr` is a valid bitmap lent to us exclusively;
            // `count` is a valid place for the number of words.
            let words = unsafe { bindings::iova_bitmap_words(self.ptr, iova as usize, &mut count) };
            let count = u64::from(count);
            let end = (count > 0 && count < 1u64 << (64 - self.word_shift))
                .then(|| iova.checked_add(count << self.word_shift))
                .flatten();
            if let (false, Some(end)) = (words.is_null(), end) {
                // INVARIANT: `iova_bitmap_words()` lent `count` words for the pages from `iova`,
                // until our next call into the core.
                self.lent = words;
                self.lent_iova = iova;
                self.lent_end = end;
                self.or_lent(0, pages);
                return;
            }
            // Declined: a user's bitmap that is not word-aligned declines every word, a partial
            // word at the range's end or a failed pin only this one. Go on without asking for a
            // while.
            self.lend_from = iova.saturating_add(u64::from(WORDS_AFTER_DECLINE) << self.word_shift);
        }
        // SAFETY: By the type invariants `ptr` is a valid bitmap lent to us exclusively.
        unsafe { bindings::iova_bitmap_set_pages(self.ptr, iova as usize, pages) };
    }

    /// Fails with the first error met while marking, typically `EFAULT` when the user's bitmap
    /// could not be pinned: the marked ranges did not all reach the user, who gets the error.
    pub fn error(&self) -> crate::error::Result {
        // SAFETY: By the type invariants `ptr` is a valid bitmap lent to us exclusively.
        crate::error::to_result(unsafe { bindings::iova_bitmap_error(self.ptr) })
    }
}
