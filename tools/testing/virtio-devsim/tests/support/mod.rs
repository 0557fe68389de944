// SPDX-License-Identifier: GPL-2.0
//! A minimal virtio-pci driver for the tests: it talks to the device either
//! over a real vfio-user socket (spawning the `virtio-devsim` binary) or
//! directly through the library's `ServerBackend` implementation, with guest
//! memory in a memfd shared with the device.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use vfio_user::{Client, DmaMapFlags, ServerBackend};
use virtio_devsim::layout::*;
use virtio_devsim::{Config, Device};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Size of the fake guest RAM.
pub const MEM_SIZE: u64 = 16 << 20;
/// Where request headers go (16 bytes each, one per descriptor slot).
pub const HDR_BASE: u64 = 0x10_0000;
/// Where status bytes go.
pub const STATUS_BASE: u64 = 0x18_0000;
/// Where data buffers go.
pub const DATA_BASE: u64 = 0x20_0000;
/// Where the tests put the tracker bitmap.
pub const BITMAP_BASE: u64 = 0xf0_0000;

/// Feature bits of the tests' driver.
pub const VERSION_1: u64 = 1 << 32;
pub const ACCESS_PLATFORM: u64 = 1 << 33;
pub const EVENT_IDX: u64 = 1 << 29;
pub const BLK_F_MQ: u64 = 1 << 12;

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

/// Register access to the device.
pub trait Bus {
    fn read(&mut self, region: u32, offset: u64, data: &mut [u8]);
    fn write(&mut self, region: u32, offset: u64, data: &[u8]);
}

/// The device over a vfio-user socket.
pub struct SocketBus(pub Client);

impl Bus for SocketBus {
    fn read(&mut self, region: u32, offset: u64, data: &mut [u8]) {
        self.0
            .region_read(region, offset, data)
            .expect("region read");
    }
    fn write(&mut self, region: u32, offset: u64, data: &[u8]) {
        self.0
            .region_write(region, offset, data)
            .expect("region write");
    }
}

/// The device in-process, through the library.
pub struct DirectBus(pub Device);

impl Bus for DirectBus {
    fn read(&mut self, region: u32, offset: u64, data: &mut [u8]) {
        self.0
            .region_read(region, offset, data)
            .expect("region read");
    }
    fn write(&mut self, region: u32, offset: u64, data: &[u8]) {
        self.0
            .region_write(region, offset, data)
            .expect("region write");
    }
}

/// Creates the memfd that backs guest RAM.
pub fn memfd(size: u64) -> File {
    let name = c"devsim-test-ram";
    // SAFETY: `name` is a valid C string; the returned fd is checked and
    // owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).expect("memfd size");
    file
}

/// Creates an eventfd for an MSI-X vector.
pub fn eventfd() -> File {
    // SAFETY: plain syscall; the returned fd is checked and owned by the File.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd failed");
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    unsafe { File::from_raw_fd(fd) }
}

/// Reads and resets an eventfd counter (0 if it was not signalled).
pub fn eventfd_take(f: &File) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`, which is 8 bytes long.
    let n = unsafe { libc::read(f.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
    if n == 8 {
        v
    } else {
        0
    }
}

/// The driver's view of guest memory.
pub fn guest_view(file: &File) -> GuestMemoryMmap {
    let region = MmapRegion::from_file(
        FileOffset::new(file.try_clone().expect("dup"), 0),
        MEM_SIZE as usize,
    )
    .expect("mmap");
    GuestMemoryMmap::from_regions(vec![
        GuestRegionMmap::new(region, GuestAddress(0)).expect("region")
    ])
    .expect("memory")
}

/// One split virtqueue, driver side.
pub struct DriverQueue {
    pub index: u16,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub next_avail: u16,
    pub last_used: u16,
    pub next_desc: u16,
}

impl DriverQueue {
    /// Ring addresses of queue `index`: 64 KiB apart from 0x10000.
    pub fn layout(index: u16, size: u16) -> Self {
        let base = 0x1_0000 * (index as u64 + 1);
        Self {
            index,
            size,
            desc: base,
            avail: base + 0x4000,
            used: base + 0x8000,
            next_avail: 0,
            last_used: 0,
            next_desc: 0,
        }
    }

    /// Guest page of the used ring (written by the device).
    pub fn used_pages(&self) -> Vec<u64> {
        let len = 4 + 8 * self.size as u64 + 2;
        (self.used >> 12..=(self.used + len - 1) >> 12).collect()
    }

    /// Guest address of the `used_event` field.
    pub fn used_event_addr(&self) -> u64 {
        self.avail + 4 + 2 * self.size as u64
    }

    /// Guest address of the `avail_event` field (written by the device).
    pub fn avail_event_addr(&self) -> u64 {
        self.used + 4 + 8 * self.size as u64
    }

    /// Writes a chain of (addr, len, device-writable) buffers and makes it
    /// available (without notifying). Returns the head index.
    pub fn push(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let idx = (self.next_desc + i as u16) % self.size;
            let next = (idx + 1) % self.size;
            let mut flags = if write { 2u16 } else { 0 };
            if i + 1 < bufs.len() {
                flags |= 1;
            }
            let at = self.desc + 16 * idx as u64;
            mem.write_obj(addr, GuestAddress(at)).unwrap();
            mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        let slot = self.avail + 4 + 2 * (self.next_avail % self.size) as u64;
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.next_avail = self.next_avail.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.write_obj(self.next_avail, GuestAddress(self.avail + 2))
            .unwrap();
        head
    }

    /// The device's used index.
    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Collects used entries (id, len) until `count` new ones arrived.
    pub fn wait_used(
        &mut self,
        mem: &GuestMemoryMmap,
        count: u16,
        timeout: Duration,
    ) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + timeout;
        while self.used_idx(mem).wrapping_sub(self.last_used) < count {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} used entries"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let mut out = Vec::new();
        for _ in 0..count {
            let at = self.used + 4 + 8 * (self.last_used % self.size) as u64;
            let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((id, len));
            self.last_used = self.last_used.wrapping_add(1);
        }
        out
    }
}

/// A device plus the driver state the tests need.
pub struct Driver<B: Bus> {
    pub bus: B,
    pub mem: GuestMemoryMmap,
    pub queues: Vec<DriverQueue>,
    pub ram: File,
}

impl<B: Bus> Driver<B> {
    pub fn bar_read(&mut self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bus.read(VIRTIO_BAR as u32, offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    pub fn bar_write(&mut self, offset: u64, len: usize, v: u64) {
        self.bus
            .write(VIRTIO_BAR as u32, offset, &v.to_le_bytes()[..len]);
    }

    pub fn config_space(&mut self, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.bus.read(7, 0, &mut b);
        b
    }

    pub fn config_read(&mut self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bus.read(7, offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    pub fn config_write(&mut self, offset: u64, len: usize, v: u64) {
        self.bus.write(7, offset, &v.to_le_bytes()[..len]);
    }

    /// The power state in PMCSR.
    pub fn power_state(&mut self) -> u8 {
        self.config_read(CAP_PM_AT as u64 + 4, 2) as u8 & 3
    }

    /// Writes the power state, as the kernel does: read-modify-write of PMCSR.
    pub fn set_power_state(&mut self, state: u8) {
        let at = CAP_PM_AT as u64 + 4;
        let csr = self.config_read(at, 2) & !3;
        self.config_write(at, 2, csr | state as u64);
    }

    /// Sets Initiate FLR in Device Control, as the kernel does.
    pub fn initiate_flr(&mut self) {
        let at = CAP_PCIE_AT as u64 + 8;
        let ctl = self.config_read(at, 2);
        self.config_write(at, 2, ctl | 0x8000);
    }

    pub fn status(&mut self) -> u8 {
        self.bar_read(COMMON_CFG_OFFSET + 0x14, 1) as u8
    }

    pub fn set_status(&mut self, v: u8) {
        self.bar_write(COMMON_CFG_OFFSET + 0x14, 1, v as u64);
    }

    pub fn device_features(&mut self) -> u64 {
        self.bar_write(0x00, 4, 0);
        let lo = self.bar_read(0x04, 4);
        self.bar_write(0x00, 4, 1);
        let hi = self.bar_read(0x04, 4);
        lo | (hi << 32)
    }

    pub fn write_driver_features(&mut self, f: u64) {
        self.bar_write(0x08, 4, 0);
        self.bar_write(0x0c, 4, f & 0xffff_ffff);
        self.bar_write(0x08, 4, 1);
        self.bar_write(0x0c, 4, f >> 32);
    }

    /// ACKNOWLEDGE | DRIVER, features, FEATURES_OK. Returns whether the
    /// device accepted the features.
    pub fn negotiate(&mut self, features: u64) -> bool {
        self.set_status(0);
        self.set_status(1 | 2);
        self.write_driver_features(features);
        self.set_status(1 | 2 | 8);
        self.status() & 8 != 0
    }

    /// Configures and enables queue `index` with `size` entries and MSI-X
    /// vector `vector`.
    pub fn setup_queue(&mut self, index: u16, size: u16, vector: u16) {
        let q = DriverQueue::layout(index, size);
        self.bar_write(0x16, 2, index as u64);
        self.bar_write(0x18, 2, size as u64);
        self.bar_write(0x1a, 2, vector as u64);
        self.bar_write(0x20, 8, q.desc);
        // The avail address split in two 32-bit writes, like Linux does.
        self.bar_write(0x28, 4, q.avail & 0xffff_ffff);
        self.bar_write(0x2c, 4, q.avail >> 32);
        self.bar_write(0x30, 8, q.used);
        self.bar_write(0x1c, 2, 1);
        // Clear the rings.
        self.mem
            .write_slice(&[0u8; 0xc000], GuestAddress(q.desc))
            .unwrap();
        while self.queues.len() <= index as usize {
            let i = self.queues.len() as u16;
            self.queues.push(DriverQueue::layout(i, size));
        }
        self.queues[index as usize] = q;
    }

    /// Full bring-up: features, `nq` queues of `size`, DRIVER_OK.
    pub fn bring_up(&mut self, features: u64, nq: u16, size: u16) {
        assert!(self.negotiate(features), "features refused");
        for q in 0..nq {
            self.setup_queue(q, size, q + 1);
        }
        self.bar_write(0x10, 2, 0);
        self.set_status(1 | 2 | 8 | 4);
    }

    pub fn kick(&mut self, q: u16) {
        self.bar_write(
            NOTIFY_OFFSET + NOTIFY_OFF_MULTIPLIER as u64 * q as u64,
            2,
            q as u64,
        );
    }

    /// Queues a block request on queue `q`: header at slot `slot`, data
    /// buffers `data`, status at slot `slot`. Returns the head.
    pub fn push_request(
        &mut self,
        q: u16,
        slot: u64,
        kind: u32,
        sector: u64,
        data: &[(u64, u32)],
    ) -> u16 {
        let hdr = HDR_BASE + 16 * slot;
        let status = STATUS_BASE + slot;
        self.mem.write_obj(kind, GuestAddress(hdr)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(hdr + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(hdr + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        let dev_writes = kind == T_IN || kind == T_GET_ID;
        let mut bufs = vec![(hdr, 16, false)];
        bufs.extend(data.iter().map(|&(a, l)| (a, l, dev_writes)));
        bufs.push((status, 1, true));
        let mem = self.mem.clone();
        self.queues[q as usize].push(&mem, &bufs)
    }

    pub fn status_byte(&self, slot: u64) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS_BASE + slot)).unwrap()
    }

    pub fn wait_used(&mut self, q: u16, count: u16) -> Vec<(u32, u32)> {
        let mem = self.mem.clone();
        self.queues[q as usize].wait_used(&mem, count, Duration::from_secs(10))
    }

    /// Tracker registers.
    pub fn track_write(&mut self, off: u64, len: usize, v: u64) {
        self.bar_write(MEMORY_TRACK_OFFSET + off, len, v);
    }

    pub fn track_read(&mut self, off: u64, len: usize) -> u64 {
        self.bar_read(MEMORY_TRACK_OFFSET + off, len)
    }

    /// Programs and enables the tracker. Returns the gra_power in effect.
    pub fn track_start(&mut self, gra_power: u8, bitmap_len: u64) -> u8 {
        self.mem
            .write_slice(
                &vec![0u8; bitmap_len as usize + 64],
                GuestAddress(BITMAP_BASE),
            )
            .unwrap();
        self.track_write(8, 8, BITMAP_BASE);
        self.track_write(16, 8, bitmap_len);
        self.track_write(1, 1, gra_power as u64);
        self.track_write(0, 1, 1);
        self.track_read(1, 1) as u8
    }

    /// Reads and clears the bitmap word by word with an atomic exchange, as
    /// a driver does; returns the dirty page numbers.
    pub fn harvest(&self, bitmap_len: u64) -> Vec<u64> {
        harvest(&self.mem, bitmap_len)
    }

    /// Device state block.
    pub fn select_state(&mut self, q: u16) {
        self.bar_write(DEVICE_STATE_OFFSET, 2, q as u64);
    }

    pub fn queue_status(&mut self) -> u8 {
        self.bar_read(DEVICE_STATE_OFFSET + 4, 1) as u8
    }

    pub fn set_queue_status(&mut self, v: u8) {
        self.bar_write(DEVICE_STATE_OFFSET + 4, 1, v as u64);
    }

    pub fn last_avail_idx(&mut self) -> u16 {
        self.bar_read(DEVICE_STATE_OFFSET + 2, 2) as u16
    }

    pub fn set_last_avail_idx(&mut self, v: u16) {
        self.bar_write(DEVICE_STATE_OFFSET + 2, 2, v as u64);
    }
}

/// The binary under test.
pub fn devsim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_virtio-devsim"))
}

/// A `virtio-devsim` process and a vfio-user client connected to it.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Server {
    /// Spawns the binary with `args` (plus `--socket`, `--backing`) and
    /// waits for its socket.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_in(tempfile::tempdir().unwrap(), args)
    }

    /// Spawns the binary with an owner function (`--owner-socket`, at
    /// [`Server::owner_socket`]) and `args`; waits for both sockets.
    pub fn spawn_pair(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let owner = dir.path().join("owner.sock");
        let owner = owner.to_str().unwrap().to_string();
        let mut all = vec!["--owner-socket", owner.as_str()];
        all.extend_from_slice(args);
        let srv = Self::spawn_in(dir, &all);
        assert!(
            srv.owner_socket().exists(),
            "the owner's socket comes first"
        );
        srv
    }

    fn spawn_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let socket = dir.path().join("devsim.sock");
        let backing = dir.path().join("disk.img");
        let child = Command::new(devsim_bin())
            .arg("--socket")
            .arg(&socket)
            .arg("--backing")
            .arg(&backing)
            .arg("--stats-file")
            .arg(dir.path().join("stats"))
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn virtio-devsim");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "socket never appeared");
            thread::sleep(Duration::from_millis(5));
        }
        Self { child, dir, socket }
    }

    pub fn backing(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir.path().join("stats")
    }

    /// The owner function's socket ([`Server::spawn_pair`]).
    pub fn owner_socket(&self) -> PathBuf {
        self.dir.path().join("owner.sock")
    }

    /// Connects a client to the owner function and maps its own guest RAM.
    pub fn connect_owner(&self) -> Driver<SocketBus> {
        let mut client = Client::new(&self.owner_socket()).expect("connect owner");
        let ram = memfd(MEM_SIZE);
        client
            .dma_map(0, 0, MEM_SIZE, ram.as_raw_fd())
            .expect("dma map");
        let mem = guest_view(&ram);
        Driver {
            bus: SocketBus(client),
            mem,
            queues: Vec::new(),
            ram,
        }
    }

    /// Asks for the statistics file (SIGUSR1) and waits until it holds
    /// `key`.
    pub fn dump_stats(&self, key: &str) {
        let _ = std::fs::remove_file(self.stats_path());
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(self.stats_path()).unwrap_or_default();
            if text.lines().any(|l| l.starts_with(&format!("{key}="))) {
                return;
            }
            assert!(Instant::now() < deadline, "no statistics file");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connects a client and maps guest RAM.
    pub fn connect(&self) -> Driver<SocketBus> {
        self.connect_with(|client, ram| {
            client
                .dma_map(0, 0, MEM_SIZE, ram.as_raw_fd())
                .expect("dma map");
        })
    }

    /// Connects a client; `map_ram` maps guest RAM `ram` (at IOVA = file
    /// offset, which is what `Driver::mem` assumes).
    pub fn connect_with(&self, map_ram: impl FnOnce(&mut Client, &File)) -> Driver<SocketBus> {
        let mut client = Client::new(&self.socket).expect("connect");
        let ram = memfd(MEM_SIZE);
        map_ram(&mut client, &ram);
        let mem = guest_view(&ram);
        Driver {
            bus: SocketBus(client),
            mem,
            queues: Vec::new(),
            ram,
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "virtio-devsim did not exit");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads one counter of the statistics file.
    pub fn stat(&self, key: &str) -> u64 {
        read_stat(&self.stats_path(), key)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_stat(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {key} in stats:\n{text}"))
}

/// An in-process device with guest RAM mapped, for library-level tests.
pub fn direct(cfg: Config) -> (Driver<DirectBus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        backing: dir.path().join("disk.img"),
        ..cfg
    };
    let dev = Device::new(cfg).expect("device");
    (attach(dev), dir)
}

/// An in-process member and its owner (`cfg` gets an `owner_socket`, which
/// the library does not use), each with its own guest RAM mapped at 0.
pub fn direct_pair(cfg: Config) -> (Driver<DirectBus>, Driver<DirectBus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        backing: dir.path().join("disk.img"),
        owner_socket: Some(dir.path().join("owner.sock")),
        ..cfg
    };
    let member = Device::new(cfg.clone()).expect("member");
    let owner = Device::new_owner(&cfg, &member).expect("owner");
    (attach(member), attach(owner), dir)
}

/// A driver for `dev`, with fresh guest RAM mapped at IOVA 0.
pub fn attach(mut dev: Device) -> Driver<DirectBus> {
    let ram = memfd(MEM_SIZE);
    dev.dma_map(
        DmaMapFlags::READ_WRITE,
        0,
        0,
        MEM_SIZE,
        Some(ram.try_clone().unwrap()),
    )
    .expect("dma map");
    let mem = guest_view(&ram);
    Driver {
        bus: DirectBus(dev),
        mem,
        queues: Vec::new(),
        ram,
    }
}

/// See [`Driver::harvest`].
pub fn harvest(mem: &GuestMemoryMmap, bitmap_len: u64) -> Vec<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use vm_memory::{GuestMemoryBackend, VolatileMemory};
    let mut pages = Vec::new();
    for w in 0..bitmap_len.div_ceil(8) {
        let slice = mem.get_slice(GuestAddress(BITMAP_BASE + 8 * w), 8).unwrap();
        let v = slice
            .get_atomic_ref::<AtomicU64>(0)
            .unwrap()
            .swap(0, Ordering::SeqCst);
        for b in 0..64 {
            if v & (1 << b) != 0 {
                pages.push(w * 64 + b);
            }
        }
    }
    pages
}
