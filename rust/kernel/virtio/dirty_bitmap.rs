// SPDX-License-Identifier: GPL-2.0

//! The dirty bitmap a memory dirty-pages tracker writes by DMA.

use crate::{
    device,
    dma::{
        attrs::DMA_ATTR_NO_WARN,
        Coherent,
        DmaAddress, //
    },
    prelude::*,
};
use core::sync::atomic::AtomicU64;

/// A zeroed, DMA-coherent bitmap the device sets bits in while the driver reads and clears
/// them.
///
/// # Invariants
///
/// `mem` holds `mem.len()` naturally aligned 64-bit words that only atomic operations (the
/// driver's, and the device's read-modify-write DMA) access while `self` lives.
pub struct DeviceDirtyBitmap {
    mem: Coherent<[u64]>,
}

impl DeviceDirtyBitmap {
    /// Allocates a zeroed bitmap of `words` 64-bit words for `dev`. Fails quietly with `ENOMEM`
    /// when no contiguous memory that large is available, so the caller can try a smaller one.
    pub fn new(dev: &device::Device<device::Bound>, words: usize) -> Result<Self> {
        if words == 0 {
            return Err(EINVAL);
        }
        // INVARIANT: The allocation is only accessed through `words()`.
        Ok(Self {
            mem: Coherent::zeroed_slice_with_attrs(dev, words, GFP_KERNEL, DMA_ATTR_NO_WARN)?,
        })
    }

    /// Bus address of the bitmap, for the device's `bitmap_addr`.
    pub fn dma_address(&self) -> DmaAddress {
        self.mem.dma_address()
    }

    /// Length of the bitmap in bytes, for the device's `bitmap_length`.
    pub fn len_bytes(&self) -> usize {
        self.mem.len() * size_of::<u64>()
    }

    /// The bitmap words, shared with the device.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: By the type invariants the allocation holds `len()` aligned 64-bit words that
        // live as long as `self` and are only accessed atomically; `AtomicU64` has the size and
        // alignment of `u64`.
        unsafe {
            core::slice::from_raw_parts(self.mem.as_ptr().cast::<AtomicU64>(), self.mem.len())
        }
    }
}
