// SPDX-License-Identifier: GPL-2.0
//! virtio-blk backed by a regular file.
//!
//! Supported requests: `IN`, `OUT`, `FLUSH` and `GET_ID`, in 512-byte
//! sectors. Anything else completes with `VIRTIO_BLK_S_UNSUPP`. Every guest
//! address comes from the driver and is checked: a request touching memory
//! that is not mapped completes with `VIRTIO_BLK_S_IOERR`.
//!
//! The configuration (`struct virtio_blk_config`, 0x3c bytes) holds
//! `capacity`, `seg_max`, `blk_size`, `num_queues` and, with
//! `VIRTIO_BLK_F_CONFIG_WCE`, `writeback` (0x20): the only field the
//! driver may write (0 writethrough, 1 writeback; the byte written reads
//! back), 1 after creation and after every reset. The mode is only stored:
//! requests are served the same way in both (`FLUSH` syncs the file).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::config::{Config, DEFAULT_CAPACITY_SECTORS};
use crate::layout::{DEVICE_CFG_LEN, DEVICE_CFG_WRITEBACK, SECTOR_SIZE};

/// Largest data transfer of one request; larger requests fail with IOERR.
pub const MAX_REQUEST_BYTES: u64 = 32 << 20;
/// Size of the request header (`type`, `reserved`, `sector`).
const HEADER_LEN: usize = 16;

/// One descriptor of a request, as the driver posted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u32,
    /// Whether the device writes the buffer (device-writable descriptor).
    pub write: bool,
}

/// The outcome of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Bytes written into device-writable buffers (the used length).
    pub used_len: u32,
    /// The status byte, if it could be written.
    pub status: Option<u8>,
}

/// The block device.
pub struct Blk {
    file: File,
    capacity: u64,
    serial: [u8; VIRTIO_BLK_ID_BYTES as usize],
    queues: u16,
    queue_size: u16,
}

impl Blk {
    /// Opens (creating if missing) the backing file described by `cfg`.
    pub fn open(cfg: &Config) -> io::Result<Self> {
        let existed = cfg.backing.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cfg.backing)?;
        let size = file.metadata()?.len();
        let capacity = match cfg.capacity_sectors {
            Some(c) => c,
            None if existed => size / SECTOR_SIZE,
            None => DEFAULT_CAPACITY_SECTORS,
        };
        let bytes = capacity
            .checked_mul(SECTOR_SIZE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        if size < bytes {
            file.set_len(bytes)?;
        }
        let mut serial = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = cfg.serial.len().min(serial.len());
        serial[..n].copy_from_slice(&cfg.serial.as_bytes()[..n]);
        Ok(Self {
            file,
            capacity,
            serial,
            queues: cfg.queues,
            queue_size: cfg.queue_size,
        })
    }

    /// A device of capacity 0 on an anonymous file, for the owner
    /// function: reads and writes of data fail with IOERR, FLUSH and
    /// GET_ID succeed.
    pub fn inert(serial: &str, queues: u16, queue_size: u16) -> io::Result<Self> {
        let name = c"devsim-owner-disk";
        // SAFETY: `name` is a valid C string; the result is checked and the
        // descriptor is owned by the File from here on.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Ok(Self {
            file,
            capacity: 0,
            serial: id,
            queues,
            queue_size,
        })
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Device-specific feature bits.
    pub fn features(&self) -> u64 {
        (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE)
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_MQ)
            | (1 << VIRTIO_BLK_F_CONFIG_WCE)
    }

    /// `struct virtio_blk_config` as exposed in the device configuration
    /// after creation and after a reset.
    pub fn config_space(&self) -> [u8; DEVICE_CFG_LEN as usize] {
        let mut c = [0u8; DEVICE_CFG_LEN as usize];
        c[0x00..0x08].copy_from_slice(&self.capacity.to_le_bytes());
        // size_max (unused without VIRTIO_BLK_F_SIZE_MAX).
        c[0x08..0x0c].copy_from_slice(&0u32.to_le_bytes());
        // seg_max: data descriptors per request (header and status excluded).
        let seg_max = u32::from(self.queue_size.saturating_sub(2)).max(1);
        c[0x0c..0x10].copy_from_slice(&seg_max.to_le_bytes());
        // blk_size.
        c[0x14..0x18].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        // writeback: the file is written through the page cache.
        c[DEVICE_CFG_WRITEBACK as usize] = 1;
        // num_queues.
        c[0x22..0x24].copy_from_slice(&self.queues.to_le_bytes());
        c
    }

    /// Executes one request made of `segs` and writes its status byte.
    pub fn execute<M: GuestMemory>(&self, mem: &M, segs: &[Segment]) -> Completion {
        let readable: Vec<Segment> = segs.iter().copied().filter(|s| !s.write).collect();
        let writable: Vec<Segment> = segs.iter().copied().filter(|s| s.write).collect();
        let writable_len: u64 = writable.iter().map(|s| s.len as u64).sum();
        // The status byte is the last byte of the last writable buffer.
        let Some(status_addr) = writable_len
            .checked_sub(1)
            .and_then(|off| locate(&writable, off))
        else {
            return Completion {
                used_len: 0,
                status: None,
            };
        };
        let data_len = writable_len - 1;

        let (status, used) = match gather(mem, &readable, 0, HEADER_LEN as u64) {
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
            Ok(hdr) => {
                let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                let mut sector = [0u8; 8];
                sector.copy_from_slice(&hdr[8..16]);
                let sector = u64::from_le_bytes(sector);
                match kind {
                    VIRTIO_BLK_T_IN => self.read(mem, &writable, sector, data_len),
                    VIRTIO_BLK_T_OUT => self.write(mem, &readable, sector),
                    VIRTIO_BLK_T_FLUSH => match self.file.sync_data() {
                        Ok(()) => (VIRTIO_BLK_S_OK, 0),
                        Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                    },
                    VIRTIO_BLK_T_GET_ID => {
                        let n = data_len.min(self.serial.len() as u64);
                        match scatter(mem, &writable, &self.serial[..n as usize]) {
                            Ok(()) => (VIRTIO_BLK_S_OK, n),
                            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                        }
                    }
                    _ => (VIRTIO_BLK_S_UNSUPP, 0),
                }
            }
        };
        let status = status as u8;
        let written = mem.write_obj(status, GuestAddress(status_addr)).is_ok();
        Completion {
            used_len: (used + 1) as u32,
            status: written.then_some(status),
        }
    }

    /// Checks that `len` bytes at `sector` lie inside the disk; returns the
    /// byte offset.
    fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        (end <= self.capacity * SECTOR_SIZE && len <= MAX_REQUEST_BYTES).then_some(start)
    }

    fn read<M: GuestMemory>(
        &self,
        mem: &M,
        writable: &[Segment],
        sector: u64,
        len: u64,
    ) -> (u32, u64) {
        let Some(start) = self.byte_range(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let mut buf = vec![0u8; len as usize];
        if self.file.read_exact_at(&mut buf, start).is_err() {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        match scatter(mem, writable, &buf) {
            Ok(()) => (VIRTIO_BLK_S_OK, len),
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
        }
    }

    fn write<M: GuestMemory>(&self, mem: &M, readable: &[Segment], sector: u64) -> (u32, u64) {
        let total: u64 = readable.iter().map(|s| s.len as u64).sum();
        let len = total.saturating_sub(HEADER_LEN as u64);
        let Some(start) = self.byte_range(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let Ok(buf) = gather(mem, readable, HEADER_LEN as u64, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        match self.file.write_all_at(&buf, start) {
            Ok(()) => (VIRTIO_BLK_S_OK, 0),
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
        }
    }
}

/// Guest address of byte `off` of the concatenation of `segs`.
fn locate(segs: &[Segment], mut off: u64) -> Option<u64> {
    for s in segs {
        if off < s.len as u64 {
            return s.addr.checked_add(off);
        }
        off -= s.len as u64;
    }
    None
}

/// Calls `f(guest_addr, range)` for each piece of `len` bytes starting at
/// byte `skip` of the concatenation of `segs`.
fn for_each_piece<F>(segs: &[Segment], skip: u64, len: u64, mut f: F) -> Result<(), ()>
where
    F: FnMut(u64, std::ops::Range<usize>) -> Result<(), ()>,
{
    let mut skip = skip;
    let mut done = 0u64;
    for s in segs {
        if done == len {
            break;
        }
        let slen = s.len as u64;
        if skip >= slen {
            skip -= slen;
            continue;
        }
        let n = (slen - skip).min(len - done);
        let addr = s.addr.checked_add(skip).ok_or(())?;
        f(addr, done as usize..(done + n) as usize)?;
        done += n;
        skip = 0;
    }
    if done == len {
        Ok(())
    } else {
        Err(())
    }
}

/// Reads `len` bytes starting at byte `skip` of the readable buffers.
pub(crate) fn gather<M: GuestMemory>(
    mem: &M,
    segs: &[Segment],
    skip: u64,
    len: u64,
) -> Result<Vec<u8>, ()> {
    if len > MAX_REQUEST_BYTES {
        return Err(());
    }
    let mut buf = vec![0u8; len as usize];
    for_each_piece(segs, skip, len, |addr, r| {
        mem.read_slice(&mut buf[r], GuestAddress(addr))
            .map_err(|_| ())
    })?;
    Ok(buf)
}

/// Writes `data` to the start of the writable buffers.
pub(crate) fn scatter<M: GuestMemory>(mem: &M, segs: &[Segment], data: &[u8]) -> Result<(), ()> {
    for_each_piece(segs, 0, data.len() as u64, |addr, r| {
        mem.write_slice(&data[r], GuestAddress(addr))
            .map_err(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn setup(dir: &tempfile::TempDir) -> (Blk, GuestMemoryMmap) {
        let cfg = Config {
            backing: dir.path().join("disk"),
            capacity_sectors: Some(16),
            ..Config::default()
        };
        let blk = Blk::open(&cfg).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        (blk, mem)
    }

    fn header(mem: &GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(at)).unwrap();
        mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (blk, mem) = setup(&dir);
        assert_eq!(blk.capacity(), 16);
        header(&mem, 0x100, VIRTIO_BLK_T_OUT, 2);
        mem.write_slice(&[0xab; 512], GuestAddress(0x1000)).unwrap();
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0x1000,
                len: 512,
                write: false,
            },
            Segment {
                addr: 0x200,
                len: 1,
                write: true,
            },
        ];
        let c = blk.execute(&mem, &segs);
        assert_eq!(
            c,
            Completion {
                used_len: 1,
                status: Some(0)
            }
        );

        header(&mem, 0x100, VIRTIO_BLK_T_IN, 2);
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0x3000,
                len: 300,
                write: true,
            },
            Segment {
                addr: 0x4000,
                len: 213,
                write: true,
            },
        ];
        let c = blk.execute(&mem, &segs);
        assert_eq!(
            c,
            Completion {
                used_len: 513,
                status: Some(0)
            }
        );
        let mut out = [0u8; 300];
        mem.read_slice(&mut out, GuestAddress(0x3000)).unwrap();
        assert!(out.iter().all(|b| *b == 0xab));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x4000 + 212)).unwrap(), 0);
    }

    #[test]
    fn bad_requests_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let (blk, mem) = setup(&dir);
        // Past the end of the disk.
        header(&mem, 0x100, VIRTIO_BLK_T_IN, 16);
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0x3000,
                len: 513,
                write: true,
            },
        ];
        assert_eq!(
            blk.execute(&mem, &segs).status,
            Some(VIRTIO_BLK_S_IOERR as u8)
        );
        // Data buffer outside guest memory.
        header(&mem, 0x100, VIRTIO_BLK_T_IN, 0);
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0xffff_0000,
                len: 512,
                write: true,
            },
            Segment {
                addr: 0x200,
                len: 1,
                write: true,
            },
        ];
        assert_eq!(
            blk.execute(&mem, &segs).status,
            Some(VIRTIO_BLK_S_IOERR as u8)
        );
        // Unknown request type.
        header(&mem, 0x100, 99, 0);
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0x200,
                len: 1,
                write: true,
            },
        ];
        assert_eq!(
            blk.execute(&mem, &segs).status,
            Some(VIRTIO_BLK_S_UNSUPP as u8)
        );
        // No status byte at all.
        assert_eq!(blk.execute(&mem, &segs[..1]).status, None);
        // GET_ID.
        header(&mem, 0x100, VIRTIO_BLK_T_GET_ID, 0);
        let segs = [
            Segment {
                addr: 0x100,
                len: 16,
                write: false,
            },
            Segment {
                addr: 0x3000,
                len: 21,
                write: true,
            },
        ];
        let c = blk.execute(&mem, &segs);
        assert_eq!(c.used_len, 21);
        let mut id = [0u8; 7];
        mem.read_slice(&mut id, GuestAddress(0x3000)).unwrap();
        assert_eq!(&id, b"devsim0");
    }
}
