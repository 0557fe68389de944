// SPDX-License-Identifier: GPL-2.0

//! Migration stream format, version 1.
//!
//! The data read from a saving file (and written to a resuming file) is a
//! sequence of *frames*. A source sends one optional pre-copy frame, holding
//! only the device identity so the destination can refuse an incompatible
//! stream early, followed by one final frame with the complete device state.
//!
//! A frame is, with all integers little endian:
//!
//! ```text
//! header   magic "VVMS" | le16 version (1) | le16 flags | le32 total_length | le32 reserved
//! sections le16 type | le16 flags (bit 0: mandatory) | le32 length | payload, zero padded to 8
//! trailer  le32 CRC-32 (IEEE) of every byte of the frame before it
//! ```
//!
//! `total_length` counts the whole frame (header, sections and CRC). Exactly
//! one of [`FRAME_PRECOPY`] and [`FRAME_FINAL`] is set in the header flags.
//! The first section of every frame is [`SECTION_DEVICE_IDENTITY`]. Unknown
//! sections are skipped unless marked mandatory, which fails the parse.
//!
//! [`FrameWriter`] encodes into a caller buffer without allocating and
//! reports the size it needed when the buffer is too small, so
//! [`final_frame_len`] or a dry run on an empty buffer sizes it in advance.
//! [`Frame::parse`] validates a whole frame (CRC, lengths, duplicates,
//! required sections, limits) before any of it is used, and returns views
//! that borrow the input.

use core::fmt;

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"VVMS";
/// Format version described here.
pub const VERSION: u16 = 1;
/// Size of the frame header.
pub const HEADER_LEN: usize = 16;
/// Size of a section header.
pub const SECTION_HEADER_LEN: usize = 8;
/// Size of the CRC trailer.
pub const CRC_LEN: usize = 4;
/// Alignment of section payloads.
pub const SECTION_ALIGN: usize = 8;

/// Frame flag: a pre-copy frame (device identity only).
pub const FRAME_PRECOPY: u16 = 1 << 0;
/// Frame flag: the final frame with the complete device state.
pub const FRAME_FINAL: u16 = 1 << 1;

/// Section flag: the reader must understand the section or fail.
pub const SECTION_MANDATORY: u16 = 1 << 0;

/// Section type: [`DeviceIdentity`].
pub const SECTION_DEVICE_IDENTITY: u16 = 1;
/// Section type: [`DriverState`] (negotiated features and status).
pub const SECTION_DRIVER_STATE: u16 = 2;
/// Section type: MSI-X vector of configuration changes (`le16`, padded).
pub const SECTION_MSIX_CONFIG: u16 = 3;
/// Section type: [`QueueState`], one per queue.
pub const SECTION_QUEUE: u16 = 4;
/// Section type: raw device-specific configuration space.
pub const SECTION_DEVICE_CONFIG: u16 = 5;
/// Section type: [`Selectors`], the guest's selector registers (optional: a reader that
/// does not know it leaves the destination's selectors at their reset values).
pub const SECTION_SELECTORS: u16 = 6;

/// Payload length of [`SECTION_DEVICE_IDENTITY`].
pub const IDENTITY_LEN: usize = 32;
/// Payload length of [`SECTION_DRIVER_STATE`].
pub const DRIVER_STATE_LEN: usize = 16;
/// Payload length of [`SECTION_MSIX_CONFIG`].
pub const MSIX_CONFIG_LEN: usize = 8;
/// Payload length of [`SECTION_QUEUE`].
pub const QUEUE_LEN: usize = 40;
/// Payload length of [`SECTION_SELECTORS`].
pub const SELECTORS_LEN: usize = 16;

/// Largest number of queues a stream may describe.
pub const MAX_QUEUES: usize = 1024;
/// Largest device-specific configuration a stream may carry.
pub const MAX_DEVICE_CONFIG_LEN: usize = 4096;
/// Largest frame accepted or produced (room for optional extensions).
pub const MAX_FRAME_LEN: usize = 128 * 1024;

/// Length of a section with a payload of `payload` bytes, padding included
/// (saturating at `usize::MAX`).
pub const fn section_len(payload: usize) -> usize {
    SECTION_HEADER_LEN.saturating_add(padded(payload))
}

const fn padded(len: usize) -> usize {
    len.div_ceil(SECTION_ALIGN).saturating_mul(SECTION_ALIGN)
}

/// Length of a pre-copy frame as written by [`encode_precopy`].
pub const PRECOPY_FRAME_LEN: usize = HEADER_LEN + section_len(IDENTITY_LEN) + CRC_LEN;

/// Length of a final frame as written by [`encode_final`] for a device with
/// `num_queues` queues and `device_config_len` bytes of device config
/// (saturating; [`encode_final`] refuses frames above [`MAX_FRAME_LEN`]).
pub const fn final_frame_len(num_queues: usize, device_config_len: usize) -> usize {
    let fixed = HEADER_LEN
        + section_len(IDENTITY_LEN)
        + section_len(DRIVER_STATE_LEN)
        + section_len(MSIX_CONFIG_LEN)
        + section_len(SELECTORS_LEN)
        + CRC_LEN;
    fixed
        .saturating_add(num_queues.saturating_mul(section_len(QUEUE_LEN)))
        .saturating_add(section_len(device_config_len))
}

// ---------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected, as used by zlib and Ethernet).
// ---------------------------------------------------------------------------

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Continues a CRC-32 over `data`; start with `crc = 0`.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8);
    }
    !c
}

/// CRC-32 (IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

// ---------------------------------------------------------------------------
// Little-endian field access on validated slices.
// ---------------------------------------------------------------------------

fn rd16(p: &[u8], off: usize) -> u16 {
    match p.get(off..off.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

fn rd32(p: &[u8], off: usize) -> u32 {
    match p.get(off..off.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn rd64(p: &[u8], off: usize) -> u64 {
    let lo = u64::from(rd32(p, off));
    let hi = u64::from(rd32(p, off.wrapping_add(4)));
    lo | (hi << 32)
}

fn wr(p: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = p.get_mut(off..off.wrapping_add(bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

// ---------------------------------------------------------------------------
// Section payloads.
// ---------------------------------------------------------------------------

/// Who the device is and what it offers: everything a destination needs to
/// decide whether it can take the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Virtio device type (1 net, 2 block, …).
    pub device_type: u32,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// PCI subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// PCI subsystem id.
    pub subsystem_id: u16,
    /// Features the device offers (all 64 bits).
    pub device_features: u64,
    /// Number of queues (`num_queues`).
    pub num_queues: u16,
    /// Largest queue size the device accepts.
    pub max_queue_size: u16,
    /// Length of the device-specific configuration that is saved.
    pub device_config_len: u32,
}

impl DeviceIdentity {
    /// Encodes the section payload.
    pub fn to_bytes(self) -> [u8; IDENTITY_LEN] {
        let mut b = [0u8; IDENTITY_LEN];
        wr(&mut b, 0, &self.device_type.to_le_bytes());
        wr(&mut b, 4, &self.vendor_id.to_le_bytes());
        wr(&mut b, 6, &self.device_id.to_le_bytes());
        wr(&mut b, 8, &self.subsystem_vendor_id.to_le_bytes());
        wr(&mut b, 10, &self.subsystem_id.to_le_bytes());
        wr(&mut b, 12, &self.device_features.to_le_bytes());
        wr(&mut b, 20, &self.num_queues.to_le_bytes());
        wr(&mut b, 22, &self.max_queue_size.to_le_bytes());
        wr(&mut b, 24, &self.device_config_len.to_le_bytes());
        // 28..32 reserved, zero.
        b
    }

    /// Decodes a section payload of exactly [`IDENTITY_LEN`] bytes.
    pub fn from_bytes(p: &[u8]) -> Option<Self> {
        if p.len() != IDENTITY_LEN {
            return None;
        }
        Some(DeviceIdentity {
            device_type: rd32(p, 0),
            vendor_id: rd16(p, 4),
            device_id: rd16(p, 6),
            subsystem_vendor_id: rd16(p, 8),
            subsystem_id: rd16(p, 10),
            device_features: rd64(p, 12),
            num_queues: rd16(p, 20),
            max_queue_size: rd16(p, 22),
            device_config_len: rd32(p, 24),
        })
    }
}

/// Driver-side device state from the common configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverState {
    /// Features the driver negotiated (all 64 bits).
    pub driver_features: u64,
    /// `device_status`.
    pub device_status: u8,
    /// `config_generation` at save time (informative).
    pub config_generation: u8,
}

impl DriverState {
    /// Encodes the section payload.
    pub fn to_bytes(self) -> [u8; DRIVER_STATE_LEN] {
        let mut b = [0u8; DRIVER_STATE_LEN];
        wr(&mut b, 0, &self.driver_features.to_le_bytes());
        wr(&mut b, 8, &[self.device_status, self.config_generation]);
        b
    }

    /// Decodes a section payload of exactly [`DRIVER_STATE_LEN`] bytes.
    pub fn from_bytes(p: &[u8]) -> Option<Self> {
        if p.len() != DRIVER_STATE_LEN {
            return None;
        }
        Some(DriverState {
            driver_features: rd64(p, 0),
            device_status: p.get(8).copied().unwrap_or(0),
            config_generation: p.get(9).copied().unwrap_or(0),
        })
    }
}

/// State of one virtqueue (common configuration plus device state cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Queue index.
    pub index: u16,
    /// `queue_size`.
    pub size: u16,
    /// `queue_enable`.
    pub enable: u16,
    /// `queue_msix_vector`.
    pub msix_vector: u16,
    /// `queue_notify_off` (informative: the destination uses its own).
    pub notify_off: u16,
    /// `last_avail_idx` from the device state capability.
    pub last_avail_idx: u16,
    /// `queue_desc`.
    pub desc_addr: u64,
    /// `queue_driver` (available ring).
    pub driver_addr: u64,
    /// `queue_device` (used ring).
    pub device_addr: u64,
}

impl QueueState {
    /// Encodes the section payload.
    pub fn to_bytes(self) -> [u8; QUEUE_LEN] {
        let mut b = [0u8; QUEUE_LEN];
        wr(&mut b, 0, &self.index.to_le_bytes());
        wr(&mut b, 2, &self.size.to_le_bytes());
        wr(&mut b, 4, &self.enable.to_le_bytes());
        wr(&mut b, 6, &self.msix_vector.to_le_bytes());
        wr(&mut b, 8, &self.notify_off.to_le_bytes());
        wr(&mut b, 10, &self.last_avail_idx.to_le_bytes());
        // 12..16 reserved, zero.
        wr(&mut b, 16, &self.desc_addr.to_le_bytes());
        wr(&mut b, 24, &self.driver_addr.to_le_bytes());
        wr(&mut b, 32, &self.device_addr.to_le_bytes());
        b
    }

    /// Decodes a section payload of exactly [`QUEUE_LEN`] bytes.
    pub fn from_bytes(p: &[u8]) -> Option<Self> {
        if p.len() != QUEUE_LEN {
            return None;
        }
        Some(QueueState {
            index: rd16(p, 0),
            size: rd16(p, 2),
            enable: rd16(p, 4),
            msix_vector: rd16(p, 6),
            notify_off: rd16(p, 8),
            last_avail_idx: rd16(p, 10),
            desc_addr: rd64(p, 16),
            driver_addr: rd64(p, 24),
            device_addr: rd64(p, 32),
        })
    }
}

/// The selector registers of the common configuration, as the guest left them: the driver
/// saves them before its own accesses and writes them back after, and the destination gets
/// the source's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    /// `device_feature_select`.
    pub device_feature_select: u32,
    /// `driver_feature_select`.
    pub driver_feature_select: u32,
    /// `queue_select`.
    pub queue_select: u16,
}

impl Selectors {
    /// Encodes the section payload (reserved bytes 0).
    pub fn to_bytes(self) -> [u8; SELECTORS_LEN] {
        let mut b = [0u8; SELECTORS_LEN];
        wr(&mut b, 0, &self.device_feature_select.to_le_bytes());
        wr(&mut b, 4, &self.driver_feature_select.to_le_bytes());
        wr(&mut b, 8, &self.queue_select.to_le_bytes());
        b
    }

    /// Decodes a section payload of exactly [`SELECTORS_LEN`] bytes.
    pub fn from_bytes(p: &[u8]) -> Option<Self> {
        if p.len() != SELECTORS_LEN {
            return None;
        }
        Some(Selectors {
            device_feature_select: rd32(p, 0),
            driver_feature_select: rd32(p, 4),
            queue_select: rd16(p, 8),
        })
    }
}

fn msix_config_bytes(vector: u16) -> [u8; MSIX_CONFIG_LEN] {
    let mut b = [0u8; MSIX_CONFIG_LEN];
    wr(&mut b, 0, &vector.to_le_bytes());
    b
}

// ---------------------------------------------------------------------------
// Encoder.
// ---------------------------------------------------------------------------

/// Why encoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small; `needed` bytes would have been used.
    TooSmall {
        /// Bytes the complete frame needs.
        needed: usize,
    },
    /// The frame would exceed [`MAX_FRAME_LEN`] or a section its limit.
    TooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooSmall { needed } => {
                write!(f, "buffer too small, {needed} bytes needed")
            }
            EncodeError::TooLarge => f.write_str("frame exceeds the format limits"),
        }
    }
}

/// Writes one frame into a caller buffer.
///
/// Writing never fails on the spot: past the end of the buffer the writer
/// only counts bytes, and [`FrameWriter::finish`] reports the size needed.
/// The caller writes the identity section first, then the other sections.
pub struct FrameWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    flags: u16,
    too_large: bool,
}

impl<'b> FrameWriter<'b> {
    /// Starts a frame with header `flags` ([`FRAME_PRECOPY`] or [`FRAME_FINAL`]).
    pub fn new(buf: &'b mut [u8], flags: u16) -> Self {
        let mut w = FrameWriter {
            buf,
            pos: 0,
            flags,
            too_large: false,
        };
        w.put(&[0u8; HEADER_LEN]);
        w
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    fn put_zeros(&mut self, n: usize) {
        let zeros = [0u8; SECTION_ALIGN];
        self.put(zeros.get(..n).unwrap_or(&zeros));
    }

    /// Appends a section of any type with the given section `flags`.
    pub fn section(&mut self, ty: u16, flags: u16, payload: &[u8]) {
        let len = match u32::try_from(payload.len()) {
            Ok(len) if payload.len() <= MAX_FRAME_LEN => len,
            _ => {
                self.too_large = true;
                return;
            }
        };
        let mut hdr = [0u8; SECTION_HEADER_LEN];
        wr(&mut hdr, 0, &ty.to_le_bytes());
        wr(&mut hdr, 2, &flags.to_le_bytes());
        wr(&mut hdr, 4, &len.to_le_bytes());
        self.put(&hdr);
        self.put(payload);
        self.put_zeros(padded(payload.len()) - payload.len());
    }

    /// Appends the (mandatory) device identity section.
    pub fn identity(&mut self, id: &DeviceIdentity) {
        self.section(SECTION_DEVICE_IDENTITY, SECTION_MANDATORY, &id.to_bytes());
    }

    /// Appends the (mandatory) driver state section.
    pub fn driver_state(&mut self, st: &DriverState) {
        self.section(SECTION_DRIVER_STATE, SECTION_MANDATORY, &st.to_bytes());
    }

    /// Appends the (mandatory) configuration MSI-X vector section.
    pub fn msix_config(&mut self, vector: u16) {
        self.section(
            SECTION_MSIX_CONFIG,
            SECTION_MANDATORY,
            &msix_config_bytes(vector),
        );
    }

    /// Appends the (optional) selectors section.
    pub fn selectors(&mut self, sel: &Selectors) {
        self.section(SECTION_SELECTORS, 0, &sel.to_bytes());
    }

    /// Appends a (mandatory) queue section.
    pub fn queue(&mut self, q: &QueueState) {
        self.section(SECTION_QUEUE, SECTION_MANDATORY, &q.to_bytes());
    }

    /// Appends the (mandatory) device configuration section.
    pub fn device_config(&mut self, config: &[u8]) {
        if config.len() > MAX_DEVICE_CONFIG_LEN {
            self.too_large = true;
            return;
        }
        self.section(SECTION_DEVICE_CONFIG, SECTION_MANDATORY, config);
    }

    /// Bytes the frame uses so far (may exceed the buffer).
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing but the header has been written.
    pub fn is_empty(&self) -> bool {
        self.pos <= HEADER_LEN
    }

    /// Completes the header and CRC; returns the frame length.
    pub fn finish(self) -> Result<usize, EncodeError> {
        let total = self.pos.saturating_add(CRC_LEN);
        if self.too_large || total > MAX_FRAME_LEN {
            return Err(EncodeError::TooLarge);
        }
        if total > self.buf.len() {
            return Err(EncodeError::TooSmall { needed: total });
        }
        let total32 = u32::try_from(total).map_err(|_| EncodeError::TooLarge)?;
        let mut hdr = [0u8; HEADER_LEN];
        wr(&mut hdr, 0, &MAGIC);
        wr(&mut hdr, 4, &VERSION.to_le_bytes());
        wr(&mut hdr, 6, &self.flags.to_le_bytes());
        wr(&mut hdr, 8, &total32.to_le_bytes());
        wr(self.buf, 0, &hdr);
        let body_end = self.pos;
        let crc = crc32(self.buf.get(..body_end).unwrap_or(&[]));
        wr(self.buf, body_end, &crc.to_le_bytes());
        Ok(total)
    }
}

/// Complete device state to save, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub struct SavedState<'a> {
    /// Identity of the source device.
    pub identity: DeviceIdentity,
    /// Negotiated features and status.
    pub driver: DriverState,
    /// `config_msix_vector`.
    pub config_msix_vector: u16,
    /// The guest's selector registers.
    pub selectors: Selectors,
    /// One entry per queue, `0..identity.num_queues` in any order.
    pub queues: &'a [QueueState],
    /// Device-specific configuration, `identity.device_config_len` bytes.
    pub device_config: &'a [u8],
}

/// Encodes a pre-copy frame (identity only); returns its length,
/// [`PRECOPY_FRAME_LEN`].
pub fn encode_precopy(out: &mut [u8], identity: &DeviceIdentity) -> Result<usize, EncodeError> {
    let mut w = FrameWriter::new(out, FRAME_PRECOPY);
    w.identity(identity);
    w.finish()
}

/// Encodes the final frame of `state`; returns its length,
/// [`final_frame_len`] of the queue count and config length.
pub fn encode_final(out: &mut [u8], state: &SavedState<'_>) -> Result<usize, EncodeError> {
    let mut w = FrameWriter::new(out, FRAME_FINAL);
    w.identity(&state.identity);
    w.driver_state(&state.driver);
    w.msix_config(state.config_msix_vector);
    w.selectors(&state.selectors);
    for q in state.queues {
        w.queue(q);
    }
    w.device_config(state.device_config);
    w.finish()
}

// ---------------------------------------------------------------------------
// Parser.
// ---------------------------------------------------------------------------

/// Why a frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The input ends before the frame does; `needed` bytes are required.
    Truncated {
        /// Bytes needed (the header, or the whole frame).
        needed: usize,
    },
    /// The frame does not start with [`MAGIC`].
    BadMagic,
    /// The format version is not [`VERSION`].
    BadVersion(u16),
    /// The header flags are not exactly one of pre-copy or final.
    BadFlags(u16),
    /// `total_length` is too small for a frame or above [`MAX_FRAME_LEN`].
    BadLength(u32),
    /// The CRC does not match.
    BadCrc {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// A section header or payload runs past the end of the frame.
    SectionOverrun {
        /// Offset of the section in the frame.
        offset: usize,
    },
    /// A known section has the wrong payload length.
    BadSectionLength {
        /// Section type.
        ty: u16,
        /// Payload length found.
        len: u32,
    },
    /// A mandatory section of an unknown type.
    UnknownMandatory(u16),
    /// A section that may appear once appears again (queues: same index).
    Duplicate {
        /// Section type.
        ty: u16,
        /// Queue index for [`SECTION_QUEUE`], else 0.
        index: u16,
    },
    /// The first section is not the device identity, or a section the frame
    /// kind requires is absent.
    MissingSection(u16),
    /// A pre-copy frame carries device state.
    UnexpectedSection(u16),
    /// The identity announces more than [`MAX_QUEUES`] queues.
    TooManyQueues(u16),
    /// A queue section's index is not below the announced queue count.
    BadQueueIndex(u16),
    /// A final frame lacks the state of this queue.
    MissingQueue(u16),
    /// The device config section is longer than [`MAX_DEVICE_CONFIG_LEN`] or
    /// differs from the identity's `device_config_len`.
    BadConfigLength(u32),
}

impl StreamError {
    /// Short description, for log messages.
    pub const fn reason(&self) -> &'static str {
        match self {
            StreamError::Truncated { .. } => "truncated frame",
            StreamError::BadMagic => "bad magic",
            StreamError::BadVersion(_) => "unsupported version",
            StreamError::BadFlags(_) => "bad frame flags",
            StreamError::BadLength(_) => "bad frame length",
            StreamError::BadCrc { .. } => "CRC mismatch",
            StreamError::SectionOverrun { .. } => "section runs past the frame",
            StreamError::BadSectionLength { .. } => "bad section length",
            StreamError::UnknownMandatory(_) => "unknown mandatory section",
            StreamError::Duplicate { .. } => "duplicate section",
            StreamError::MissingSection(_) => "missing section",
            StreamError::UnexpectedSection(_) => "unexpected section in pre-copy frame",
            StreamError::TooManyQueues(_) => "too many queues",
            StreamError::BadQueueIndex(_) => "queue index out of range",
            StreamError::MissingQueue(_) => "missing queue state",
            StreamError::BadConfigLength(_) => "bad device config length",
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        match *self {
            StreamError::Truncated { needed } => write!(f, " ({needed} bytes needed)"),
            StreamError::BadVersion(v) => write!(f, " ({v})"),
            StreamError::BadFlags(v) => write!(f, " ({v:#x})"),
            StreamError::BadLength(v) => write!(f, " ({v})"),
            StreamError::BadCrc { stored, computed } => {
                write!(f, " (stored {stored:#010x}, computed {computed:#010x})")
            }
            StreamError::SectionOverrun { offset } => write!(f, " (at {offset})"),
            StreamError::BadSectionLength { ty, len } => write!(f, " (type {ty}, length {len})"),
            StreamError::Duplicate { ty, index } => write!(f, " (type {ty}, index {index})"),
            StreamError::UnknownMandatory(t)
            | StreamError::MissingSection(t)
            | StreamError::UnexpectedSection(t) => write!(f, " (type {t})"),
            StreamError::TooManyQueues(n)
            | StreamError::BadQueueIndex(n)
            | StreamError::MissingQueue(n) => write!(f, " ({n})"),
            StreamError::BadConfigLength(n) => write!(f, " ({n})"),
            StreamError::BadMagic => Ok(()),
        }
    }
}

/// The fixed header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header flags ([`FRAME_PRECOPY`] or [`FRAME_FINAL`]).
    pub flags: u16,
    /// Length of the whole frame.
    pub total_length: usize,
}

impl FrameHeader {
    /// Checks the first [`HEADER_LEN`] bytes of a frame, so a reader knows how
    /// many bytes to collect before calling [`Frame::parse`].
    pub fn peek(buf: &[u8]) -> Result<FrameHeader, StreamError> {
        let hdr = buf
            .get(..HEADER_LEN)
            .ok_or(StreamError::Truncated { needed: HEADER_LEN })?;
        if hdr.get(..4) != Some(&MAGIC[..]) {
            return Err(StreamError::BadMagic);
        }
        let version = rd16(hdr, 4);
        if version != VERSION {
            return Err(StreamError::BadVersion(version));
        }
        let flags = rd16(hdr, 6);
        if flags != FRAME_PRECOPY && flags != FRAME_FINAL {
            return Err(StreamError::BadFlags(flags));
        }
        let total32 = rd32(hdr, 8);
        let total_length = usize::try_from(total32).map_err(|_| StreamError::BadLength(total32))?;
        if !(HEADER_LEN + CRC_LEN..=MAX_FRAME_LEN).contains(&total_length) {
            return Err(StreamError::BadLength(total32));
        }
        Ok(FrameHeader {
            flags,
            total_length,
        })
    }
}

/// A section as found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    /// Section type.
    pub ty: u16,
    /// Section flags.
    pub flags: u16,
    /// Payload, without padding.
    pub payload: &'a [u8],
}

/// Iterator over the sections of a validated frame.
#[derive(Clone, Debug)]
pub struct Sections<'a> {
    rest: &'a [u8],
}

/// Splits the section at the start of `rest`: `(section, remaining)`.
fn split_section(rest: &[u8]) -> Option<(Section<'_>, &[u8])> {
    let hdr = rest.get(..SECTION_HEADER_LEN)?;
    let ty = rd16(hdr, 0);
    let flags = rd16(hdr, 2);
    let len = usize::try_from(rd32(hdr, 4)).ok()?;
    let payload_end = SECTION_HEADER_LEN.checked_add(len)?;
    let payload = rest.get(SECTION_HEADER_LEN..payload_end)?;
    let end = SECTION_HEADER_LEN.checked_add(len.checked_next_multiple_of(SECTION_ALIGN)?)?;
    let remaining = rest.get(end..)?;
    Some((Section { ty, flags, payload }, remaining))
}

impl<'a> Iterator for Sections<'a> {
    type Item = Section<'a>;

    fn next(&mut self) -> Option<Section<'a>> {
        let (section, rest) = split_section(self.rest)?;
        self.rest = rest;
        Some(section)
    }
}

/// Iterator over the queue states of a validated frame.
#[derive(Clone, Debug)]
pub struct Queues<'a> {
    sections: Sections<'a>,
}

impl Iterator for Queues<'_> {
    type Item = QueueState;

    fn next(&mut self) -> Option<QueueState> {
        for s in self.sections.by_ref() {
            if s.ty == SECTION_QUEUE {
                if let Some(q) = QueueState::from_bytes(s.payload) {
                    return Some(q);
                }
            }
        }
        None
    }
}

/// A validated frame, borrowing the input.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Header flags ([`FRAME_PRECOPY`] or [`FRAME_FINAL`]).
    pub flags: u16,
    /// Length of the frame in the input (header to CRC).
    pub len: usize,
    /// Device identity (always present).
    pub identity: DeviceIdentity,
    /// Driver state (present in a final frame).
    pub driver: Option<DriverState>,
    /// Configuration MSI-X vector (present in a final frame).
    pub config_msix_vector: Option<u16>,
    /// The guest's selector registers (optional, final frames only).
    pub selectors: Option<Selectors>,
    /// Device-specific configuration (present in a final frame).
    pub device_config: Option<&'a [u8]>,
    /// Number of queue sections (all queues in a final frame).
    pub num_queue_sections: u16,
    body: &'a [u8],
}

/// A set of queue indices below [`MAX_QUEUES`] (larger ones are never in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSet([u64; MAX_QUEUES / 64]);

impl Default for QueueSet {
    fn default() -> Self {
        Self([0; MAX_QUEUES / 64])
    }
}

impl QueueSet {
    /// Adds `index`; returns `false` if it was in the set already or is too
    /// large for it.
    pub fn insert(&mut self, index: u16) -> bool {
        let i = usize::from(index);
        match self.0.get_mut(i / 64) {
            Some(word) => {
                let bit = 1u64 << (i % 64);
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            None => false,
        }
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: u16) -> bool {
        let i = usize::from(index);
        matches!(self.0.get(i / 64), Some(w) if w & (1u64 << (i % 64)) != 0)
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

impl<'a> Frame<'a> {
    /// Validates the frame at the start of `buf` (which may continue with
    /// further frames) and returns views into it. Nothing of the frame should
    /// be used unless this succeeds.
    pub fn parse(buf: &'a [u8]) -> Result<Frame<'a>, StreamError> {
        let hdr = FrameHeader::peek(buf)?;
        let total = hdr.total_length;
        let frame = buf
            .get(..total)
            .ok_or(StreamError::Truncated { needed: total })?;
        let body_end = total - CRC_LEN;
        let stored = rd32(frame, body_end);
        let computed = crc32(frame.get(..body_end).unwrap_or(&[]));
        if stored != computed {
            return Err(StreamError::BadCrc { stored, computed });
        }
        let body = frame.get(HEADER_LEN..body_end).unwrap_or(&[]);
        let precopy = hdr.flags == FRAME_PRECOPY;

        let mut out = Frame {
            flags: hdr.flags,
            len: total,
            identity: DeviceIdentity::default(),
            driver: None,
            config_msix_vector: None,
            selectors: None,
            device_config: None,
            num_queue_sections: 0,
            body,
        };
        let mut queues = QueueSet::default();
        let mut seen: u32 = 0;
        let mut rest = body;
        let mut first = true;
        while !rest.is_empty() {
            let offset = total - CRC_LEN - rest.len();
            let (s, next) = split_section(rest).ok_or(StreamError::SectionOverrun { offset })?;
            rest = next;
            let len32 = u32::try_from(s.payload.len()).unwrap_or(u32::MAX);
            let bad_len = StreamError::BadSectionLength {
                ty: s.ty,
                len: len32,
            };
            if first && s.ty != SECTION_DEVICE_IDENTITY {
                return Err(StreamError::MissingSection(SECTION_DEVICE_IDENTITY));
            }
            first = false;
            let known = matches!(
                s.ty,
                SECTION_DEVICE_IDENTITY
                    | SECTION_DRIVER_STATE
                    | SECTION_MSIX_CONFIG
                    | SECTION_QUEUE
                    | SECTION_DEVICE_CONFIG
                    | SECTION_SELECTORS
            );
            if !known {
                if s.flags & SECTION_MANDATORY != 0 {
                    return Err(StreamError::UnknownMandatory(s.ty));
                }
                continue;
            }
            if precopy && s.ty != SECTION_DEVICE_IDENTITY {
                return Err(StreamError::UnexpectedSection(s.ty));
            }
            if s.ty != SECTION_QUEUE {
                let bit = 1u32 << s.ty;
                if seen & bit != 0 {
                    return Err(StreamError::Duplicate { ty: s.ty, index: 0 });
                }
                seen |= bit;
            }
            match s.ty {
                SECTION_DEVICE_IDENTITY => {
                    let id = DeviceIdentity::from_bytes(s.payload).ok_or(bad_len)?;
                    if usize::from(id.num_queues) > MAX_QUEUES {
                        return Err(StreamError::TooManyQueues(id.num_queues));
                    }
                    if u64::from(id.device_config_len) > MAX_DEVICE_CONFIG_LEN as u64 {
                        return Err(StreamError::BadConfigLength(id.device_config_len));
                    }
                    out.identity = id;
                }
                SECTION_DRIVER_STATE => {
                    out.driver = Some(DriverState::from_bytes(s.payload).ok_or(bad_len)?);
                }
                SECTION_MSIX_CONFIG => {
                    if s.payload.len() != MSIX_CONFIG_LEN {
                        return Err(bad_len);
                    }
                    out.config_msix_vector = Some(rd16(s.payload, 0));
                }
                SECTION_SELECTORS => {
                    out.selectors = Some(Selectors::from_bytes(s.payload).ok_or(bad_len)?);
                }
                SECTION_QUEUE => {
                    let q = QueueState::from_bytes(s.payload).ok_or(bad_len)?;
                    if q.index >= out.identity.num_queues {
                        return Err(StreamError::BadQueueIndex(q.index));
                    }
                    if !queues.insert(q.index) {
                        return Err(StreamError::Duplicate {
                            ty: SECTION_QUEUE,
                            index: q.index,
                        });
                    }
                    out.num_queue_sections += 1;
                }
                _ => {
                    // SECTION_DEVICE_CONFIG
                    if len32 != out.identity.device_config_len {
                        return Err(StreamError::BadConfigLength(len32));
                    }
                    out.device_config = Some(s.payload);
                }
            }
        }
        if first {
            return Err(StreamError::MissingSection(SECTION_DEVICE_IDENTITY));
        }
        if !precopy {
            for ty in [
                SECTION_DRIVER_STATE,
                SECTION_MSIX_CONFIG,
                SECTION_DEVICE_CONFIG,
            ] {
                if seen & (1u32 << ty) == 0 {
                    return Err(StreamError::MissingSection(ty));
                }
            }
            for index in 0..out.identity.num_queues {
                if !queues.contains(index) {
                    return Err(StreamError::MissingQueue(index));
                }
            }
        }
        Ok(out)
    }

    /// Whether this is a pre-copy frame.
    pub fn is_precopy(&self) -> bool {
        self.flags == FRAME_PRECOPY
    }

    /// Whether this is the final frame with the complete device state.
    pub fn is_final(&self) -> bool {
        self.flags == FRAME_FINAL
    }

    /// All sections, in stream order, including skipped optional ones.
    pub fn sections(&self) -> Sections<'a> {
        Sections { rest: self.body }
    }

    /// The queue states, in stream order.
    pub fn queues(&self) -> Queues<'a> {
        Queues {
            sections: self.sections(),
        }
    }
}

// ---------------------------------------------------------------------------
// Compatibility.
// ---------------------------------------------------------------------------

/// Why a destination device cannot take a source's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incompat {
    /// Different virtio device types.
    DeviceType {
        /// Source device type.
        src: u32,
        /// Destination device type.
        dst: u32,
    },
    /// Different PCI vendor, device or subsystem ids.
    PciIds,
    /// Different queue counts.
    NumQueues {
        /// Source queue count.
        src: u16,
        /// Destination queue count.
        dst: u16,
    },
    /// Different device config lengths.
    ConfigLength {
        /// Source length.
        src: u32,
        /// Destination length.
        dst: u32,
    },
    /// The driver negotiated features the destination does not offer.
    Features {
        /// The features missing on the destination.
        missing: u64,
    },
    /// A queue is larger than the destination allows.
    QueueSize {
        /// Queue index.
        index: u16,
        /// Saved size.
        size: u16,
        /// Destination maximum.
        max: u16,
    },
}

impl Incompat {
    /// Short description, for log messages.
    pub const fn reason(&self) -> &'static str {
        match self {
            Incompat::DeviceType { .. } => "different device type",
            Incompat::PciIds => "different PCI ids",
            Incompat::NumQueues { .. } => "different number of queues",
            Incompat::ConfigLength { .. } => "different device config length",
            Incompat::Features { .. } => "negotiated features not offered by destination",
            Incompat::QueueSize { .. } => "queue size above destination maximum",
        }
    }
}

impl fmt::Display for Incompat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        match *self {
            Incompat::DeviceType { src, dst } => write!(f, " ({src} vs {dst})"),
            Incompat::NumQueues { src, dst } => write!(f, " ({src} vs {dst})"),
            Incompat::ConfigLength { src, dst } => write!(f, " ({src} vs {dst})"),
            Incompat::Features { missing } => write!(f, " ({missing:#x})"),
            Incompat::QueueSize { index, size, max } => {
                write!(f, " (queue {index}: {size} > {max})")
            }
            Incompat::PciIds => Ok(()),
        }
    }
}

/// Checks that a destination with identity `dst` can take the state of a
/// source with identity `src` (the early check on a pre-copy frame).
pub fn check_compat(src: &DeviceIdentity, dst: &DeviceIdentity) -> Result<(), Incompat> {
    if src.device_type != dst.device_type {
        return Err(Incompat::DeviceType {
            src: src.device_type,
            dst: dst.device_type,
        });
    }
    if (
        src.vendor_id,
        src.device_id,
        src.subsystem_vendor_id,
        src.subsystem_id,
    ) != (
        dst.vendor_id,
        dst.device_id,
        dst.subsystem_vendor_id,
        dst.subsystem_id,
    ) {
        return Err(Incompat::PciIds);
    }
    if src.num_queues != dst.num_queues {
        return Err(Incompat::NumQueues {
            src: src.num_queues,
            dst: dst.num_queues,
        });
    }
    if src.device_config_len != dst.device_config_len {
        return Err(Incompat::ConfigLength {
            src: src.device_config_len,
            dst: dst.device_config_len,
        });
    }
    Ok(())
}

/// Full check of a final frame against the destination: [`check_compat`],
/// negotiated features offered by the destination, queue sizes within its
/// maximum.
pub fn check_state_compat(frame: &Frame<'_>, dst: &DeviceIdentity) -> Result<(), Incompat> {
    check_compat(&frame.identity, dst)?;
    if let Some(driver) = frame.driver {
        let missing = driver.driver_features & !dst.device_features;
        if missing != 0 {
            return Err(Incompat::Features { missing });
        }
    }
    for q in frame.queues() {
        if q.size > dst.max_queue_size {
            return Err(Incompat::QueueSize {
                index: q.index,
                size: q.size,
                max: dst.max_queue_size,
            });
        }
    }
    Ok(())
}
