// SPDX-License-Identifier: GPL-2.0
//! The owner's admin virtqueue: admin write recording commands.
//!
//! Each command is one descriptor chain, a device-readable part then a
//! device-writable part, each split over any number of descriptors
//! (gathered and scattered here). Little endian throughout:
//!
//! ```text
//! readable:  le16 opcode; le16 group_type; u8 reserved[12]; le64 group_member_id;
//!            command_specific_data[]
//! writable:  le16 status; le16 status_qualifier; u8 reserved[4];
//!            command_specific_result[]
//! ```
//!
//! The used length is the number of bytes written into the writable part:
//! 8 plus the result. A chain whose writable part cannot hold the 8-byte
//! status completes with used length 0 and nothing written.
//!
//! Checks, in order (the first that fails gives the status):
//!
//! 1. readable part shorter than the 24-byte header, or unreadable, or
//!    longer than [`MAX_COMMAND_BYTES`]: EINVAL/INVALID_COMMAND;
//! 2. group type other than SLOT (0x2): EINVAL/INVALID_GROUP;
//! 3. opcode not supported: EINVAL/INVALID_OPCODE;
//! 4. opcode >= 0x2 not in the last successful LIST_USE (none yet after
//!    a reset of the owner): EINVAL/INVALID_OPCODE;
//! 5. member id: 0 for LIST_QUERY/LIST_USE, the member's id for the
//!    others, else EINVAL/INVALID_MEMBER;
//! 6. the command's own rules (state first: START while recording and
//!    READ while not recording are EINVAL/INVALID_COMMAND; then fields,
//!    EINVAL/INVALID_FIELD). A result that does not fit the writable part
//!    (LIST_QUERY: one word; CAP_QUERY: 16 bytes; READ: count and flags) is
//!    EINVAL/INVALID_FIELD.
//!
//! An error completes with the 8-byte status alone and changes nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemory;

use crate::blk::{gather, scatter, Segment};
use crate::config::Config;
use crate::recording::WriteRecorder;
use crate::stats::Stats;

/// Length of the readable command header.
pub const HEADER_LEN: u64 = 24;
/// Length of the writable status header.
pub const STATUS_LEN: u64 = 8;
/// Longest readable part the device reads (a START of 65536 ranges fits).
pub const MAX_COMMAND_BYTES: u64 = 2 << 20;

/// `VIRTIO_ADMIN_CMD_LIST_QUERY`.
pub const OP_LIST_QUERY: u16 = 0x0;
/// `VIRTIO_ADMIN_CMD_LIST_USE`.
pub const OP_LIST_USE: u16 = 0x1;
/// `WRITE_RECORD_CAP_QUERY` (provisional).
pub const OP_CAP_QUERY: u16 = 0x13;
/// `WRITE_RECORDS_START` (provisional).
pub const OP_START: u16 = 0x14;
/// `WRITE_RECORDS_STOP` (provisional).
pub const OP_STOP: u16 = 0x15;
/// `WRITE_RECORDS_READ` (provisional).
pub const OP_READ: u16 = 0x16;
/// Every opcode the device supports (for the SLOT group).
pub const SUPPORTED_OPCODES: [u16; 6] = [
    OP_LIST_QUERY,
    OP_LIST_USE,
    OP_CAP_QUERY,
    OP_START,
    OP_STOP,
    OP_READ,
];
/// The first word of the LIST_QUERY bitmap.
pub const OPCODE_BITMAP: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < SUPPORTED_OPCODES.len() {
        m |= 1 << SUPPORTED_OPCODES[i];
        i += 1;
    }
    m
};

/// Group type SR-IOV (not supported by the model).
pub const GROUP_SRIOV: u16 = 0x1;
/// Group type SLOT: the functions of one multi-function slot.
pub const GROUP_SLOT: u16 = 0x2;

/// Status OK.
pub const S_OK: u16 = 0;
/// Status EAGAIN.
pub const S_EAGAIN: u16 = 11;
/// Status ENOMEM.
pub const S_ENOMEM: u16 = 12;
/// Status EINVAL.
pub const S_EINVAL: u16 = 22;
/// Status of `--fault-admin-status` (not defined by the specification).
pub const FAULT_STATUS: u16 = 0x7fff;

/// Qualifier OK.
pub const Q_OK: u16 = 0;
/// Qualifier INVALID_COMMAND.
pub const Q_INVALID_COMMAND: u16 = 1;
/// Qualifier INVALID_OPCODE.
pub const Q_INVALID_OPCODE: u16 = 2;
/// Qualifier INVALID_FIELD.
pub const Q_INVALID_FIELD: u16 = 3;
/// Qualifier INVALID_GROUP.
pub const Q_INVALID_GROUP: u16 = 4;
/// Qualifier INVALID_MEMBER.
pub const Q_INVALID_MEMBER: u16 = 5;
/// Qualifier NORESOURCE.
pub const Q_NORESOURCE: u16 = 6;
/// Qualifier TOOMANY.
pub const Q_TOOMANY: u16 = 7;

/// READ flags bit 0: records overlapping the window remain.
pub const READ_MORE: u32 = 1 << 0;
/// READ flags bit 1: a write could not be recorded (all started ranges dirty).
pub const READ_OVERFLOW: u32 = 1 << 1;

/// Smallest record page size (bit 0 of the page size bitmap).
pub const RECORD_PAGE_SHIFT: u32 = 12;
/// LIST_QUERY writes at most this many bitmap words (every 16-bit opcode).
const MAX_BITMAP_WORDS: u64 = 1024;

/// How a command ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Complete it with `used_len` (bytes written into the writable part);
    /// `status` is `None` when nothing could be written. `reset_after`: the
    /// owner must then behave as reset (`--fault-owner-reset-after-reads`).
    Done {
        /// Used length.
        used_len: u32,
        /// Status written.
        status: Option<u16>,
        /// Reset the owner after completing.
        reset_after: bool,
    },
    /// Never complete it (`--fault-admin-hang`).
    Hang,
}

/// An error status and qualifier.
type Fail = (u16, u16);

fn invalid(q: u16) -> Fail {
    (S_EINVAL, q)
}

/// What is fixed at creation.
#[derive(Clone, Debug)]
struct Options {
    member_id: u64,
    page_sizes: u32,
    ranges: u32,
    capacity: u32,
    hang: Option<u16>,
    fault_status: Option<u16>,
    stray_records: bool,
    reset_after_reads: Option<u64>,
}

/// State an owner reset clears, except `reads`.
#[derive(Debug, Default)]
struct State {
    /// The opcode bitmap of the last successful LIST_USE for the SLOT group.
    used: Option<Vec<u64>>,
    /// READ commands completed (for `--fault-owner-reset-after-reads`).
    reads: u64,
}

/// The admin command processor of the owner.
pub struct Admin {
    opts: Options,
    state: Mutex<State>,
    member: Arc<WriteRecorder>,
    /// The process's statistics (the member's): the admin counters live there.
    stats: Arc<Stats>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A parsed command.
struct Command<'a> {
    opcode: u16,
    group: u16,
    member: u64,
    /// The command-specific data.
    data: &'a [u8],
    /// Room for the result after the status header.
    room: u64,
}

impl Admin {
    /// The processor for an owner whose only member records into `member`.
    /// `stats` are the process's counters.
    pub fn new(cfg: &Config, member: Arc<WriteRecorder>, stats: Arc<Stats>) -> Self {
        Self {
            opts: Options {
                member_id: cfg.member_id,
                page_sizes: cfg.record_page_sizes,
                ranges: cfg.record_ranges,
                capacity: cfg.record_capacity,
                hang: cfg.faults.admin_hang,
                fault_status: cfg.faults.admin_status,
                stray_records: cfg.faults.stray_records,
                reset_after_reads: cfg.faults.owner_reset_after_reads,
            },
            state: Mutex::new(State::default()),
            member,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The member's record store.
    pub fn member(&self) -> &Arc<WriteRecorder> {
        &self.member
    }

    /// Owner reset: LIST_USE is forgotten, recording stops for every
    /// member and records and overflow indications are discarded.
    pub fn reset(&self) {
        self.lock().used = None;
        self.member.stop();
    }

    /// Executes the command in `segs` (one descriptor chain).
    pub fn execute<M: GuestMemory>(&self, mem: &M, segs: &[Segment]) -> Outcome {
        Stats::add(&self.stats.admin_commands, 1);
        let readable: Vec<Segment> = segs.iter().copied().filter(|s| !s.write).collect();
        let writable: Vec<Segment> = segs.iter().copied().filter(|s| s.write).collect();
        let rlen: u64 = readable.iter().map(|s| s.len as u64).sum();
        let wlen: u64 = writable.iter().map(|s| s.len as u64).sum();
        if wlen < STATUS_LEN {
            // No room for the status: nothing can be reported.
            Stats::add(&self.stats.admin_commands_failed, 1);
            return Outcome::Done {
                used_len: 0,
                status: None,
                reset_after: false,
            };
        }
        let bytes = if (HEADER_LEN..=MAX_COMMAND_BYTES).contains(&rlen) {
            gather(mem, &readable, 0, rlen).ok()
        } else {
            None
        };
        let mut opcode = None;
        let result = match &bytes {
            None => Err(invalid(Q_INVALID_COMMAND)),
            Some(b) => {
                let cmd = Command {
                    opcode: le16(b, 0),
                    group: le16(b, 2),
                    member: le64(b, 16),
                    data: &b[HEADER_LEN as usize..],
                    room: wlen - STATUS_LEN,
                };
                opcode = Some(cmd.opcode);
                if self.opts.hang == Some(cmd.opcode) {
                    return Outcome::Hang;
                }
                if self.opts.fault_status == Some(cmd.opcode) {
                    Err((FAULT_STATUS, Q_OK))
                } else {
                    self.dispatch(&cmd)
                }
            }
        };
        let (status, qualifier, payload) = match result {
            Ok(payload) => (S_OK, Q_OK, payload),
            Err((s, q)) => (s, q, Vec::new()),
        };
        let mut out = Vec::with_capacity(STATUS_LEN as usize + payload.len());
        out.extend_from_slice(&status.to_le_bytes());
        out.extend_from_slice(&qualifier.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&payload);
        let written = scatter(mem, &writable, &out).is_ok();
        if status != S_OK || !written {
            Stats::add(&self.stats.admin_commands_failed, 1);
        }
        let mut reset_after = false;
        if opcode == Some(OP_READ) {
            let mut st = self.lock();
            st.reads += 1;
            reset_after = self.opts.reset_after_reads == Some(st.reads);
        }
        Outcome::Done {
            used_len: if written { out.len() as u32 } else { 0 },
            status: written.then_some(status),
            reset_after,
        }
    }

    fn dispatch(&self, c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        if c.group != GROUP_SLOT {
            return Err(invalid(Q_INVALID_GROUP));
        }
        if !SUPPORTED_OPCODES.contains(&c.opcode) {
            return Err(invalid(Q_INVALID_OPCODE));
        }
        if c.opcode >= 2 {
            let st = self.lock();
            let word = st
                .used
                .as_ref()
                .and_then(|u| u.get(c.opcode as usize / 64).copied())
                .unwrap_or(0);
            if word & (1 << (c.opcode % 64)) == 0 {
                return Err(invalid(Q_INVALID_OPCODE));
            }
        }
        let want_member = if c.opcode < 2 { 0 } else { self.opts.member_id };
        if c.member != want_member {
            return Err(invalid(Q_INVALID_MEMBER));
        }
        match c.opcode {
            OP_LIST_QUERY => Self::list_query(c),
            OP_LIST_USE => self.list_use(c),
            OP_CAP_QUERY => self.cap_query(c),
            OP_START => self.start(c),
            OP_STOP => {
                self.member.stop();
                Ok(Vec::new())
            }
            _ => self.read(c),
        }
    }

    fn list_query(c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        let words = (c.room / 8).min(MAX_BITMAP_WORDS);
        if words == 0 {
            return Err(invalid(Q_INVALID_FIELD));
        }
        let mut out = vec![0u8; words as usize * 8];
        out[..8].copy_from_slice(&OPCODE_BITMAP.to_le_bytes());
        Ok(out)
    }

    fn list_use(&self, c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        if c.data.is_empty() || c.data.len() % 8 != 0 {
            return Err(invalid(Q_INVALID_FIELD));
        }
        let words: Vec<u64> = c.data.chunks_exact(8).map(|w| le64(w, 0)).collect();
        let unsupported = words.iter().enumerate().any(|(i, &w)| {
            let known = if i == 0 { OPCODE_BITMAP } else { 0 };
            w & !known != 0
        });
        if unsupported {
            return Err(invalid(Q_INVALID_FIELD));
        }
        self.lock().used = Some(words);
        Ok(Vec::new())
    }

    fn cap_query(&self, c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        if c.room < 16 {
            return Err(invalid(Q_INVALID_FIELD));
        }
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.opts.page_sizes.to_le_bytes());
        out.extend_from_slice(&self.opts.ranges.to_le_bytes());
        out.extend_from_slice(&self.opts.capacity.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        Ok(out)
    }

    fn start(&self, c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        if self.member.recording() {
            return Err(invalid(Q_INVALID_COMMAND));
        }
        let field = || invalid(Q_INVALID_FIELD);
        let d = c.data;
        if d.len() < 16 {
            return Err(field());
        }
        let page_size = le64(d, 0);
        let count = le32(d, 8);
        if !page_size.is_power_of_two() || page_size < 1 << RECORD_PAGE_SHIFT {
            return Err(field());
        }
        let shift = page_size.trailing_zeros();
        let bit = shift - RECORD_PAGE_SHIFT;
        if bit >= 32 || self.opts.page_sizes & (1 << bit) == 0 {
            return Err(field());
        }
        if count == 0 || count > self.opts.ranges {
            return Err(field());
        }
        if d.len() as u64 != 16 + 16 * count as u64 {
            return Err(field());
        }
        let mut ranges = Vec::with_capacity(count as usize);
        let mut prev_end = 0u64;
        for (i, e) in d[16..].chunks_exact(16).enumerate() {
            let iova = le64(e, 0);
            let pages = le64(e, 8);
            let end = pages
                .checked_mul(page_size)
                .and_then(|len| iova.checked_add(len))
                .ok_or_else(field)?;
            if pages == 0 || iova % page_size != 0 || (i > 0 && iova < prev_end) {
                return Err(field());
            }
            ranges.push((iova, end));
            prev_end = end;
        }
        if !self.member.start(shift, ranges) {
            return Err(invalid(Q_INVALID_COMMAND));
        }
        Stats::add(&self.stats.write_records_started, 1);
        Ok(Vec::new())
    }

    fn read(&self, c: &Command<'_>) -> Result<Vec<u8>, Fail> {
        let Some(page_size) = self.member.page_size() else {
            return Err(invalid(Q_INVALID_COMMAND));
        };
        let field = || invalid(Q_INVALID_FIELD);
        if c.data.len() < 16 || c.room < 8 {
            return Err(field());
        }
        let iova = le64(c.data, 0);
        let length = le64(c.data, 8);
        let end = iova.checked_add(length).ok_or_else(field)?;
        if length == 0 {
            return Err(field());
        }
        let slots = ((c.room - 8) / 8).min(u32::MAX as u64) as usize;
        // The stray record of the fault takes one slot, if there are two.
        let stray = self.opts.stray_records && slots >= 2;
        let max = if stray { slots - 1 } else { slots };
        let out = self
            .member
            .read(iova, end, max)
            .ok_or_else(|| invalid(Q_INVALID_COMMAND))?;
        let mut entries = out.pages;
        if stray && !entries.is_empty() {
            // The page after the one holding the window's last byte.
            if let Some(p) = ((end - 1) & !(page_size - 1)).checked_add(page_size) {
                entries.push(p);
            }
        }
        let mut flags = 0;
        if out.more {
            flags |= READ_MORE;
        }
        if out.overflow {
            flags |= READ_OVERFLOW;
        }
        let mut res = Vec::with_capacity(8 + 8 * entries.len());
        res.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        res.extend_from_slice(&flags.to_le_bytes());
        for e in entries {
            res.extend_from_slice(&e.to_le_bytes());
        }
        Ok(res)
    }

    /// READ commands completed so far.
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }
}
