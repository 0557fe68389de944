// SPDX-License-Identifier: GPL-2.0

//! Codec of the virtio admin commands of write recording.
//!
//! An owner function offering [`VIRTIO_F_ADMIN_VQ`] has an admin virtqueue
//! (common configuration `admin_queue_index` at
//! [`COMMON_CFG_ADMIN_QUEUE_INDEX`], `admin_queue_num` at
//! [`COMMON_CFG_ADMIN_QUEUE_NUM`]). Each command is one descriptor chain, a
//! device-readable part followed by a device-writable part, all integers
//! little endian:
//!
//! ```text
//! readable  le16 opcode | le16 group_type | u8 reserved[12] | le64 group_member_id   (24 bytes)
//!           command-specific data
//! writable  le16 status | le16 status_qualifier | u8 reserved[4]                      (8 bytes)
//!           command-specific result
//! ```
//!
//! `used.len` is the number of bytes the device wrote into the writable part.
//! The command data and results of write recording:
//!
//! ```text
//! LIST_QUERY              result  le64 opcode bitmap[]
//! LIST_USE                data    le64 opcode bitmap[]
//! WRITE_RECORD_CAP_QUERY  result  le32 page_size_bitmap | le32 max_ranges | le32 record_capacity | le32 reserved
//! WRITE_RECORDS_START     data    le64 page_size | le32 count | u8 reserved[4] | count × { le64 iova | le64 page_count }
//! WRITE_RECORDS_STOP      -
//! WRITE_RECORDS_READ      data    le64 iova | le64 length
//!                         result  le32 count | le32 flags | count × le64 page iova
//! ```
//!
//! Encoders write into caller buffers and return the number of bytes
//! written; they check only that the values are representable, so the device
//! model's tests can also build invalid commands ([`validate_start`] and
//! [`read_window_valid`] check the protocol's rules). Parsers borrow their
//! input and never panic, whatever the bytes.

use core::fmt;

/// Feature bit of the admin virtqueue.
pub const VIRTIO_F_ADMIN_VQ: u32 = 41;
/// Offset of `le16 admin_queue_index` in the common configuration.
pub const COMMON_CFG_ADMIN_QUEUE_INDEX: usize = 60;
/// Offset of `le16 admin_queue_num` in the common configuration.
pub const COMMON_CFG_ADMIN_QUEUE_NUM: usize = 62;

/// Admin command opcodes.
pub mod opcode {
    /// List the opcodes the device supports for a group type (member id 0,
    /// no data; result: le64 opcode bitmap words).
    pub const LIST_QUERY: u16 = 0x0;
    /// Declare the opcodes the driver will use (member id 0; data: le64
    /// opcode bitmap words). Until it succeeds, the device rejects opcodes
    /// `>= 0x2`.
    pub const LIST_USE: u16 = 0x1;
    /// Query the write-recording capabilities. Provisional: 0x13–0x16 are
    /// this project's, not assigned upstream.
    pub const WRITE_RECORD_CAP_QUERY: u16 = 0x13;
    /// Start recording writes into IOVA ranges. Provisional (0x13–0x16).
    pub const WRITE_RECORDS_START: u16 = 0x14;
    /// Stop recording, discarding records and the overflow indication.
    /// Provisional (0x13–0x16).
    pub const WRITE_RECORDS_STOP: u16 = 0x15;
    /// Read and clear the records of a window. Provisional (0x13–0x16).
    pub const WRITE_RECORDS_READ: u16 = 0x16;
}

/// Admin group types.
pub mod group_type {
    /// SR-IOV: the owner is the PF, member ids are VF numbers `1..=NumVFs`.
    pub const SRIOV: u16 = 1;
    /// Slot (provisional, this project): the owner is function 0 of a
    /// multi-function slot, member ids are the other function numbers
    /// `1..=7`.
    pub const SLOT: u16 = 2;
}

/// Command status values (`le16 status`).
pub mod status {
    /// Success.
    pub const OK: u16 = 0;
    /// Try again.
    pub const EAGAIN: u16 = 11;
    /// Out of resources.
    pub const ENOMEM: u16 = 12;
    /// Invalid command; the qualifier says why.
    pub const EINVAL: u16 = 22;
}

/// Status qualifiers (`le16 status_qualifier`).
pub mod qualifier {
    /// No qualification.
    pub const OK: u16 = 0;
    /// The command is not valid in the current state.
    pub const INVALID_COMMAND: u16 = 1;
    /// The opcode is unsupported or not enabled by `LIST_USE`.
    pub const INVALID_OPCODE: u16 = 2;
    /// A field of the command data is invalid.
    pub const INVALID_FIELD: u16 = 3;
    /// The group type is not supported.
    pub const INVALID_GROUP: u16 = 4;
    /// The member id does not exist.
    pub const INVALID_MEMBER: u16 = 5;
    /// The device lacks a resource.
    pub const NORESOURCE: u16 = 6;
    /// Too many of something.
    pub const TOOMANY: u16 = 7;
}

/// Size of the command header (the start of the readable part).
pub const HEADER_LEN: usize = 24;
/// Size of the status (the start of the writable part).
pub const STATUS_LEN: usize = 8;
/// Size of the header of a `WRITE_RECORDS_READ` result.
pub const READ_RESULT_HEADER_LEN: usize = 8;
/// `WRITE_RECORDS_READ` result flag: records overlapping the window remain.
pub const READ_FLAG_MORE: u32 = 1;
/// `WRITE_RECORDS_READ` result flag: a write could not be recorded since
/// the flag was last reported; every started range must be treated as dirty.
pub const READ_FLAG_OVERFLOW: u32 = 2;

/// Size of the `WRITE_RECORD_CAP_QUERY` result.
pub const CAPS_LEN: usize = 16;
/// Size of the `WRITE_RECORDS_START` data before the entries.
pub const START_HEADER_LEN: usize = 16;
/// Size of one `WRITE_RECORDS_START` entry.
pub const START_ENTRY_LEN: usize = 16;
/// Size of the `WRITE_RECORDS_READ` data.
pub const READ_REQUEST_LEN: usize = 16;
/// Size of one `WRITE_RECORDS_READ` result entry.
pub const READ_ENTRY_LEN: usize = 8;
/// Smallest IOVA page size of write recording (bit 0 of the bitmap).
pub const MIN_PAGE_SIZE: u64 = 4096;

/// The opcodes of write recording as an opcode bitmap word.
pub const WRITE_RECORDING_OPCODES: u64 = (1 << opcode::WRITE_RECORD_CAP_QUERY)
    | (1 << opcode::WRITE_RECORDS_START)
    | (1 << opcode::WRITE_RECORDS_STOP)
    | (1 << opcode::WRITE_RECORDS_READ);

/// Why encoding or parsing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The output buffer is too small for the encoding.
    BufferTooSmall,
    /// More entries than a `le32` count holds.
    TooManyEntries,
    /// The input is shorter than its fixed part or than its count says.
    Truncated,
    /// A length is inconsistent: `WRITE_RECORDS_START` data not exactly
    /// `16 + 16 * count` bytes, or `used_len` beyond the writable part.
    BadLength,
    /// Capabilities with no page size (`page_size_bitmap == 0`).
    NoPageSize,
    /// Capabilities with no range (`max_ranges == 0`).
    NoRanges,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecError::BufferTooSmall => "output buffer too small",
            CodecError::TooManyEntries => "too many entries",
            CodecError::Truncated => "truncated",
            CodecError::BadLength => "inconsistent length",
            CodecError::NoPageSize => "no supported page size",
            CodecError::NoRanges => "no supported range",
        })
    }
}

/// Reads a little-endian integer of `N` bytes at `off`; zero where `buf`
/// ends (callers check lengths first).
fn le<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| buf.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

fn le16(buf: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(le(buf, off))
}

fn le32(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(le(buf, off))
}

fn le64(buf: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(le(buf, off))
}

/// Copies `bytes` to `out[off..]` (callers check lengths first).
fn put(out: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(d) = off
        .checked_add(bytes.len())
        .and_then(|end| out.get_mut(off..end))
    {
        d.copy_from_slice(bytes);
    }
}

/// The first `len` bytes of `out`, or [`CodecError::BufferTooSmall`].
fn room(out: &mut [u8], len: usize) -> Result<&mut [u8], CodecError> {
    out.get_mut(..len).ok_or(CodecError::BufferTooSmall)
}

/// The command header, the first [`HEADER_LEN`] bytes of the readable part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// One of [`opcode`].
    pub opcode: u16,
    /// One of [`group_type`].
    pub group_type: u16,
    /// The member the command is for (0 for `LIST_QUERY`/`LIST_USE`).
    pub member_id: u64,
}

impl Header {
    /// Writes the header (reserved bytes zero) into `out[..24]`; returns 24.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, CodecError> {
        let out = room(out, HEADER_LEN)?;
        put(out, 0, &self.opcode.to_le_bytes());
        put(out, 2, &self.group_type.to_le_bytes());
        put(out, 4, &[0; 12]);
        put(out, 16, &self.member_id.to_le_bytes());
        Ok(HEADER_LEN)
    }

    /// Parses the header at the start of `buf` (the command data follows at
    /// [`HEADER_LEN`]); the reserved bytes are ignored.
    pub fn parse(buf: &[u8]) -> Result<Header, CodecError> {
        if buf.len() < HEADER_LEN {
            return Err(CodecError::Truncated);
        }
        Ok(Header {
            opcode: le16(buf, 0),
            group_type: le16(buf, 2),
            member_id: le64(buf, 16),
        })
    }
}

/// Whether opcode bitmap word 0 has bit `op` set (opcodes `>= 64` are in
/// later words and report `false`).
pub fn has_opcode(bitmap: u64, op: u16) -> bool {
    op < 64 && bitmap & (1u64 << op) != 0
}

/// Writes the `LIST_USE` data, one le64 opcode bitmap word; returns 8.
pub fn encode_opcode_bitmap(bitmap: u64, out: &mut [u8]) -> Result<usize, CodecError> {
    let out = room(out, 8)?;
    put(out, 0, &bitmap.to_le_bytes());
    Ok(8)
}

/// The first opcode bitmap word of a `LIST_QUERY` result (opcodes 0–63);
/// [`CodecError::Truncated`] below 8 bytes.
pub fn parse_opcode_bitmap(result: &[u8]) -> Result<u64, CodecError> {
    if result.len() < 8 {
        return Err(CodecError::Truncated);
    }
    Ok(le64(result, 0))
}

/// The `WRITE_RECORD_CAP_QUERY` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRecordCaps {
    /// Supported IOVA page sizes: bit `n` is `4096 << n`.
    pub page_size_bitmap: u32,
    /// Largest number of entries of a `WRITE_RECORDS_START`.
    pub max_ranges: u32,
    /// Distinct page records the device stores per member.
    pub record_capacity: u32,
}

impl WriteRecordCaps {
    /// Parses the result; the first 12 of its 16 bytes are needed (the
    /// reserved word is ignored). A device with no page size or no range
    /// cannot record: [`CodecError::NoPageSize`], [`CodecError::NoRanges`].
    pub fn parse(result: &[u8]) -> Result<Self, CodecError> {
        if result.len() < 12 {
            return Err(CodecError::Truncated);
        }
        let caps = WriteRecordCaps {
            page_size_bitmap: le32(result, 0),
            max_ranges: le32(result, 4),
            record_capacity: le32(result, 8),
        };
        if caps.page_size_bitmap == 0 {
            return Err(CodecError::NoPageSize);
        }
        if caps.max_ranges == 0 {
            return Err(CodecError::NoRanges);
        }
        Ok(caps)
    }

    /// Writes the result (reserved word zero) into `out[..16]`; returns 16.
    /// For the device model and tests.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, CodecError> {
        let out = room(out, CAPS_LEN)?;
        put(out, 0, &self.page_size_bitmap.to_le_bytes());
        put(out, 4, &self.max_ranges.to_le_bytes());
        put(out, 8, &self.record_capacity.to_le_bytes());
        put(out, 12, &[0; 4]);
        Ok(CAPS_LEN)
    }

    /// The supported page sizes in bytes, ascending.
    pub fn page_sizes(&self) -> impl Iterator<Item = u64> {
        let bitmap = self.page_size_bitmap;
        (0..32u32)
            .filter(move |n| bitmap & (1 << n) != 0)
            .map(|n| MIN_PAGE_SIZE << n)
    }

    /// Whether `page_size` is one of [`Self::page_sizes`].
    pub fn supports_page_size(&self, page_size: u64) -> bool {
        if !page_size.is_power_of_two() || page_size < MIN_PAGE_SIZE {
            return false;
        }
        let bit = page_size.trailing_zeros() - MIN_PAGE_SIZE.trailing_zeros();
        bit < 32 && self.page_size_bitmap & (1 << bit) != 0
    }
}

/// One IOVA range of `WRITE_RECORDS_START`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartEntry {
    /// First byte, a multiple of the page size.
    pub iova: u64,
    /// Number of pages, at least 1.
    pub page_count: u64,
}

/// Size of the `WRITE_RECORDS_START` data of `count` entries,
/// `16 + 16 * count`; `None` on overflow.
pub fn start_len(count: usize) -> Option<usize> {
    count
        .checked_mul(START_ENTRY_LEN)?
        .checked_add(START_HEADER_LEN)
}

/// Writes the `WRITE_RECORDS_START` data into `out[..16 + 16 * count]` and
/// returns its length. Only representability is checked
/// ([`CodecError::TooManyEntries`] beyond `u32::MAX` entries); the rules of
/// the command are [`validate_start`]'s.
pub fn encode_start(
    page_size: u64,
    entries: &[StartEntry],
    out: &mut [u8],
) -> Result<usize, CodecError> {
    let count = u32::try_from(entries.len()).map_err(|_| CodecError::TooManyEntries)?;
    let len = start_len(entries.len()).ok_or(CodecError::TooManyEntries)?;
    let out = room(out, len)?;
    put(out, 0, &page_size.to_le_bytes());
    put(out, 8, &count.to_le_bytes());
    put(out, 12, &[0; 4]);
    for (e, dst) in entries
        .iter()
        .zip(out[START_HEADER_LEN..].chunks_exact_mut(START_ENTRY_LEN))
    {
        put(dst, 0, &e.iova.to_le_bytes());
        put(dst, 8, &e.page_count.to_le_bytes());
    }
    Ok(len)
}

/// The entries of a parsed `WRITE_RECORDS_START`, in order.
#[derive(Clone, Debug)]
pub struct StartEntries<'a> {
    rest: &'a [u8],
}

impl Iterator for StartEntries<'_> {
    type Item = StartEntry;

    fn next(&mut self) -> Option<StartEntry> {
        let (e, rest) = self.rest.split_at_checked(START_ENTRY_LEN)?;
        self.rest = rest;
        Some(StartEntry {
            iova: le64(e, 0),
            page_count: le64(e, 8),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() / START_ENTRY_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for StartEntries<'_> {}

/// Parses `WRITE_RECORDS_START` data into the page size and the entries.
/// [`CodecError::Truncated`] below 16 bytes, [`CodecError::BadLength`]
/// unless the data is exactly `16 + 16 * count` bytes. The entries are not
/// checked against the rules ([`validate_start`]).
pub fn parse_start(data: &[u8]) -> Result<(u64, StartEntries<'_>), CodecError> {
    if data.len() < START_HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    let count = usize::try_from(le32(data, 8)).map_err(|_| CodecError::BadLength)?;
    if start_len(count) != Some(data.len()) {
        return Err(CodecError::BadLength);
    }
    Ok((
        le64(data, 0),
        StartEntries {
            rest: &data[START_HEADER_LEN..],
        },
    ))
}

/// Which rule of `WRITE_RECORDS_START` a command breaks (the device answers
/// `EINVAL`/`INVALID_FIELD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFault {
    /// The page size is not a supported power of two.
    PageSize,
    /// No entry, or more than `max_ranges`.
    Count,
    /// Entry `n` starts before the end of the previous one.
    Order(usize),
    /// Entry `n`'s IOVA is not a multiple of the page size.
    Misaligned(usize),
    /// Entry `n` has no page.
    NoPages(usize),
    /// Entry `n` ends beyond `u64::MAX` (its end, `2^64` included, does not
    /// fit in 64 bits).
    Overflow(usize),
}

impl fmt::Display for StartFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFault::PageSize => f.write_str("unsupported page size"),
            StartFault::Count => f.write_str("bad entry count"),
            StartFault::Order(n) => write!(f, "entry {n} overlaps or precedes the previous one"),
            StartFault::Misaligned(n) => write!(f, "entry {n} misaligned"),
            StartFault::NoPages(n) => write!(f, "entry {n} has no page"),
            StartFault::Overflow(n) => write!(f, "entry {n} overflows"),
        }
    }
}

/// Checks a `WRITE_RECORDS_START` against the protocol's rules and the
/// device's capabilities: supported power-of-two page size, `1 <= count <=
/// max_ranges`, entries ascending and non-overlapping, IOVAs aligned, at
/// least one page each, `iova + page_count * page_size` fitting in 64 bits.
/// For the device model, and for the driver to check what it sends.
pub fn validate_start<I>(
    page_size: u64,
    entries: I,
    caps: &WriteRecordCaps,
) -> Result<(), StartFault>
where
    I: IntoIterator<Item = StartEntry>,
{
    if !caps.supports_page_size(page_size) {
        return Err(StartFault::PageSize);
    }
    let mask = page_size - 1;
    let mut prev_end = None::<u64>;
    let mut count = 0usize;
    for (n, e) in entries.into_iter().enumerate() {
        count = n + 1;
        if count as u64 > u64::from(caps.max_ranges) {
            return Err(StartFault::Count);
        }
        if e.iova & mask != 0 {
            return Err(StartFault::Misaligned(n));
        }
        if e.page_count == 0 {
            return Err(StartFault::NoPages(n));
        }
        let end = e
            .page_count
            .checked_mul(page_size)
            .and_then(|len| e.iova.checked_add(len))
            .ok_or(StartFault::Overflow(n))?;
        if prev_end.is_some_and(|p| e.iova < p) {
            return Err(StartFault::Order(n));
        }
        prev_end = Some(end);
    }
    if count == 0 {
        return Err(StartFault::Count);
    }
    Ok(())
}

/// Writes the `WRITE_RECORDS_READ` data into `out[..16]`; returns 16.
pub fn encode_read(iova: u64, length: u64, out: &mut [u8]) -> Result<usize, CodecError> {
    let out = room(out, READ_REQUEST_LEN)?;
    put(out, 0, &iova.to_le_bytes());
    put(out, 8, &length.to_le_bytes());
    Ok(READ_REQUEST_LEN)
}

/// Parses `WRITE_RECORDS_READ` data into `(iova, length)`;
/// [`CodecError::Truncated`] below 16 bytes. The window is not checked
/// ([`read_window_valid`]).
pub fn parse_read_request(data: &[u8]) -> Result<(u64, u64), CodecError> {
    if data.len() < READ_REQUEST_LEN {
        return Err(CodecError::Truncated);
    }
    Ok((le64(data, 0), le64(data, 8)))
}

/// Whether a `WRITE_RECORDS_READ` window is valid: `length >= 1` and
/// `iova + length` fits in 64 bits.
pub fn read_window_valid(iova: u64, length: u64) -> bool {
    length != 0 && iova.checked_add(length).is_some()
}

/// The status of a completed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// One of [`status`].
    pub status: u16,
    /// One of [`qualifier`].
    pub qualifier: u16,
}

impl Completion {
    /// Whether the command succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == status::OK
    }

    /// Writes the status (reserved bytes zero) into `out[..8]`; returns 8.
    /// For the device model and tests.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, CodecError> {
        let out = room(out, STATUS_LEN)?;
        put(out, 0, &self.status.to_le_bytes());
        put(out, 2, &self.qualifier.to_le_bytes());
        put(out, 4, &[0; 4]);
        Ok(STATUS_LEN)
    }
}

/// Parses the writable part of a completed command, `used_len` being the
/// used element's length: checks `STATUS_LEN <= used_len <= writable.len()`
/// ([`CodecError::Truncated`] below, [`CodecError::BadLength`] beyond) and
/// returns the status and the result bytes `writable[8..used_len]`.
pub fn parse_completion(writable: &[u8], used_len: u32) -> Result<(Completion, &[u8]), CodecError> {
    let used = usize::try_from(used_len).map_err(|_| CodecError::BadLength)?;
    if used < STATUS_LEN {
        return Err(CodecError::Truncated);
    }
    let result = writable
        .get(STATUS_LEN..used)
        .ok_or(CodecError::BadLength)?;
    Ok((
        Completion {
            status: le16(writable, 0),
            qualifier: le16(writable, 2),
        },
        result,
    ))
}

/// A parsed `WRITE_RECORDS_READ` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRecords<'a> {
    /// [`READ_FLAG_MORE`], [`READ_FLAG_OVERFLOW`]; other bits are ignored.
    pub flags: u32,
    entries: &'a [u8],
}

impl<'a> ReadRecords<'a> {
    /// Parses a result: le32 count, le32 flags, count le64 page IOVAs.
    /// [`CodecError::Truncated`] if the bytes present hold fewer than
    /// `count` entries; bytes after them are ignored.
    pub fn parse(result: &'a [u8]) -> Result<ReadRecords<'a>, CodecError> {
        if result.len() < READ_RESULT_HEADER_LEN {
            return Err(CodecError::Truncated);
        }
        let count = usize::try_from(le32(result, 0)).map_err(|_| CodecError::Truncated)?;
        let entries = count
            .checked_mul(READ_ENTRY_LEN)
            .and_then(|n| n.checked_add(READ_RESULT_HEADER_LEN))
            .and_then(|end| result.get(READ_RESULT_HEADER_LEN..end))
            .ok_or(CodecError::Truncated)?;
        Ok(ReadRecords {
            flags: le32(result, 4),
            entries,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len() / READ_ENTRY_LEN
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.entries.len() < READ_ENTRY_LEN
    }

    /// The records, page IOVAs as the device sent them (unchecked: see
    /// [`crate::write_records::apply_records`]).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .chunks_exact(READ_ENTRY_LEN)
            .map(|e| le64(e, 0))
    }

    /// Whether records overlapping the window remain (read again).
    pub fn more(&self) -> bool {
        self.flags & READ_FLAG_MORE != 0
    }

    /// Whether a write was lost: every started range must be reported dirty.
    pub fn overflow(&self) -> bool {
        self.flags & READ_FLAG_OVERFLOW != 0
    }
}

/// Writes a `WRITE_RECORDS_READ` result into `out[..8 + 8 * count]` and
/// returns its length. For the device model and tests.
pub fn encode_read_records(
    flags: u32,
    entries: &[u64],
    out: &mut [u8],
) -> Result<usize, CodecError> {
    let count = u32::try_from(entries.len()).map_err(|_| CodecError::TooManyEntries)?;
    let len = entries
        .len()
        .checked_mul(READ_ENTRY_LEN)
        .and_then(|n| n.checked_add(READ_RESULT_HEADER_LEN))
        .ok_or(CodecError::TooManyEntries)?;
    let out = room(out, len)?;
    put(out, 0, &count.to_le_bytes());
    put(out, 4, &flags.to_le_bytes());
    for (e, dst) in entries
        .iter()
        .zip(out[READ_RESULT_HEADER_LEN..].chunks_exact_mut(READ_ENTRY_LEN))
    {
        put(dst, 0, &e.to_le_bytes());
    }
    Ok(len)
}

/// Most records a device may return in a writable part of `writable_len`
/// bytes: `(writable_len - 8 - 8) / 8`, zero if smaller, at most `u32::MAX`.
pub fn max_read_entries(writable_len: usize) -> usize {
    let n = writable_len.saturating_sub(STATUS_LEN + READ_RESULT_HEADER_LEN) / READ_ENTRY_LEN;
    n.min(u32::MAX as usize)
}

/// Writable part size for a `WRITE_RECORDS_READ` returning up to `entries`
/// records: `8 + 8 + 8 * entries`; `None` on overflow.
pub fn read_writable_len(entries: usize) -> Option<usize> {
    entries
        .checked_mul(READ_ENTRY_LEN)?
        .checked_add(STATUS_LEN + READ_RESULT_HEADER_LEN)
}
