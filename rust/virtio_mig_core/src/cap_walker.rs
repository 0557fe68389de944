// SPDX-License-Identifier: GPL-2.0

//! Validating walker of the virtio vendor capabilities in PCI config space.
//!
//! [`walk`] follows the capability list from the capability pointer, checks
//! every pointer and every virtio structure capability against the config
//! space and the BARs, and returns the regions the driver uses as a
//! fixed-size [`VirtioCaps`]. A malformed list, or a malformed structure the
//! device cannot be driven without (see [`is_essential`]), is rejected with a
//! [`WalkError`] naming the offending capability; any other malformed
//! capability is left out and recorded in [`VirtioCaps::ignored`], so that a
//! bad optional facility costs only that facility. Either way the driver
//! never maps or touches a region it has not validated.
//!
//! Config space is read through the small [`ConfigSpaceRead`] trait; only
//! byte and naturally aligned dword reads are used.

use core::{
    convert::Infallible,
    fmt, //
};

use super::layout;

/// Read access to a function's PCI configuration space.
///
/// Offsets are within the 256-byte conventional config space. `read32` is
/// only called on 4-byte aligned offsets and returns the little-endian value.
pub trait ConfigSpaceRead {
    /// Error of a failed config-space read.
    type Error;

    /// Reads the byte at `off`.
    fn read8(&self, off: u16) -> Result<u8, Self::Error>;

    /// Reads the little-endian dword at the 4-byte aligned `off`.
    fn read32(&self, off: u16) -> Result<u32, Self::Error>;
}

/// Error of reading past the end of a byte-slice config space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds;

/// A byte slice is a config space image (used by tests, fuzzing and tools).
impl ConfigSpaceRead for [u8] {
    type Error = OutOfBounds;

    fn read8(&self, off: u16) -> Result<u8, OutOfBounds> {
        self.get(usize::from(off)).copied().ok_or(OutOfBounds)
    }

    fn read32(&self, off: u16) -> Result<u32, OutOfBounds> {
        let start = usize::from(off);
        let end = start.checked_add(4).ok_or(OutOfBounds)?;
        match self.get(start..end) {
            Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
            _ => Err(OutOfBounds),
        }
    }
}

/// Maximum number of capabilities in the list: one per dword between
/// [`layout::PCI_CAP_MIN_OFFSET`] and the end of config space.
pub const MAX_CAPS: usize = 48;

/// What a BAR decodes (bit 0 of the BAR register).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BarKind {
    /// Memory space.
    #[default]
    Memory,
    /// I/O port space: the virtio specification places no structure there.
    Io,
}

/// A BAR of the function, as regions are checked against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bar {
    /// Size in bytes, 0 when the BAR is absent (the upper half of a 64-bit
    /// BAR is absent; the caller reports the pair's size on the lower).
    pub size: u64,
    /// What the BAR decodes.
    pub kind: BarKind,
}

impl Bar {
    /// A BAR the function does not implement.
    pub const ABSENT: Bar = Bar::memory(0);

    /// A memory BAR of `size` bytes.
    pub const fn memory(size: u64) -> Bar {
        Bar {
            size,
            kind: BarKind::Memory,
        }
    }

    /// An I/O port BAR of `size` bytes.
    pub const fn io(size: u64) -> Bar {
        Bar {
            size,
            kind: BarKind::Io,
        }
    }
}

/// The six BARs of a function, by index.
pub type Bars = [Bar; layout::PCI_STD_NUM_BARS];

/// Memory BARs of the given sizes (0 for an absent BAR).
pub const fn memory_bars(sizes: [u64; layout::PCI_STD_NUM_BARS]) -> Bars {
    let mut bars = [Bar::ABSENT; layout::PCI_STD_NUM_BARS];
    let mut i = 0;
    while i < bars.len() {
        bars[i] = Bar::memory(sizes[i]);
        i += 1;
    }
    bars
}

/// Number of malformed capabilities [`VirtioCaps`] keeps the fault of.
pub const MAX_IGNORED: usize = 8;

/// A validated region inside a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapRegion {
    /// BAR index, `0..=5`.
    pub bar: u8,
    /// Offset of the region within the BAR.
    pub offset: u32,
    /// Length of the region in bytes.
    pub length: u32,
}

impl CapRegion {
    /// First byte past the region, as an offset within the BAR.
    pub const fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }

    /// Whether an access of `width` bytes at `off` (relative to the start of
    /// the region) lies entirely inside the region.
    pub const fn contains(&self, off: u32, width: u32) -> bool {
        match off.checked_add(width) {
            Some(end) => end <= self.length,
            None => false,
        }
    }

    /// Whether two regions share at least one byte (same BAR, both non-empty).
    pub const fn overlaps(&self, other: &CapRegion) -> bool {
        self.bar == other.bar
            && self.length != 0
            && other.length != 0
            && (self.offset as u64) < other.end()
            && (other.offset as u64) < self.end()
    }
}

/// Fields of a virtio structure capability, as read from config space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCapFields {
    /// `cfg_type`, one of the `VIRTIO_PCI_CAP_*_CFG` values (or unknown).
    pub cfg_type: u8,
    /// `cap_len`, the length of the capability structure.
    pub cap_len: u8,
    /// `bar` field.
    pub bar: u8,
    /// `id` field.
    pub id: u8,
    /// `offset` field (with `offset_hi` for shared memory capabilities).
    pub offset: u64,
    /// `length` field (with `length_hi` for shared memory capabilities).
    pub length: u64,
}

/// One capability of the list, as reported to the [`walk`] visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapInfo {
    /// Config-space offset of the capability.
    pub pos: u8,
    /// PCI capability id.
    pub cap_id: u8,
    /// Decoded virtio fields for a vendor-specific capability, else `None`
    /// (also when its structure is malformed: the fields cannot be trusted).
    pub virtio: Option<VirtioCapFields>,
}

/// A malformed capability: its `cfg_type` and what is wrong with it.
///
/// Never a read error: those fail the walk whatever the capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapFault {
    /// `cfg_type` of the capability.
    pub cfg_type: u8,
    /// The check it failed.
    pub error: WalkError<Infallible>,
}

impl fmt::Display for CapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} capability: {}",
            layout::cfg_type_name(self.cfg_type),
            self.error
        )
    }
}

/// The virtio structures found on a device (first valid occurrence of each
/// type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration ([`layout::VIRTIO_PCI_CAP_COMMON_CFG`]).
    pub common: Option<CapRegion>,
    /// Notification area ([`layout::VIRTIO_PCI_CAP_NOTIFY_CFG`]).
    pub notify: Option<CapRegion>,
    /// `notify_off_multiplier` of the notify capability (0 if absent).
    pub notify_off_multiplier: u32,
    /// ISR status ([`layout::VIRTIO_PCI_CAP_ISR_CFG`]).
    pub isr: Option<CapRegion>,
    /// Device-specific configuration ([`layout::VIRTIO_PCI_CAP_DEVICE_CFG`]).
    pub device: Option<CapRegion>,
    /// Memory dirty pages tracker ([`layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG`]).
    pub memory_track: Option<CapRegion>,
    /// Device state ([`layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG`]).
    pub device_state: Option<CapRegion>,
    /// Config-space offset of the first PCI configuration access capability.
    pub pci_cfg: Option<u8>,
    /// Config-space offset of the MSI-X capability.
    pub msix: Option<u8>,
    /// Number of capabilities in the list (all kinds).
    pub num_caps: u8,
    /// The first [`MAX_IGNORED`] malformed capabilities left out, in list
    /// order; see [`VirtioCaps::ignored`].
    pub ignored_faults: [Option<CapFault>; MAX_IGNORED],
    /// Number of malformed capabilities left out (may exceed [`MAX_IGNORED`]).
    pub num_ignored: u8,
}

/// Whether a malformed capability of `cfg_type` fails the walk: the common,
/// notify, ISR and device-specific structures, which a driver cannot operate
/// the device without trusting. Any other malformed capability (the
/// migration structures included) is left out: its facility is then absent.
pub const fn is_essential(cfg_type: u8) -> bool {
    matches!(
        cfg_type,
        layout::VIRTIO_PCI_CAP_COMMON_CFG
            | layout::VIRTIO_PCI_CAP_NOTIFY_CFG
            | layout::VIRTIO_PCI_CAP_ISR_CFG
            | layout::VIRTIO_PCI_CAP_DEVICE_CFG
    )
}

/// The `cfg_type`s a modern virtio-pci driver cannot work without.
pub const REQUIRED_MODERN: [u8; 3] = [
    layout::VIRTIO_PCI_CAP_COMMON_CFG,
    layout::VIRTIO_PCI_CAP_NOTIFY_CFG,
    layout::VIRTIO_PCI_CAP_ISR_CFG,
];

/// The `cfg_type`s device-state migration needs (dirty tracking is separate).
pub const REQUIRED_MIGRATION: [u8; 1] = [layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG];

impl VirtioCaps {
    /// The stored region of a BAR-backed `cfg_type`, if present.
    pub const fn region(&self, cfg_type: u8) -> Option<CapRegion> {
        match cfg_type {
            layout::VIRTIO_PCI_CAP_COMMON_CFG => self.common,
            layout::VIRTIO_PCI_CAP_NOTIFY_CFG => self.notify,
            layout::VIRTIO_PCI_CAP_ISR_CFG => self.isr,
            layout::VIRTIO_PCI_CAP_DEVICE_CFG => self.device,
            layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => self.memory_track,
            layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG => self.device_state,
            _ => None,
        }
    }

    fn slot(&mut self, cfg_type: u8) -> Option<&mut Option<CapRegion>> {
        match cfg_type {
            layout::VIRTIO_PCI_CAP_COMMON_CFG => Some(&mut self.common),
            layout::VIRTIO_PCI_CAP_NOTIFY_CFG => Some(&mut self.notify),
            layout::VIRTIO_PCI_CAP_ISR_CFG => Some(&mut self.isr),
            layout::VIRTIO_PCI_CAP_DEVICE_CFG => Some(&mut self.device),
            layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => Some(&mut self.memory_track),
            layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG => Some(&mut self.device_state),
            _ => None,
        }
    }

    /// All stored regions with their `cfg_type`, in a fixed order.
    pub const fn regions(&self) -> [(u8, Option<CapRegion>); NUM_REGIONS] {
        [
            (layout::VIRTIO_PCI_CAP_COMMON_CFG, self.common),
            (layout::VIRTIO_PCI_CAP_NOTIFY_CFG, self.notify),
            (layout::VIRTIO_PCI_CAP_ISR_CFG, self.isr),
            (layout::VIRTIO_PCI_CAP_DEVICE_CFG, self.device),
            (layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, self.memory_track),
            (layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG, self.device_state),
        ]
    }

    /// The first `cfg_type` of `required` that the device does not present.
    pub fn missing(&self, required: &[u8]) -> Option<u8> {
        required.iter().copied().find(|&t| self.region(t).is_none())
    }

    /// The malformed capabilities the walk left out (the first
    /// [`MAX_IGNORED`] of [`VirtioCaps::num_ignored`]), for the driver to log.
    pub fn ignored(&self) -> impl Iterator<Item = &CapFault> {
        self.ignored_faults.iter().flatten()
    }

    /// Leaves out the capability of `fault`, or fails the walk when it is
    /// essential.
    fn reject<E>(&mut self, fault: CapFault) -> Result<(), WalkError<E>> {
        if is_essential(fault.cfg_type) {
            return Err(fault.error.map_read(|never| match never {}));
        }
        if let Some(slot) = self.ignored_faults.get_mut(usize::from(self.num_ignored)) {
            *slot = Some(fault);
        }
        self.num_ignored = self.num_ignored.saturating_add(1);
        Ok(())
    }

    /// Offset within the notify BAR of queue notifications for a queue whose
    /// `queue_notify_off` is `queue_notify_off`, for an access of `width`
    /// bytes (2, or 4 with `VIRTIO_F_NOTIFICATION_DATA`).
    ///
    /// Returns `None` without a notify region or when the access would not
    /// fit inside it.
    pub fn queue_notify_offset(&self, queue_notify_off: u16, width: u32) -> Option<u32> {
        let notify = self.notify?;
        let rel = u32::from(queue_notify_off).checked_mul(self.notify_off_multiplier)?;
        if !notify.contains(rel, width) {
            return None;
        }
        notify.offset.checked_add(rel)
    }
}

/// Why a capability list was rejected.
///
/// `pos` fields are the config-space offset of the offending capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError<E> {
    /// A config-space read failed.
    Read(E),
    /// A capability pointer is below 0x40 or not dword aligned.
    BadPointer {
        /// Config-space offset the pointer was read from.
        from: u16,
        /// The pointer value.
        ptr: u8,
    },
    /// The list visits a capability twice.
    Loop {
        /// Offset visited twice.
        pos: u8,
    },
    /// The list is longer than [`MAX_CAPS`].
    TooManyCaps,
    /// `cap_len` is smaller than the structure of its `cfg_type`.
    CapLenTooSmall {
        /// Capability offset.
        pos: u8,
        /// `cap_len` found.
        cap_len: u8,
        /// Minimum for its `cfg_type`.
        min: u8,
    },
    /// The capability structure runs past the end of config space.
    CapPastConfigSpace {
        /// Capability offset.
        pos: u8,
        /// `cap_len` found.
        cap_len: u8,
    },
    /// `bar` is not a BAR index (greater than 5).
    BadBar {
        /// Capability offset.
        pos: u8,
        /// `bar` found.
        bar: u8,
    },
    /// `bar` names a BAR the device does not implement.
    AbsentBar {
        /// Capability offset.
        pos: u8,
        /// `bar` found.
        bar: u8,
    },
    /// `bar` names an I/O port BAR: structures live in memory BARs.
    IoBar {
        /// Capability offset.
        pos: u8,
        /// `bar` found.
        bar: u8,
    },
    /// `offset + length` overflows.
    RegionOverflow {
        /// Capability offset.
        pos: u8,
    },
    /// The region extends past the end of its BAR.
    RegionPastBar {
        /// Capability offset.
        pos: u8,
        /// End of the region within the BAR.
        end: u64,
        /// Size of the BAR.
        bar_size: u64,
    },
    /// The region is shorter than the structure of its `cfg_type`.
    RegionTooShort {
        /// Capability offset.
        pos: u8,
        /// `cfg_type`.
        cfg_type: u8,
        /// Region length found.
        length: u64,
        /// Minimum for the `cfg_type`.
        min: u32,
    },
    /// The region offset is not aligned for the registers inside it.
    RegionMisaligned {
        /// Capability offset.
        pos: u8,
        /// `cfg_type`.
        cfg_type: u8,
        /// Region offset found.
        offset: u64,
    },
    /// The region overlaps the region of another structure type.
    Overlap {
        /// Capability offset.
        pos: u8,
        /// `cfg_type` of this capability.
        cfg_type: u8,
        /// `cfg_type` of the structure it overlaps.
        other: u8,
    },
}

impl<E> WalkError<E> {
    /// The same error, with the error of a failed read mapped by `f`.
    pub fn map_read<F>(self, f: impl FnOnce(E) -> F) -> WalkError<F> {
        match self {
            WalkError::Read(e) => WalkError::Read(f(e)),
            WalkError::BadPointer { from, ptr } => WalkError::BadPointer { from, ptr },
            WalkError::Loop { pos } => WalkError::Loop { pos },
            WalkError::TooManyCaps => WalkError::TooManyCaps,
            WalkError::CapLenTooSmall { pos, cap_len, min } => {
                WalkError::CapLenTooSmall { pos, cap_len, min }
            }
            WalkError::CapPastConfigSpace { pos, cap_len } => {
                WalkError::CapPastConfigSpace { pos, cap_len }
            }
            WalkError::BadBar { pos, bar } => WalkError::BadBar { pos, bar },
            WalkError::AbsentBar { pos, bar } => WalkError::AbsentBar { pos, bar },
            WalkError::IoBar { pos, bar } => WalkError::IoBar { pos, bar },
            WalkError::RegionOverflow { pos } => WalkError::RegionOverflow { pos },
            WalkError::RegionPastBar { pos, end, bar_size } => {
                WalkError::RegionPastBar { pos, end, bar_size }
            }
            WalkError::RegionTooShort {
                pos,
                cfg_type,
                length,
                min,
            } => WalkError::RegionTooShort {
                pos,
                cfg_type,
                length,
                min,
            },
            WalkError::RegionMisaligned {
                pos,
                cfg_type,
                offset,
            } => WalkError::RegionMisaligned {
                pos,
                cfg_type,
                offset,
            },
            WalkError::Overlap {
                pos,
                cfg_type,
                other,
            } => WalkError::Overlap {
                pos,
                cfg_type,
                other,
            },
        }
    }

    /// Short description of the error, for log messages.
    pub const fn reason(&self) -> &'static str {
        match self {
            WalkError::Read(_) => "config space read failed",
            WalkError::BadPointer { .. } => "capability pointer below 0x40 or unaligned",
            WalkError::Loop { .. } => "capability list loops",
            WalkError::TooManyCaps => "too many capabilities",
            WalkError::CapLenTooSmall { .. } => "cap_len too small for cfg_type",
            WalkError::CapPastConfigSpace { .. } => "capability runs past config space",
            WalkError::BadBar { .. } => "bar index out of range",
            WalkError::AbsentBar { .. } => "bar not implemented",
            WalkError::IoBar { .. } => "bar is an i/o port bar",
            WalkError::RegionOverflow { .. } => "offset + length overflows",
            WalkError::RegionPastBar { .. } => "region runs past the end of its bar",
            WalkError::RegionTooShort { .. } => "region too short for cfg_type",
            WalkError::RegionMisaligned { .. } => "region offset misaligned",
            WalkError::Overlap { .. } => "regions of two structures overlap",
        }
    }

    /// Config-space offset of the capability at fault, when there is one.
    pub const fn pos(&self) -> Option<u8> {
        match *self {
            WalkError::Read(_) | WalkError::TooManyCaps | WalkError::BadPointer { .. } => None,
            WalkError::Loop { pos }
            | WalkError::CapLenTooSmall { pos, .. }
            | WalkError::CapPastConfigSpace { pos, .. }
            | WalkError::BadBar { pos, .. }
            | WalkError::AbsentBar { pos, .. }
            | WalkError::IoBar { pos, .. }
            | WalkError::RegionOverflow { pos }
            | WalkError::RegionPastBar { pos, .. }
            | WalkError::RegionTooShort { pos, .. }
            | WalkError::RegionMisaligned { pos, .. }
            | WalkError::Overlap { pos, .. } => Some(pos),
        }
    }
}

impl<E> fmt::Display for WalkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        match *self {
            WalkError::BadPointer { from, ptr } => write!(f, " ({ptr:#04x} read at {from:#04x})"),
            WalkError::CapLenTooSmall { pos, cap_len, min } => {
                write!(f, " (cap at {pos:#04x}: cap_len {cap_len} < {min})")
            }
            WalkError::CapPastConfigSpace { pos, cap_len } => {
                write!(f, " (cap at {pos:#04x}: cap_len {cap_len})")
            }
            WalkError::BadBar { pos, bar }
            | WalkError::AbsentBar { pos, bar }
            | WalkError::IoBar { pos, bar } => {
                write!(f, " (cap at {pos:#04x}: bar {bar})")
            }
            WalkError::RegionPastBar { pos, end, bar_size } => {
                write!(
                    f,
                    " (cap at {pos:#04x}: end {end:#x} > bar size {bar_size:#x})"
                )
            }
            WalkError::RegionTooShort {
                pos,
                cfg_type,
                length,
                min,
            } => write!(
                f,
                " (cap at {pos:#04x}, {}: length {length:#x} < {min:#x})",
                layout::cfg_type_name(cfg_type)
            ),
            WalkError::RegionMisaligned {
                pos,
                cfg_type,
                offset,
            } => write!(
                f,
                " (cap at {pos:#04x}, {}: offset {offset:#x})",
                layout::cfg_type_name(cfg_type)
            ),
            WalkError::Overlap {
                pos,
                cfg_type,
                other,
            } => write!(
                f,
                " (cap at {pos:#04x}: {} overlaps {})",
                layout::cfg_type_name(cfg_type),
                layout::cfg_type_name(other)
            ),
            WalkError::Loop { pos } | WalkError::RegionOverflow { pos } => {
                write!(f, " (cap at {pos:#04x})")
            }
            WalkError::Read(_) | WalkError::TooManyCaps => Ok(()),
        }
    }
}

/// Whether `cfg_type` describes a region inside a BAR.
const fn is_bar_region(cfg_type: u8) -> bool {
    layout::min_region_len(cfg_type).is_some()
        || cfg_type == layout::VIRTIO_PCI_CAP_SHARED_MEMORY_CFG
}

/// Validates a capability pointer read at `from`; `Ok(None)` ends the list.
fn check_pointer<E>(from: u16, ptr: u8) -> Result<Option<u8>, WalkError<E>> {
    if ptr == 0 {
        return Ok(None);
    }
    if u16::from(ptr) < layout::PCI_CAP_MIN_OFFSET || ptr & 3 != 0 {
        return Err(WalkError::BadPointer { from, ptr });
    }
    Ok(Some(ptr))
}

/// Reads and checks the structure of the virtio capability at `pos`; the
/// inner error is a malformed structure, the outer one a failed read.
fn read_virtio_cap<C>(
    cfg: &C,
    pos: u8,
) -> Result<Result<VirtioCapFields, CapFault>, WalkError<C::Error>>
where
    C: ConfigSpaceRead + ?Sized,
{
    let base = u16::from(pos);
    let rd8 = |off: u16| cfg.read8(base + off).map_err(WalkError::Read);
    let rd32 = |off: u16| cfg.read32(base + off).map_err(WalkError::Read);

    let cap_len = rd8(layout::VIRTIO_PCI_CAP_LEN)?;
    let cfg_type = rd8(layout::VIRTIO_PCI_CAP_CFG_TYPE)?;
    let min = layout::min_cap_len(cfg_type);
    let fault = |error| Ok(Err(CapFault { cfg_type, error }));
    if cap_len < min {
        return fault(WalkError::CapLenTooSmall { pos, cap_len, min });
    }
    if base + u16::from(cap_len) > layout::PCI_CFG_SPACE_SIZE {
        return fault(WalkError::CapPastConfigSpace { pos, cap_len });
    }
    let bar = rd8(layout::VIRTIO_PCI_CAP_BAR)?;
    let id = rd8(layout::VIRTIO_PCI_CAP_ID)?;
    let mut offset = u64::from(rd32(layout::VIRTIO_PCI_CAP_OFFSET)?);
    let mut length = u64::from(rd32(layout::VIRTIO_PCI_CAP_LENGTH)?);
    if cfg_type == layout::VIRTIO_PCI_CAP_SHARED_MEMORY_CFG {
        offset |= u64::from(rd32(layout::VIRTIO_PCI_CAP64_OFFSET_HI)?) << 32;
        length |= u64::from(rd32(layout::VIRTIO_PCI_CAP64_LENGTH_HI)?) << 32;
    }
    Ok(Ok(VirtioCapFields {
        cfg_type,
        cap_len,
        bar,
        id,
        offset,
        length,
    }))
}

/// Checks the BAR region described by a virtio capability.
fn check_region(pos: u8, f: &VirtioCapFields, bars: &Bars) -> Result<(), WalkError<Infallible>> {
    let bar = match bars.get(usize::from(f.bar)) {
        Some(&bar) => bar,
        None => return Err(WalkError::BadBar { pos, bar: f.bar }),
    };
    let bar_size = bar.size;
    if bar_size == 0 {
        return Err(WalkError::AbsentBar { pos, bar: f.bar });
    }
    // Reading I/O ports through an MMIO mapping would fault.
    if bar.kind == BarKind::Io {
        return Err(WalkError::IoBar { pos, bar: f.bar });
    }
    // The 32-bit fields must not wrap in 32 bits; the 64-bit ones in 64.
    let limit = if f.cfg_type == layout::VIRTIO_PCI_CAP_SHARED_MEMORY_CFG {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let end = match f.offset.checked_add(f.length) {
        Some(end) if end <= limit => end,
        _ => return Err(WalkError::RegionOverflow { pos }),
    };
    if end > bar_size {
        return Err(WalkError::RegionPastBar { pos, end, bar_size });
    }
    if let Some(min) = layout::min_region_len(f.cfg_type) {
        if f.length < u64::from(min) {
            return Err(WalkError::RegionTooShort {
                pos,
                cfg_type: f.cfg_type,
                length: f.length,
                min,
            });
        }
    }
    if f.offset % u64::from(layout::region_align(f.cfg_type)) != 0 {
        return Err(WalkError::RegionMisaligned {
            pos,
            cfg_type: f.cfg_type,
            offset: f.offset,
        });
    }
    Ok(())
}

/// Walks the capability list of `cfg` and returns the validated virtio
/// structures, calling `visit` for every capability found (for logging).
///
/// `bars[i]` is the size and kind of BAR `i`; a region must lie in a memory
/// BAR.
///
/// A function without a capability list yields an empty [`VirtioCaps`]; use
/// [`VirtioCaps::missing`] to check for the structures the driver needs, and
/// [`VirtioCaps::ignored`] for the malformed optional capabilities left out.
/// `visit` sees a capability before its region is checked, so the capability
/// at fault in an error has been reported.
pub fn walk<C, F>(cfg: &C, bars: &Bars, mut visit: F) -> Result<VirtioCaps, WalkError<C::Error>>
where
    C: ConfigSpaceRead + ?Sized,
    F: FnMut(&CapInfo),
{
    let mut out = VirtioCaps::default();
    let status = cfg.read8(layout::PCI_STATUS).map_err(WalkError::Read)?;
    if u16::from(status) & layout::PCI_STATUS_CAP_LIST == 0 {
        return Ok(out);
    }
    let first = cfg
        .read8(layout::PCI_CAPABILITY_LIST)
        .map_err(WalkError::Read)?;
    let mut next = check_pointer(layout::PCI_CAPABILITY_LIST, first)?;
    // One bit per dword of config space.
    let mut visited: u64 = 0;
    let mut count: usize = 0;
    // Config-space offset of each stored region, in `VirtioCaps::regions` order.
    let mut positions = [0u8; NUM_REGIONS];

    while let Some(pos) = next {
        let bit = 1u64 << (pos >> 2);
        if visited & bit != 0 {
            return Err(WalkError::Loop { pos });
        }
        visited |= bit;
        count += 1;
        if count > MAX_CAPS {
            return Err(WalkError::TooManyCaps);
        }

        let base = u16::from(pos);
        let cap_id = cfg
            .read8(base + layout::PCI_CAP_LIST_ID)
            .map_err(WalkError::Read)?;
        let next_ptr = cfg
            .read8(base + layout::PCI_CAP_LIST_NEXT)
            .map_err(WalkError::Read)?;

        if cap_id == layout::PCI_CAP_ID_VNDR {
            let fields = read_virtio_cap(cfg, pos)?;
            visit(&CapInfo {
                pos,
                cap_id,
                virtio: fields.ok(),
            });
            match fields {
                Ok(fields) => record_virtio_cap(cfg, &mut out, &mut positions, pos, &fields, bars)?,
                Err(fault) => out.reject(fault)?,
            }
        } else {
            if cap_id == layout::PCI_CAP_ID_MSIX && out.msix.is_none() {
                out.msix = Some(pos);
            }
            visit(&CapInfo {
                pos,
                cap_id,
                virtio: None,
            });
        }
        next = check_pointer(base + layout::PCI_CAP_LIST_NEXT, next_ptr)?;
    }
    // `count` is at most MAX_CAPS here.
    out.num_caps = u8::try_from(count).unwrap_or(u8::MAX);
    Ok(out)
}

/// Number of regions [`VirtioCaps`] stores.
const NUM_REGIONS: usize = 6;

/// Validates the region of a virtio capability and stores it if it is the
/// first valid one of its type; `positions` are the offsets of the
/// capabilities of the stored regions.
fn record_virtio_cap<C>(
    cfg: &C,
    out: &mut VirtioCaps,
    positions: &mut [u8; NUM_REGIONS],
    pos: u8,
    f: &VirtioCapFields,
    bars: &Bars,
) -> Result<(), WalkError<C::Error>>
where
    C: ConfigSpaceRead + ?Sized,
{
    if f.cfg_type == layout::VIRTIO_PCI_CAP_PCI_CFG {
        if out.pci_cfg.is_none() {
            out.pci_cfg = Some(pos);
        }
        return Ok(());
    }
    if !is_bar_region(f.cfg_type) {
        return Ok(());
    }
    if let Err(error) = check_region(pos, f, bars) {
        return out.reject(CapFault {
            cfg_type: f.cfg_type,
            error,
        });
    }

    let region = match (u32::try_from(f.offset), u32::try_from(f.length)) {
        (Ok(offset), Ok(length)) => CapRegion {
            bar: f.bar,
            offset,
            length,
        },
        // Only shared memory regions can be wider, and they are not stored.
        _ => return Ok(()),
    };
    if out.region(f.cfg_type).is_some() {
        // Later duplicates are validated but the first one wins.
        return Ok(());
    }
    for (i, (other_type, other)) in out.regions().into_iter().enumerate() {
        let Some(other) = other else { continue };
        if other_type == f.cfg_type || !region.overlaps(&other) {
            continue;
        }
        if !is_essential(f.cfg_type) || is_essential(other_type) {
            return out.reject(CapFault {
                cfg_type: f.cfg_type,
                error: WalkError::Overlap {
                    pos,
                    cfg_type: f.cfg_type,
                    other: other_type,
                },
            });
        }
        // An essential structure displaces the optional one listed before it.
        if let Some(slot) = out.slot(other_type) {
            *slot = None;
        }
        out.reject(CapFault {
            cfg_type: other_type,
            error: WalkError::Overlap {
                pos: positions[i],
                cfg_type: other_type,
                other: f.cfg_type,
            },
        })?;
    }
    if f.cfg_type == layout::VIRTIO_PCI_CAP_NOTIFY_CFG {
        out.notify_off_multiplier = cfg
            .read32(u16::from(pos) + layout::VIRTIO_PCI_NOTIFY_CAP_MULT)
            .map_err(WalkError::Read)?;
    }
    if let Some(i) = out.regions().iter().position(|&(t, _)| t == f.cfg_type) {
        positions[i] = pos;
    }
    if let Some(slot) = out.slot(f.cfg_type) {
        *slot = Some(region);
    }
    Ok(())
}

/// [`walk`] without a visitor.
pub fn find_virtio_caps<C>(cfg: &C, bars: &Bars) -> Result<VirtioCaps, WalkError<C::Error>>
where
    C: ConfigSpaceRead + ?Sized,
{
    walk(cfg, bars, |_| {})
}
