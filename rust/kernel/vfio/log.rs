// SPDX-License-Identifier: GPL-2.0

//! Device dirty-page logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`).
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/iova_bitmap.h`](srctree/include/linux/iova_bitmap.h)

use crate::bindings;
use core::marker::PhantomData;

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
/// # Invariants
///
/// `ptr` points to a valid `struct iova_bitmap` exclusively lent to the driver for `'a`.
pub struct IovaBitmap<'a> {
    ptr: *mut bindings::iova_bitmap,
    _p: PhantomData<&'a mut bindings::iova_bitmap>,
}

impl IovaBitmap<'_> {
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct iova_bitmap` that nothing else uses while the returned
    /// object lives.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::iova_bitmap) -> Self {
        // INVARIANT: Per the safety requirements.
        Self {
            ptr,
            _p: PhantomData,
        }
    }

    /// Marks `[iova, iova + length)` dirty. Parts outside the reported range are ignored by the
    /// core, so marking generously is safe.
    pub fn set(&mut self, iova: u64, length: u64) {
        if length == 0 {
            return;
        }
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
    /// aligned to the bitmap's page size. One call per 64 pages, where [`Self::set`] costs one
    /// per run. Pages outside the reported range are ignored.
    pub fn set_pages(&mut self, iova: u64, pages: u64) {
        if pages == 0 {
            return;
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
