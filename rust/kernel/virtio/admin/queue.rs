// SPDX-License-Identifier: GPL-2.0

//! A split virtqueue in coherent DMA memory that carries one descriptor chain at a time, which
//! is all an admin queue whose commands are serialized needs.
//!
//! One allocation holds the rings and both command buffers:
//!
//! | offset  | content                                            |
//! |---------|----------------------------------------------------|
//! | 0       | descriptor table (`16 * size` bytes)               |
//! | 1024    | available ring                                     |
//! | 2048    | used ring                                          |
//! | 4096    | device-readable buffer (command header and data)   |
//! | 8192    | device-writable buffer (status and result)         |

use crate::{
    device,
    dma::{
        Coherent,
        DmaAddress, //
    },
    prelude::*,
    sync::barrier::{
        dma_mb,
        Read,
        Write, //
    },
};

/// Most entries the driver gives the queue: a chain needs two.
pub(crate) const MAX_SIZE: u16 = 8;
/// Bytes of the device-readable buffer.
pub(crate) const READABLE_LEN: usize = 4096;
/// Bytes of the device-writable buffer: room for 4094 write records per read command.
pub(crate) const WRITABLE_LEN: usize = 32768;

const DESC_OFF: usize = 0;
const AVAIL_OFF: usize = 1024;
const USED_OFF: usize = 2048;
const READABLE_OFF: usize = 4096;
const WRITABLE_OFF: usize = READABLE_OFF + READABLE_LEN;
const TOTAL_LEN: usize = WRITABLE_OFF + WRITABLE_LEN;

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
/// The driver polls: no used-buffer notification wanted.
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

// The rings of the largest queue fit their slots.
const _: () = {
    assert!(DESC_OFF + 16 * MAX_SIZE as usize <= AVAIL_OFF);
    assert!(AVAIL_OFF + 6 + 2 * MAX_SIZE as usize <= USED_OFF);
    assert!(USED_OFF + 6 + 8 * MAX_SIZE as usize <= READABLE_OFF);
};

/// A completed chain: its head and the bytes the device wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Used {
    pub(crate) id: u32,
    pub(crate) len: u32,
}

/// The queue memory and the driver's ring indexes.
///
/// # Invariants
///
/// `mem` is `TOTAL_LEN` bytes of coherent memory, accessed by the CPU only with volatile,
/// naturally aligned accesses inside it. `size` is a power of two no larger than `MAX_SIZE`.
pub(crate) struct SplitQueue {
    mem: Coherent<[u8]>,
    size: u16,
    avail_idx: u16,
    last_used: u16,
}

impl SplitQueue {
    /// Allocates the queue memory for `dev`.
    pub(crate) fn new(dev: &device::Device<device::Bound>) -> Result<Self> {
        // INVARIANT: `TOTAL_LEN` bytes; `size` starts at 2.
        Ok(Self {
            mem: Coherent::zeroed_slice(dev, TOTAL_LEN, GFP_KERNEL)?,
            size: 2,
            avail_idx: 0,
            last_used: 0,
        })
    }

    /// Starts over with an empty ring of `size` entries (rounded down to a power of two, at
    /// most [`MAX_SIZE`]), as after a device reset. Returns the size to program.
    pub(crate) fn reset(&mut self, max_size: u16) -> Result<u16> {
        if max_size < 2 {
            return Err(EINVAL);
        }
        let size = 1u16 << (15 - max_size.min(MAX_SIZE).leading_zeros());
        for off in (0..READABLE_OFF).step_by(8) {
            self.write(off, 0u64)?;
        }
        self.write(AVAIL_OFF, VRING_AVAIL_F_NO_INTERRUPT)?;
        // INVARIANT: A power of two no larger than `MAX_SIZE`.
        self.size = size;
        self.avail_idx = 0;
        self.last_used = 0;
        Ok(size)
    }

    /// Bus addresses of the descriptor table, available ring and used ring.
    pub(crate) fn ring_addresses(&self) -> (DmaAddress, DmaAddress, DmaAddress) {
        let base = self.mem.dma_address();
        (
            base + DESC_OFF as DmaAddress,
            base + AVAIL_OFF as DmaAddress,
            base + USED_OFF as DmaAddress,
        )
    }

    /// Copies `bytes` to the start of the device-readable buffer.
    pub(crate) fn fill_readable(&mut self, bytes: &[u8]) -> Result {
        if bytes.len() > READABLE_LEN {
            return Err(E2BIG);
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.write(READABLE_OFF + i, b)?;
        }
        Ok(())
    }

    /// Makes a chain of `readable` bytes of the readable buffer and `writable` bytes of the
    /// writable one available to the device. The first 8 writable bytes (status) are zeroed.
    pub(crate) fn submit(&mut self, readable: usize, writable: usize) -> Result {
        if !(1..=READABLE_LEN).contains(&readable) || !(8..=WRITABLE_LEN).contains(&writable) {
            return Err(EINVAL);
        }
        self.write(WRITABLE_OFF, 0u64)?;
        let base = self.mem.dma_address();
        self.write_desc(
            0,
            base + READABLE_OFF as DmaAddress,
            readable,
            VRING_DESC_F_NEXT,
            1,
        )?;
        self.write_desc(
            1,
            base + WRITABLE_OFF as DmaAddress,
            writable,
            VRING_DESC_F_WRITE,
            0,
        )?;
        let slot = usize::from(self.avail_idx & (self.size - 1));
        self.write(AVAIL_OFF + 4 + 2 * slot, 0u16)?;
        // The descriptors and the ring entry before the index that publishes them.
        dma_mb(Write);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.write(AVAIL_OFF + 2, self.avail_idx)
    }

    /// The next chain the device completed, if any.
    pub(crate) fn pop_used(&mut self) -> Result<Option<Used>> {
        let idx: u16 = self.read(USED_OFF + 2)?;
        if idx == self.last_used {
            return Ok(None);
        }
        // The index before the entry and the buffers it publishes.
        dma_mb(Read);
        let slot = usize::from(self.last_used & (self.size - 1));
        let id = self.read(USED_OFF + 4 + 8 * slot)?;
        let len = self.read(USED_OFF + 8 + 8 * slot)?;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(Used { id, len }))
    }

    /// Whether the device completed a chain not yet popped.
    pub(crate) fn has_used(&self) -> Result<bool> {
        Ok(self.read::<u16>(USED_OFF + 2)? != self.last_used)
    }

    /// Copies the first `out.len()` bytes of the writable buffer to `out`, a 64-bit word at a
    /// time (the buffer is page aligned).
    pub(crate) fn copy_writable(&self, out: &mut [u8]) -> Result {
        if out.len() > WRITABLE_LEN {
            return Err(EINVAL);
        }
        let mut chunks = out.chunks_exact_mut(8);
        let mut off = WRITABLE_OFF;
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.read::<u64>(off)?.to_le_bytes());
            off += 8;
        }
        for b in chunks.into_remainder() {
            *b = self.read(off)?;
            off += 1;
        }
        Ok(())
    }

    fn write_desc(&self, i: usize, addr: DmaAddress, len: usize, flags: u16, next: u16) -> Result {
        let off = DESC_OFF + 16 * i;
        self.write(off, addr)?;
        self.write(off + 8, u32::try_from(len)?)?;
        self.write(off + 12, flags)?;
        self.write(off + 14, next)
    }

    fn check<T>(off: usize) -> Result {
        let size = size_of::<T>();
        match off.checked_add(size) {
            Some(end) if end <= TOTAL_LEN && off % size == 0 => Ok(()),
            _ => Err(EINVAL),
        }
    }

    fn read<T: LeValue>(&self, off: usize) -> Result<T> {
        Self::check::<T>(off)?;
        // SAFETY: By the type invariants `mem` holds `TOTAL_LEN` bytes; `check` put the access
        // inside them and naturally aligned. The device may write the memory concurrently, hence
        // the volatile read.
        let raw = unsafe {
            core::ptr::read_volatile(self.mem.as_ptr().cast::<u8>().add(off).cast::<T>())
        };
        Ok(T::from_le(raw))
    }

    fn write<T: LeValue>(&self, off: usize, value: T) -> Result {
        Self::check::<T>(off)?;
        // SAFETY: As in `read`; the memory is the driver's to write, the device reads it.
        unsafe {
            core::ptr::write_volatile(
                self.mem.as_mut_ptr().cast::<u8>().add(off).cast::<T>(),
                value.to_le(),
            )
        };
        Ok(())
    }
}

/// The integer types the rings are made of, stored little-endian.
trait LeValue: Copy {
    fn to_le(self) -> Self;
    fn from_le(raw: Self) -> Self;
}

macro_rules! le_value {
    ($($ty:ty),*) => {$(
        impl LeValue for $ty {
            fn to_le(self) -> Self {
                <$ty>::to_le(self)
            }

            fn from_le(raw: Self) -> Self {
                <$ty>::from_le(raw)
            }
        }
    )*};
}

le_value!(u8, u16, u32, u64);
