// SPDX-License-Identifier: GPL-2.0
//! Guest memory as the device sees it: the DMA mappings the client sends
//! with `VFIO_USER_DMA_MAP`, each an mmap of the file descriptor that backs
//! guest RAM.
//!
//! Every region carries a [`DirtyLog`] "bitmap" in the vm-memory sense:
//! vm-memory calls it after each write through the region (data buffers,
//! used ring, event index, status bytes...), which lets one hook see every
//! device write into guest memory. The memory dirty pages tracker is that
//! hook.

use std::fmt;
use std::fs::File;
use std::io;
use std::sync::{Arc, Weak};

use vm_memory::bitmap::{Bitmap, BitmapSlice, WithBitmapSlice};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
    GuestRegionMmap,
};

/// Receives every device write into guest memory, after the data landed.
pub trait WriteSink: Send + Sync {
    /// `len` bytes were written at guest (I/O virtual) address `addr`.
    fn on_write(&self, addr: u64, len: usize);
}

/// The per-region write hook handed to vm-memory.
///
/// It is a "bitmap" only by vm-memory's interface: it keeps no state but
/// the guest address of the slice it describes and a weak reference to the
/// sink (the sink owns the memory, so a strong one would be a cycle).
#[derive(Clone, Default)]
pub struct DirtyLog {
    addr: u64,
    sink: Option<Weak<dyn WriteSink>>,
}

impl DirtyLog {
    /// A hook for memory starting at guest address `addr`.
    pub fn new(addr: u64, sink: Weak<dyn WriteSink>) -> Self {
        Self {
            addr,
            sink: Some(sink),
        }
    }
}

impl fmt::Debug for DirtyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirtyLog")
            .field("addr", &self.addr)
            .finish()
    }
}

impl WithBitmapSlice<'_> for DirtyLog {
    type S = Self;
}

impl BitmapSlice for DirtyLog {}

impl Bitmap for DirtyLog {
    fn mark_dirty(&self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(sink) = self.sink.as_ref().and_then(Weak::upgrade) {
            sink.on_write(self.addr.wrapping_add(offset as u64), len);
        }
    }

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    fn slice_at(&self, offset: usize) -> Self {
        Self {
            addr: self.addr.wrapping_add(offset as u64),
            sink: self.sink.clone(),
        }
    }
}

/// Guest memory with write logging.
pub type GuestMem = GuestMemoryMmap<DirtyLog>;
/// Guest memory that can be swapped while workers use older snapshots.
pub type GuestMemAtomic = GuestMemoryAtomic<GuestMem>;

/// The DMA address space of the device.
pub struct DmaSpace {
    mem: GuestMemAtomic,
    sink: Weak<dyn WriteSink>,
}

impl DmaSpace {
    /// An empty address space whose writes are reported to `sink`.
    pub fn new(mem: GuestMemAtomic, sink: Weak<dyn WriteSink>) -> Self {
        Self { mem, sink }
    }

    /// Maps `size` bytes of `file` at `offset` to I/O virtual address `iova`.
    pub fn map(&self, iova: u64, size: u64, file: File, offset: u64) -> io::Result<()> {
        let inval = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let len = usize::try_from(size).map_err(|_| inval("size too large"))?;
        if len == 0 || iova.checked_add(size).is_none() {
            return Err(inval("empty or wrapping DMA range"));
        }
        let region =
            MmapRegionBuilder::new_with_bitmap(len, DirtyLog::new(iova, self.sink.clone()))
                .with_file_offset(FileOffset::new(file, offset))
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_SHARED)
                .build()
                .map_err(|e| io::Error::other(format!("mmap: {e}")))?;
        let region = GuestRegionMmap::new(region, GuestAddress(iova))
            .ok_or_else(|| inval("region does not fit"))?;
        let guard = self
            .mem
            .lock()
            .map_err(|_| io::Error::other("memory lock poisoned"))?;
        let next = self
            .mem
            .memory()
            .insert_region(Arc::new(region))
            .map_err(|e| inval(&format!("overlapping DMA range: {e}")))?;
        guard.replace(next);
        Ok(())
    }

    /// Removes the mapping at `iova` of `size` bytes.
    pub fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        let guard = self
            .mem
            .lock()
            .map_err(|_| io::Error::other("memory lock poisoned"))?;
        let (next, _) = self
            .mem
            .memory()
            .remove_region(GuestAddress(iova), size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
        guard.replace(next);
        Ok(())
    }

    /// Removes every mapping.
    pub fn unmap_all(&self) -> io::Result<()> {
        let guard = self
            .mem
            .lock()
            .map_err(|_| io::Error::other("memory lock poisoned"))?;
        guard.replace(GuestMem::new());
        Ok(())
    }
}
