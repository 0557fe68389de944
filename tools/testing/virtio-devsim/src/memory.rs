// SPDX-License-Identifier: GPL-2.0
//! Guest memory as the device sees it: the DMA mappings the client sends
//! with `VFIO_USER_DMA_MAP`, each a range of I/O virtual addresses (IOVAs)
//! backed by a file descriptor at some offset (the memfd of guest RAM).
//!
//! Under a vIOMMU the client sends one map per IOMMU page, hundreds of
//! thousands of 4 KiB maps of the same file at different offsets, and it
//! waits for every reply (QEMU gives up after 5 s). So a map costs O(log n)
//! and no system resource per message:
//!
//! * each backing file, identified by its device and inode numbers, is
//!   mmapped whole and `MAP_SHARED` once, at its first map; it stays mapped
//!   until the last mapping that uses it is gone;
//! * the mappings are an ordered map from IOVA to (file, offset): map,
//!   unmap and lookup are O(log n). An unmap removes every mapped byte of
//!   its range, splitting a mapping it covers only in part.
//!
//! Device accesses go through a [`DmaView`], the vm-memory [`GuestMemory`]
//! that virtio-queue and the block backend use. The view translates each
//! access through the current mappings, like an IOMMU: once an unmap
//! returned, no new access reaches the range. A view keeps every file it
//! handed out memory of mapped until it is dropped, so a worker that is
//! still copying into a range the client unmaps meanwhile writes into
//! memory that is still there (and that the client gave up), never into
//! freed address space.
//!
//! Every slice a view hands out carries a [`DirtyLog`] "bitmap" in the
//! vm-memory sense: vm-memory calls it after each write through the slice
//! (data buffers, used ring, event index, status bytes...), which lets one
//! hook see every device write into guest memory. The memory dirty pages
//! tracker is that hook.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::iter::FusedIterator;
use std::os::unix::fs::MetadataExt;
use std::sync::{
    Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};

use vm_memory::bitmap::{Bitmap, BitmapSlice, WithBitmapSlice};
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemory, GuestMemoryError, GuestMemoryMmap, GuestMemoryResult,
    MmapRegion, Permissions, VolatileSlice,
};

use crate::stats::Stats;

/// Receives every device write into guest memory, after the data landed.
pub trait WriteSink: Send + Sync {
    /// `len` bytes were written at guest (I/O virtual) address `addr`.
    fn on_write(&self, addr: u64, len: usize);
}

/// The write hook handed to vm-memory with every slice of guest memory.
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

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.into())
}

/// What identifies a backing file: `st_dev` and `st_ino`. While the file
/// is mapped its inode is in use, so the pair cannot name another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
}

/// A backing file, mapped whole (`MAP_SHARED`, read and write); unmapped
/// and closed when dropped.
struct FileMap {
    mmap: MmapRegion<()>,
}

impl FileMap {
    /// Maps the first `len` bytes of `file`.
    fn new(file: File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| invalid("file too large"))?;
        let mmap = MmapRegionBuilder::new(len)
            .with_file_offset(FileOffset::new(file, 0))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_SHARED)
            .build()
            .map_err(|e| io::Error::other(format!("mmap: {e}")))?;
        Ok(Self { mmap })
    }

    /// Bytes mapped.
    fn len(&self) -> u64 {
        self.mmap.size() as u64
    }
}

/// One DMA mapping: the `len` bytes of IOVA space starting at its key in
/// [`Table::maps`] are the bytes of `file` starting at `offset`.
struct Mapping {
    len: u64,
    file: Arc<FileMap>,
    offset: u64,
}

impl Mapping {
    /// The last `len - at` bytes of the mapping.
    fn tail(&self, at: u64) -> Mapping {
        Mapping {
            len: self.len - at,
            file: self.file.clone(),
            offset: self.offset + at,
        }
    }
}

/// Where an IOVA lands: `len` bytes of `file` from `offset` on, up to the
/// end of the mapping that holds it.
struct Translation {
    file: Arc<FileMap>,
    offset: u64,
    len: u64,
}

/// The mappings and the files they use.
#[derive(Default)]
struct Table {
    /// Non-overlapping mappings, by first IOVA.
    maps: BTreeMap<u64, Mapping>,
    /// The mapped file of each backing file; the mappings (and views) hold
    /// it. Entries of files no longer mapped go at the next new file.
    files: HashMap<FileKey, Weak<FileMap>>,
}

impl Table {
    /// The mapping holding `iova`, with its first IOVA.
    fn mapping_at(&self, iova: u64) -> Option<(u64, &Mapping)> {
        let (&start, m) = self.maps.range(..=iova).next_back()?;
        (iova - start < m.len).then_some((start, m))
    }

    /// Whether some mapping overlaps `[iova, end)`: the last mapping that
    /// starts before `end` is the only candidate.
    fn overlaps(&self, iova: u64, end: u64) -> bool {
        self.maps
            .range(..end)
            .next_back()
            .is_some_and(|(&start, m)| start + m.len > iova)
    }

    /// Splits the mapping holding `iova` (if any) so that one starts there.
    fn split_at(&mut self, iova: u64) {
        let Some((&start, m)) = self.maps.range_mut(..iova).next_back() else {
            return;
        };
        let at = iova - start;
        if at >= m.len {
            return;
        }
        let tail = m.tail(at);
        m.len = at;
        self.maps.insert(iova, tail);
    }

    /// The mapped file of `key` if it holds `len` bytes, or else a new
    /// mapping of `file`, whose size is `size` (the client may have grown
    /// the file since it was mapped). Tells whether the mapping is new.
    fn file_for(
        &mut self,
        key: FileKey,
        file: File,
        size: u64,
        len: u64,
    ) -> io::Result<(Arc<FileMap>, bool)> {
        if let Some(mapped) = self.files.get(&key).and_then(Weak::upgrade) {
            if mapped.len() >= len {
                return Ok((mapped, false));
            }
        }
        if size < len {
            return Err(invalid("DMA range past the end of its file"));
        }
        let mapped = Arc::new(FileMap::new(file, size)?);
        self.files.retain(|_, f| f.strong_count() > 0);
        self.files.insert(key, Arc::downgrade(&mapped));
        Ok((mapped, true))
    }
}

/// The DMA address space of the device: the client's mappings.
pub struct DmaSpace {
    table: RwLock<Table>,
    sink: OnceLock<Weak<dyn WriteSink>>,
    stats: Arc<Stats>,
}

impl DmaSpace {
    /// An empty address space.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            table: RwLock::new(Table::default()),
            sink: OnceLock::new(),
            stats,
        }
    }

    /// Reports every device write from now on to `sink`. Only the first
    /// call has an effect.
    pub fn set_write_sink(&self, sink: Weak<dyn WriteSink>) {
        let _ = self.sink.set(sink);
    }

    // The table is plain data: a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Maps `size` bytes of `file` at `offset` to I/O virtual address
    /// `iova`. The range must not overlap a mapping.
    pub fn map(&self, iova: u64, size: u64, file: File, offset: u64) -> io::Result<()> {
        let end = iova
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or_else(|| invalid("empty or wrapping DMA range"))?;
        let file_end = offset
            .checked_add(size)
            .ok_or_else(|| invalid("file offset wraps"))?;
        let meta = file.metadata()?;
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let mut table = self.write();
        if table.overlaps(iova, end) {
            return Err(invalid(format!(
                "DMA range {iova:#x}+{size:#x} overlaps a mapping"
            )));
        }
        let (file, new) = table.file_for(key, file, meta.len(), file_end)?;
        table.maps.insert(
            iova,
            Mapping {
                len: size,
                file,
                offset,
            },
        );
        drop(table);
        if new {
            Stats::add(&self.stats.dma_file_mmaps, 1);
        }
        Stats::add(&self.stats.dma_maps, 1);
        Ok(())
    }

    /// Removes every mapped byte of `[iova, iova + size)`, splitting the
    /// mappings that straddle either end. Fails if nothing was mapped there.
    pub fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        // No mapping holds the last IOVA, so saturating loses nothing.
        let end = iova.saturating_add(size);
        let mut table = self.write();
        // Splitting creates a mapping inside the range whenever it changes
        // anything, so an empty range below means nothing was split.
        table.split_at(iova);
        table.split_at(end);
        let starts: Vec<u64> = table.maps.range(iova..end).map(|(&s, _)| s).collect();
        if starts.is_empty() {
            return Err(invalid(format!("nothing mapped in {iova:#x}+{size:#x}")));
        }
        let removed: Vec<Mapping> = starts.iter().filter_map(|s| table.maps.remove(s)).collect();
        drop(table);
        // A file whose last mapping this was is unmapped here, outside the
        // lock, unless a view still holds it.
        drop(removed);
        Stats::add(&self.stats.dma_unmaps, 1);
        Ok(())
    }

    /// Removes every mapping.
    pub fn unmap_all(&self) {
        let mut table = self.write();
        let old = std::mem::take(&mut *table);
        drop(table);
        // As in `unmap`, outside the lock.
        drop(old);
        Stats::add(&self.stats.dma_unmaps, 1);
    }

    /// Number of mappings.
    pub fn mappings(&self) -> usize {
        self.read().maps.len()
    }

    /// Number of backing files mapped into the process, for a mapping or
    /// for a view that still holds one.
    pub fn mapped_files(&self) -> usize {
        self.read()
            .files
            .values()
            .filter(|f| f.strong_count() > 0)
            .count()
    }

    /// Where `iova` lands.
    fn translate(&self, iova: u64) -> Option<Translation> {
        let table = self.read();
        let (start, m) = table.mapping_at(iova)?;
        let at = iova - start;
        Some(Translation {
            file: m.file.clone(),
            offset: m.offset + at,
            len: m.len - at,
        })
    }

    /// A view for device accesses (see [`DmaView`]).
    pub fn memory(&self) -> DmaView<'_> {
        DmaView {
            space: self,
            held: Mutex::new(Vec::new()),
        }
    }
}

/// Device access to guest memory: a vm-memory [`GuestMemory`] whose
/// addresses are IOVAs, translated at each access through the mappings of
/// its [`DmaSpace`]. Take one per unit of work (a fetch, a request, a
/// bitmap update) and drop it after. The access mode is not checked: every
/// mapping is readable and writable.
pub struct DmaView<'a> {
    space: &'a DmaSpace,
    /// The files this view handed out memory of. Slices borrow the view,
    /// so they cannot outlive these.
    held: Mutex<Vec<Arc<FileMap>>>,
}

impl DmaView<'_> {
    /// Adds `file` to the files the view holds.
    fn hold(&self, file: Arc<FileMap>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.iter().any(|f| Arc::ptr_eq(f, &file)) {
            held.push(file);
        }
    }

    /// The memory at `iova`: `count` bytes, or fewer if its mapping ends
    /// before.
    fn slice_at(&self, iova: u64, count: usize) -> GuestMemoryResult<VolatileSlice<'_, DirtyLog>> {
        let t = self
            .space
            .translate(iova)
            .ok_or(GuestMemoryError::InvalidGuestAddress(GuestAddress(iova)))?;
        let len = count.min(usize::try_from(t.len).unwrap_or(usize::MAX));
        let offset = usize::try_from(t.offset)
            .ok()
            .filter(|&o| {
                o.checked_add(len)
                    .is_some_and(|end| end as u64 <= t.file.len())
            })
            .ok_or(GuestMemoryError::InvalidGuestAddress(GuestAddress(iova)))?;
        let base = t.file.mmap.as_ptr();
        let log = match self.space.sink.get() {
            Some(sink) => DirtyLog::new(iova, sink.clone()),
            None => DirtyLog::default(),
        };
        self.hold(t.file);
        // SAFETY: `base` is the start of an mmap of `t.file.len()` bytes and
        // `offset + len` does not exceed it (checked above). The view holds
        // the file (`hold`), so the mapping lives as long as the view, and
        // the slice borrows the view. Guest RAM is shared with the guest;
        // the device accesses it only through volatile slices.
        Ok(unsafe { VolatileSlice::with_bitmap(base.add(offset), len, log, None) })
    }

    /// The `count` bytes at `addr` as one slice; fails if they are not in
    /// one mapping.
    pub fn get_slice(
        &self,
        addr: GuestAddress,
        count: usize,
    ) -> GuestMemoryResult<VolatileSlice<'_, DirtyLog>> {
        let slice = self.slice_at(addr.0, count)?;
        if slice.len() < count {
            return Err(GuestMemoryError::InvalidGuestAddress(GuestAddress(
                addr.0.wrapping_add(slice.len() as u64),
            )));
        }
        Ok(slice)
    }
}

impl GuestMemory for DmaView<'_> {
    /// There is no physical address space below the IOVAs: they translate
    /// to file offsets directly, and [`GuestMemory::physical_memory`] is
    /// `None`.
    type PhysicalMemory = GuestMemoryMmap<DirtyLog>;
    type Bitmap = DirtyLog;

    fn check_range(&self, addr: GuestAddress, count: usize, _access: Permissions) -> bool {
        self.slices(addr, count).all(|s| s.is_ok())
    }

    fn get_slices(
        &self,
        addr: GuestAddress,
        count: usize,
        _access: Permissions,
    ) -> GuestMemoryResult<impl GuestMemorySliceIterator<'_, DirtyLog>> {
        Ok(self.slices(addr, count))
    }
}

impl<'s> DmaView<'s> {
    fn slices(&self, addr: GuestAddress, count: usize) -> DmaSlices<'_, 's> {
        DmaSlices {
            view: self,
            addr: addr.0,
            count,
        }
    }
}

/// The slices, one per mapping, that together hold `count` bytes from
/// `addr` on; an error at the first unmapped byte ends them.
struct DmaSlices<'a, 's> {
    view: &'a DmaView<'s>,
    addr: u64,
    count: usize,
}

impl<'a> Iterator for DmaSlices<'a, '_> {
    type Item = GuestMemoryResult<VolatileSlice<'a, DirtyLog>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.count == 0 {
            return None;
        }
        let item = self.view.slice_at(self.addr, self.count);
        match &item {
            // A mapping ends at most at u64::MAX, so this cannot wrap.
            Ok(s) => {
                self.count -= s.len();
                self.addr += s.len() as u64;
            }
            Err(_) => self.count = 0,
        }
        Some(item)
    }
}

impl FusedIterator for DmaSlices<'_, '_> {}

impl<'a> GuestMemorySliceIterator<'a, DirtyLog> for DmaSlices<'a, '_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicU64, Ordering};
    use vm_memory::Bytes;

    const PAGE: u64 = 4096;

    fn memfd(size: u64) -> File {
        // SAFETY: the name is a valid C string; the fd is checked below.
        let fd = unsafe { libc::memfd_create(c"devsim-memory-test".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).unwrap();
        file
    }

    fn dup(f: &File) -> File {
        f.try_clone().unwrap()
    }

    /// Counts the bytes written and remembers the last write.
    #[derive(Default)]
    struct Recorder {
        bytes: AtomicU64,
        last: Mutex<Option<(u64, usize)>>,
    }

    impl WriteSink for Recorder {
        fn on_write(&self, addr: u64, len: usize) {
            self.bytes.fetch_add(len as u64, Ordering::SeqCst);
            *self.last.lock().unwrap() = Some((addr, len));
        }
    }

    fn space() -> DmaSpace {
        DmaSpace::new(Arc::new(Stats::default()))
    }

    fn read_file(f: &File, at: u64) -> u8 {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0]
    }

    #[test]
    fn pages_of_one_file_share_one_mmap() {
        let s = space();
        let ram = memfd(64 * PAGE);
        // Reverse order: IOVA page i is file page 63 - i.
        for i in 0..64 {
            s.map(0x10_0000 + i * PAGE, PAGE, dup(&ram), (63 - i) * PAGE)
                .unwrap();
        }
        assert_eq!(s.mappings(), 64);
        assert_eq!(s.mapped_files(), 1);
        assert_eq!(s.stats.dma_file_mmaps.load(Ordering::Relaxed), 1);
        let mem = s.memory();
        // A write across two pages lands in two non-adjacent file pages.
        mem.write_slice(&[1, 2, 3, 4], GuestAddress(0x10_0000 + PAGE - 2))
            .unwrap();
        assert_eq!(read_file(&ram, 63 * PAGE + PAGE - 2), 1);
        assert_eq!(read_file(&ram, 63 * PAGE + PAGE - 1), 2);
        assert_eq!(read_file(&ram, 62 * PAGE), 3);
        assert_eq!(read_file(&ram, 62 * PAGE + 1), 4);
        assert_eq!(
            mem.slices(GuestAddress(0x10_0000), 3 * PAGE as usize)
                .count(),
            3
        );
    }

    #[test]
    fn overlapping_maps_are_refused() {
        let s = space();
        let ram = memfd(16 * PAGE);
        s.map(4 * PAGE, 4 * PAGE, dup(&ram), 0).unwrap();
        for (iova, size) in [(4, 4), (3, 2), (7, 1), (5, 1), (0, 16)] {
            assert!(
                s.map(iova * PAGE, size * PAGE, dup(&ram), 0).is_err(),
                "{iova}+{size}"
            );
        }
        // Adjacent on both sides is fine.
        s.map(3 * PAGE, PAGE, dup(&ram), 0).unwrap();
        s.map(8 * PAGE, PAGE, dup(&ram), 0).unwrap();
        assert!(s.map(0, 0, dup(&ram), 0).is_err(), "empty");
        assert!(s.map(u64::MAX - 1, 2, dup(&ram), 0).is_err(), "wraps");
        assert!(
            s.map(32 * PAGE, PAGE, dup(&ram), 16 * PAGE).is_err(),
            "past the end of the file"
        );
        assert_eq!(s.mappings(), 3);
    }

    #[test]
    fn unmap_of_a_sub_range_splits_the_mapping() {
        let s = space();
        let ram = memfd(16 * PAGE);
        s.map(0x10_0000, 8 * PAGE, dup(&ram), 4 * PAGE).unwrap();
        s.unmap(0x10_0000 + 2 * PAGE, 3 * PAGE).unwrap();
        assert_eq!(s.mappings(), 2);
        let mem = s.memory();
        assert!(mem.check_range(
            GuestAddress(0x10_0000),
            2 * PAGE as usize,
            Permissions::Write
        ));
        assert!(!mem.check_range(
            GuestAddress(0x10_0000 + 2 * PAGE - 1),
            2,
            Permissions::Write
        ));
        assert!(!mem.check_range(GuestAddress(0x10_0000 + 4 * PAGE), 1, Permissions::Read));
        // The tail keeps its file offset.
        mem.write_obj(0x5au8, GuestAddress(0x10_0000 + 5 * PAGE))
            .unwrap();
        assert_eq!(read_file(&ram, 9 * PAGE), 0x5a);
        // Unmapping what is already gone fails; the rest still unmaps.
        assert!(s.unmap(0x10_0000 + 2 * PAGE, 3 * PAGE).is_err());
        s.unmap(0x10_0000, 8 * PAGE).unwrap();
        assert_eq!(s.mappings(), 0);
        assert_eq!(s.mapped_files(), 1, "held by the view");
        drop(mem);
        assert_eq!(s.mapped_files(), 0, "released with the view");
    }

    #[test]
    fn unmap_spanning_several_mappings_with_holes() {
        let s = space();
        let ram = memfd(16 * PAGE);
        for i in [0, 1, 2, 4, 5, 7] {
            s.map(i * PAGE, PAGE, dup(&ram), i * PAGE).unwrap();
        }
        // From the middle of page 1 to the middle of page 5.
        s.unmap(PAGE + 0x800, 4 * PAGE).unwrap();
        let mem = s.memory();
        let mapped = |a: u64| mem.check_range(GuestAddress(a), 1, Permissions::Read);
        assert!(mapped(0) && mapped(PAGE + 0x7ff) && mapped(5 * PAGE + 0x800));
        assert!(!mapped(PAGE + 0x800) && !mapped(2 * PAGE) && !mapped(5 * PAGE + 0x7ff));
        assert!(mapped(7 * PAGE));
        assert_eq!(s.mappings(), 4);
        // An unmap of the whole address space.
        s.unmap(0, u64::MAX).unwrap();
        assert_eq!(s.mappings(), 0);
    }

    #[test]
    fn unmap_all_and_a_second_file() {
        let s = space();
        let (a, b) = (memfd(4 * PAGE), memfd(4 * PAGE));
        s.map(0, 4 * PAGE, dup(&a), 0).unwrap();
        s.map(4 * PAGE, PAGE, dup(&b), 0).unwrap();
        s.map(5 * PAGE, PAGE, dup(&b), 3 * PAGE).unwrap();
        assert_eq!(s.mapped_files(), 2);
        let mem = s.memory();
        mem.write_obj(7u8, GuestAddress(5 * PAGE + 1)).unwrap();
        assert_eq!(read_file(&b, 3 * PAGE + 1), 7);
        assert_eq!(read_file(&a, 1), 0);
        drop(mem);
        s.unmap_all();
        assert_eq!((s.mappings(), s.mapped_files()), (0, 0));
        assert!(!s
            .memory()
            .check_range(GuestAddress(0), 1, Permissions::Read));
    }

    #[test]
    fn a_grown_file_is_mapped_again() {
        let s = space();
        let ram = memfd(PAGE);
        s.map(0, PAGE, dup(&ram), 0).unwrap();
        ram.set_len(4 * PAGE).unwrap();
        s.map(PAGE, PAGE, dup(&ram), 3 * PAGE).unwrap();
        assert_eq!(s.stats.dma_file_mmaps.load(Ordering::Relaxed), 2);
        s.memory().write_obj(9u8, GuestAddress(PAGE)).unwrap();
        s.memory().write_obj(8u8, GuestAddress(0)).unwrap();
        assert_eq!((read_file(&ram, 3 * PAGE), read_file(&ram, 0)), (9, 8));
    }

    #[test]
    fn a_view_keeps_unmapped_memory_alive() {
        let s = space();
        let ram = memfd(4 * PAGE);
        s.map(0, 4 * PAGE, dup(&ram), 0).unwrap();
        let mem = s.memory();
        let slice = mem.get_slice(GuestAddress(PAGE), 16).unwrap();
        s.unmap_all();
        // The translation is gone, the memory the slice points to is not.
        assert!(!mem.check_range(GuestAddress(PAGE), 1, Permissions::Read));
        slice.write_obj(0xa5u8, 0).unwrap();
        drop(mem);
        assert_eq!(read_file(&ram, PAGE), 0xa5);
    }

    #[test]
    fn accesses_while_the_client_maps_and_unmaps() {
        let s = Arc::new(space());
        let ram = memfd(64 * PAGE);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut written = 0u64;
                // At least one pass, after the last map if not before.
                loop {
                    let done = stop.load(Ordering::SeqCst);
                    let mem = s.memory();
                    for page in 0..64 {
                        // Fails while the page is unmapped.
                        if mem
                            .write_slice(&[0xee; 64], GuestAddress(page * PAGE + 8))
                            .is_ok()
                        {
                            written += 1;
                        }
                    }
                    if done {
                        return written;
                    }
                }
            })
        };
        for round in 0..2000u64 {
            let page = round % 64;
            s.map(page * PAGE, PAGE, dup(&ram), page * PAGE).unwrap();
            if round % 3 == 0 {
                s.unmap(0, 64 * PAGE).unwrap();
            }
        }
        // Round 1999 left page 1999 % 64 mapped.
        stop.store(true, Ordering::SeqCst);
        assert!(worker.join().unwrap() > 0);
        s.unmap_all();
        assert_eq!(s.mapped_files(), 0);
    }

    #[test]
    fn writes_reach_the_sink_with_their_iova() {
        let s = space();
        let sink = Arc::new(Recorder::default());
        let weak: Weak<dyn WriteSink> = Arc::downgrade(&sink) as Weak<dyn WriteSink>;
        s.set_write_sink(weak);
        let ram = memfd(4 * PAGE);
        s.map(0x8000, PAGE, dup(&ram), 2 * PAGE).unwrap();
        s.map(0x9000, PAGE, dup(&ram), 0).unwrap();
        let mem = s.memory();
        mem.write_slice(&[0u8; 32], GuestAddress(0x9000 - 16))
            .unwrap();
        assert_eq!(sink.bytes.load(Ordering::SeqCst), 32);
        assert_eq!(*sink.last.lock().unwrap(), Some((0x9000, 16)));
        mem.write_obj(1u32, GuestAddress(0x8100)).unwrap();
        assert_eq!(*sink.last.lock().unwrap(), Some((0x8100, 4)));
        let mut buf = [0u8; 8];
        mem.read_slice(&mut buf, GuestAddress(0x8100)).unwrap();
        assert_eq!(
            sink.bytes.load(Ordering::SeqCst),
            36,
            "reads are not logged"
        );
        assert!(
            mem.get_slice(GuestAddress(0x9000 - 4), 8).is_err(),
            "two mappings"
        );
    }
}
