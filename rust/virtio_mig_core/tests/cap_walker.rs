// SPDX-License-Identifier: GPL-2.0
//! Tests of the virtio capability walker.

use proptest::prelude::*;
use virtio_mig_core::cap_walker::*;
use virtio_mig_core::layout::*;

/// A config space image under construction.
struct Cfg {
    bytes: [u8; 256],
    last_next: usize,
}

impl Cfg {
    fn new() -> Self {
        let mut bytes = [0u8; 256];
        bytes[PCI_STATUS as usize] = PCI_STATUS_CAP_LIST as u8;
        Cfg {
            bytes,
            last_next: PCI_CAPABILITY_LIST as usize,
        }
    }

    /// Links a capability at `pos` onto the end of the list.
    fn link(&mut self, pos: u8, id: u8) {
        self.bytes[self.last_next] = pos;
        self.bytes[pos as usize] = id;
        self.bytes[pos as usize + 1] = 0;
        self.last_next = pos as usize + 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn vendor(&mut self, pos: u8, cfg_type: u8, cap_len: u8, bar: u8, offset: u32, length: u32) {
        self.link(pos, PCI_CAP_ID_VNDR);
        let p = pos as usize;
        self.bytes[p + 2] = cap_len;
        self.bytes[p + 3] = cfg_type;
        self.bytes[p + 4] = bar;
        self.bytes[p + 8..p + 12].copy_from_slice(&offset.to_le_bytes());
        self.bytes[p + 12..p + 16].copy_from_slice(&length.to_le_bytes());
    }

    fn notify(&mut self, pos: u8, bar: u8, offset: u32, length: u32, mult: u32) {
        self.vendor(pos, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, bar, offset, length);
        let p = pos as usize;
        self.bytes[p + 16..p + 20].copy_from_slice(&mult.to_le_bytes());
    }

    /// Walks with memory BARs of the sizes `bars`.
    fn walk(&self, bars: &[u64; 6]) -> Result<VirtioCaps, WalkError<OutOfBounds>> {
        self.walk_bars(&memory_bars(*bars))
    }

    fn walk_bars(&self, bars: &Bars) -> Result<VirtioCaps, WalkError<OutOfBounds>> {
        find_virtio_caps(&self.bytes[..], bars)
    }
}

/// The faults of the capabilities a walk left out.
fn ignored(caps: &VirtioCaps) -> Vec<CapFault> {
    caps.ignored().copied().collect()
}

fn fault(cfg_type: u8, error: WalkError<core::convert::Infallible>) -> CapFault {
    CapFault { cfg_type, error }
}

const BARS: [u64; 6] = [0, 0, 0, 0, 0x8000, 0];

/// The device model's layout: MSI-X first, then the six virtio structures.
fn devsim() -> Cfg {
    let mut c = Cfg::new();
    c.link(0x40, PCI_CAP_ID_MSIX);
    c.vendor(0x4c, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0, 0x38);
    c.vendor(0x5c, VIRTIO_PCI_CAP_ISR_CFG, 16, 4, 0x1000, 1);
    c.vendor(0x6c, VIRTIO_PCI_CAP_DEVICE_CFG, 16, 4, 0x2000, 0x1000);
    c.notify(0x7c, 4, 0x3000, 0x1000, 4);
    c.vendor(0x90, VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 16, 4, 0x4000, 24);
    c.vendor(0xa0, VIRTIO_PCI_CAP_DEVICE_STATE_CFG, 16, 4, 0x5000, 8);
    c.vendor(0xb0, VIRTIO_PCI_CAP_PCI_CFG, 20, 0, 0, 0);
    c
}

fn region(offset: u32, length: u32) -> Option<CapRegion> {
    Some(CapRegion {
        bar: 4,
        offset,
        length,
    })
}

#[test]
fn devsim_layout() {
    let caps = devsim().walk(&BARS).unwrap();
    assert_eq!(caps.common, region(0, 0x38));
    assert_eq!(caps.isr, region(0x1000, 1));
    assert_eq!(caps.device, region(0x2000, 0x1000));
    assert_eq!(caps.notify, region(0x3000, 0x1000));
    assert_eq!(caps.notify_off_multiplier, 4);
    assert_eq!(caps.memory_track, region(0x4000, 24));
    assert_eq!(caps.device_state, region(0x5000, 8));
    assert_eq!(caps.msix, Some(0x40));
    assert_eq!(caps.pci_cfg, Some(0xb0));
    assert_eq!(caps.num_caps, 8);
    assert_eq!(caps.missing(&REQUIRED_MODERN), None);
    assert_eq!(caps.missing(&REQUIRED_MIGRATION), None);
    assert_eq!(caps.num_ignored, 0);
    assert_eq!(caps.ignored().count(), 0);
    assert_eq!(caps.queue_notify_offset(3, 2), Some(0x300c));
    assert_eq!(caps.queue_notify_offset(0x3ff, 4), Some(0x3ffc));
    assert_eq!(caps.queue_notify_offset(0x400, 2), None);
}

#[test]
fn visitor_sees_every_cap() {
    let mut seen = Vec::new();
    walk(&devsim().bytes[..], &memory_bars(BARS), |c: &CapInfo| {
        seen.push((c.pos, c.cap_id, c.virtio.map(|v| v.cfg_type)))
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (0x40, PCI_CAP_ID_MSIX, None),
            (0x4c, 9, Some(1)),
            (0x5c, 9, Some(3)),
            (0x6c, 9, Some(4)),
            (0x7c, 9, Some(2)),
            (0x90, 9, Some(10)),
            (0xa0, 9, Some(11)),
            (0xb0, 9, Some(5)),
        ]
    );
}

#[test]
fn no_capability_list() {
    let mut c = devsim();
    c.bytes[PCI_STATUS as usize] = 0;
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps, VirtioCaps::default());
    assert_eq!(
        caps.missing(&REQUIRED_MODERN),
        Some(VIRTIO_PCI_CAP_COMMON_CFG)
    );
}

#[test]
fn missing_structures_are_reported() {
    let mut c = Cfg::new();
    c.vendor(0x40, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0, 0x38);
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(
        caps.missing(&REQUIRED_MODERN),
        Some(VIRTIO_PCI_CAP_NOTIFY_CFG)
    );
    assert_eq!(caps.missing(&REQUIRED_MIGRATION), Some(11));
    assert_eq!(caps.queue_notify_offset(0, 2), None);
}

#[test]
fn truncated_config_space() {
    let c = devsim();
    let err = find_virtio_caps(&c.bytes[..0x80], &memory_bars(BARS)).unwrap_err();
    assert_eq!(err, WalkError::Read(OutOfBounds));
    assert_eq!(err.reason(), "config space read failed");
}

#[test]
fn truncated_cap_runs_past_config_space() {
    let mut c = Cfg::new();
    c.link(0xf4, PCI_CAP_ID_VNDR);
    c.bytes[0xf6] = 16;
    c.bytes[0xf7] = VIRTIO_PCI_CAP_COMMON_CFG;
    // 0xf4 + 16 = 0x104: the structure is cut by the end of config space.
    assert!(matches!(
        c.walk(&BARS),
        Err(WalkError::CapPastConfigSpace {
            pos: 0xf4,
            cap_len: 16
        })
    ));
    // A vendor capability is optional: left out, and the list goes on.
    let mut c = Cfg::new();
    c.vendor(0x40, VIRTIO_PCI_CAP_VENDOR_CFG, 0xff, 0, 0, 0);
    c.vendor(0x50, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0, 0x38);
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.common, region(0, 0x38));
    assert_eq!(
        ignored(&caps),
        [fault(
            VIRTIO_PCI_CAP_VENDOR_CFG,
            WalkError::CapPastConfigSpace {
                pos: 0x40,
                cap_len: 0xff
            }
        )]
    );
}

#[test]
fn cap_len_too_small() {
    let mut c = devsim();
    c.bytes[0x4c + 2] = 15;
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::CapLenTooSmall {
            pos: 0x4c,
            cap_len: 15,
            min: 16
        })
    );
    let mut c = devsim();
    c.bytes[0x7c + 2] = 16; // notify needs 20
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::CapLenTooSmall {
            pos: 0x7c,
            cap_len: 16,
            min: 20
        })
    );
}

#[test]
fn cap_past_bar() {
    let mut c = devsim();
    c.bytes[0x6c + 8..0x6c + 12].copy_from_slice(&0x7ffcu32.to_le_bytes());
    let err = c.walk(&BARS).unwrap_err();
    assert_eq!(
        err,
        WalkError::RegionPastBar {
            pos: 0x6c,
            end: 0x8ffc,
            bar_size: 0x8000
        }
    );
    assert_eq!(err.pos(), Some(0x6c));
    // The device state structure is optional: migration goes, the rest stays.
    let mut c = devsim();
    c.bytes[0xa0 + 8..0xa0 + 12].copy_from_slice(&0x7ffcu32.to_le_bytes());
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.device_state, None);
    assert_eq!(caps.missing(&REQUIRED_MIGRATION), Some(11));
    assert_eq!(
        ignored(&caps),
        [fault(
            11,
            WalkError::RegionPastBar {
                pos: 0xa0,
                end: 0x8004,
                bar_size: 0x8000
            }
        )]
    );
}

#[test]
fn region_too_short() {
    let mut c = devsim();
    c.bytes[0x90 + 12] = 16; // tracker needs 24
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.memory_track, None);
    assert_eq!(
        ignored(&caps),
        [fault(
            10,
            WalkError::RegionTooShort {
                pos: 0x90,
                cfg_type: 10,
                length: 16,
                min: 24
            }
        )]
    );
    let mut c = devsim();
    c.bytes[0x4c + 12] = 0x30; // common needs 0x38
    assert!(matches!(
        c.walk(&BARS),
        Err(WalkError::RegionTooShort { .. })
    ));
}

#[test]
fn misaligned_region() {
    let mut c = devsim();
    c.bytes[0x4c + 8] = 2;
    assert!(matches!(
        c.walk(&BARS),
        Err(WalkError::RegionMisaligned { pos: 0x4c, .. })
    ));
}

#[test]
fn loops_are_detected() {
    let mut c = devsim();
    c.bytes[0xb1] = 0x5c; // last cap points back into the list
    assert_eq!(c.walk(&BARS), Err(WalkError::Loop { pos: 0x5c }));
    let mut c = Cfg::new();
    c.link(0x40, PCI_CAP_ID_MSIX);
    c.bytes[0x41] = 0x40; // self loop
    assert_eq!(c.walk(&BARS), Err(WalkError::Loop { pos: 0x40 }));
}

#[test]
fn bad_pointers() {
    let mut c = devsim();
    c.bytes[PCI_CAPABILITY_LIST as usize] = 0x3c;
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::BadPointer {
            from: 0x34,
            ptr: 0x3c
        })
    );
    let mut c = devsim();
    c.bytes[0x41] = 0x4d;
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::BadPointer {
            from: 0x41,
            ptr: 0x4d
        })
    );
}

#[test]
fn overlap_between_types() {
    let mut c = devsim();
    // Notify moved onto the device cfg: both essential.
    c.bytes[0x7c + 8..0x7c + 12].copy_from_slice(&0x2800u32.to_le_bytes());
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::Overlap {
            pos: 0x7c,
            cfg_type: 2,
            other: 4
        })
    );
    // Device state moved onto the tracker: the later one is left out.
    let mut c = devsim();
    c.bytes[0xa0 + 8..0xa0 + 12].copy_from_slice(&0x4010u32.to_le_bytes());
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.memory_track, region(0x4000, 24));
    assert_eq!(caps.device_state, None);
    assert_eq!(
        ignored(&caps),
        [fault(
            11,
            WalkError::Overlap {
                pos: 0xa0,
                cfg_type: 11,
                other: 10
            }
        )]
    );
    // Same offsets in different BARs do not overlap.
    let mut c = devsim();
    c.bytes[0xa0 + 4] = 2;
    c.bytes[0xa0 + 8..0xa0 + 12].copy_from_slice(&0x4010u32.to_le_bytes());
    let caps = c.walk(&[0, 0, 0x8000, 0, 0x8000, 0]).unwrap();
    assert_eq!(
        caps.device_state,
        Some(CapRegion {
            bar: 2,
            offset: 0x4010,
            length: 8
        })
    );
}

#[test]
fn duplicates_first_wins() {
    let mut c = devsim();
    // A second common cfg overlapping the first one is allowed and ignored.
    c.vendor(0xc4, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0, 0x40);
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.common, region(0, 0x38));
    // But it is still validated.
    let mut c = devsim();
    c.vendor(0xc4, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0x7ff0, 0x40);
    assert!(matches!(
        c.walk(&BARS),
        Err(WalkError::RegionPastBar { pos: 0xc4, .. })
    ));
}

#[test]
fn absent_and_bad_bar() {
    let mut c = devsim();
    c.bytes[0x5c + 4] = 3;
    assert_eq!(
        c.walk(&BARS),
        Err(WalkError::AbsentBar { pos: 0x5c, bar: 3 })
    );
    let mut c = devsim();
    c.bytes[0x5c + 4] = 6;
    assert_eq!(c.walk(&BARS), Err(WalkError::BadBar { pos: 0x5c, bar: 6 }));
}

#[test]
fn overflow() {
    let mut c = devsim();
    c.bytes[0x6c + 8..0x6c + 12].copy_from_slice(&0xffff_f000u32.to_le_bytes());
    c.bytes[0x6c + 12..0x6c + 16].copy_from_slice(&0x2000u32.to_le_bytes());
    assert_eq!(
        c.walk(&[u64::MAX; 6]),
        Err(WalkError::RegionOverflow { pos: 0x6c })
    );
}

#[test]
fn unknown_and_vendor_types_are_not_regions() {
    let mut c = devsim();
    c.vendor(0xc4, 7, 16, 9, 0xffff_ffff, 0xffff_ffff);
    c.vendor(0xd4, VIRTIO_PCI_CAP_VENDOR_CFG, 16, 9, 0, 0);
    assert!(c.walk(&BARS).is_ok());
}

#[test]
fn shared_memory_is_validated_in_64_bits() {
    let mut c = devsim();
    c.vendor(0xc4, VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, 24, 2, 0, 0x1000);
    c.bytes[0xc4 + 20] = 1; // length_hi: 4 GiB + 4 KiB
    let caps = c.walk(&[0, 0, 1 << 32, 0, 0x8000, 0]).unwrap();
    assert!(matches!(
        ignored(&caps)[..],
        [CapFault {
            cfg_type: 8,
            error: WalkError::RegionPastBar { pos: 0xc4, .. }
        }]
    ));
    let caps = c.walk(&[0, 0, 2 << 32, 0, 0x8000, 0]).unwrap();
    assert_eq!(caps.num_ignored, 0);
    c.bytes[0xc4 + 2] = 20;
    let caps = c.walk(&[0, 0, 2 << 32, 0, 0x8000, 0]).unwrap();
    assert!(matches!(
        ignored(&caps)[..],
        [CapFault {
            error: WalkError::CapLenTooSmall { min: 24, .. },
            ..
        }]
    ));
}

#[test]
fn display_messages() {
    let mut c = devsim();
    c.bytes[0x4c + 12] = 0x30;
    let msg = c.walk(&BARS).unwrap_err().to_string();
    assert_eq!(
        msg,
        "region too short for cfg_type (cap at 0x4c, common: length 0x30 < 0x38)"
    );
    let mut c = devsim();
    c.bytes[0x90 + 12] = 16;
    let caps = c.walk(&BARS).unwrap();
    let msg = caps.ignored().next().unwrap().to_string();
    assert_eq!(
        msg,
        "memory-track capability: region too short for cfg_type \
         (cap at 0x90, memory-track: length 0x10 < 0x18)"
    );
    let mut c = devsim();
    c.bytes[0x90 + 4] = 1;
    let bars = [
        Bar::ABSENT,
        Bar::io(0x40),
        Bar::ABSENT,
        Bar::ABSENT,
        Bar::memory(0x8000),
        Bar::ABSENT,
    ];
    let caps = c.walk_bars(&bars).unwrap();
    let msg = caps.ignored().next().unwrap().to_string();
    assert_eq!(
        msg,
        "memory-track capability: bar is an i/o port bar (cap at 0x90: bar 1)"
    );
}

#[test]
fn io_bar_is_not_a_region() {
    let mut bars = memory_bars(BARS);
    bars[4].kind = BarKind::Io;
    assert_eq!(
        devsim().walk_bars(&bars),
        Err(WalkError::IoBar { pos: 0x4c, bar: 4 })
    );
    // The tracker alone in an I/O BAR: dirty tracking goes, nothing else.
    let mut c = devsim();
    c.bytes[0x90 + 4] = 2;
    c.bytes[0x90 + 8..0x90 + 12].copy_from_slice(&0u32.to_le_bytes());
    let mut bars = memory_bars(BARS);
    bars[2] = Bar::io(0x100);
    let caps = c.walk_bars(&bars).unwrap();
    assert_eq!(caps.memory_track, None);
    assert_eq!(caps.device_state, region(0x5000, 8));
    assert_eq!(
        ignored(&caps),
        [fault(10, WalkError::IoBar { pos: 0x90, bar: 2 })]
    );
    // The same in a memory BAR of that size is fine.
    bars[2] = Bar::memory(0x100);
    let caps = c.walk_bars(&bars).unwrap();
    assert_eq!(
        caps.memory_track,
        Some(CapRegion {
            bar: 2,
            offset: 0,
            length: 24
        })
    );
}

#[test]
fn malformed_tracker_is_left_out() {
    // cap_len too small, misaligned, past its BAR, absent BAR.
    let breakages: [(usize, u8); 4] = [(2, 8), (8, 4), (10, 1), (4, 3)];
    for (at, value) in breakages {
        let mut c = devsim();
        c.bytes[0x90 + at] = value;
        let caps = c.walk(&BARS).unwrap();
        assert_eq!(caps.memory_track, None, "byte {at} = {value}");
        assert_eq!(caps.missing(&REQUIRED_MODERN), None);
        assert_eq!(caps.device_state, region(0x5000, 8));
        assert_eq!(caps.common, region(0, 0x38));
        assert_eq!(caps.num_caps, 8);
        let faults = ignored(&caps);
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].cfg_type, VIRTIO_PCI_CAP_MEMORY_TRACK_CFG);
        assert_eq!(faults[0].error.pos(), Some(0x90));
        assert_eq!(caps.num_ignored, 1);
    }
}

#[test]
fn malformed_device_state_is_left_out() {
    let mut c = devsim();
    c.bytes[0xa0 + 2] = 4;
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.device_state, None);
    assert_eq!(caps.missing(&REQUIRED_MIGRATION), Some(11));
    assert_eq!(caps.memory_track, region(0x4000, 24));
    assert_eq!(
        ignored(&caps),
        [fault(
            11,
            WalkError::CapLenTooSmall {
                pos: 0xa0,
                cap_len: 4,
                min: 16
            }
        )]
    );
}

#[test]
fn malformed_essential_structures_fail_the_walk() {
    // Each of common, ISR, device cfg and notify with a cap_len too small.
    for pos in [0x4c, 0x5c, 0x6c, 0x7c] {
        let mut c = devsim();
        c.bytes[pos + 2] = 8;
        let err = c.walk(&BARS).unwrap_err();
        assert!(
            matches!(err, WalkError::CapLenTooSmall { cap_len: 8, .. }),
            "cap at {pos:#x}: {err:?}"
        );
        assert_eq!(err.pos().map(usize::from), Some(pos));
    }
    // A misaligned common cfg.
    let mut c = devsim();
    c.bytes[0x4c + 8] = 2;
    assert!(matches!(
        c.walk(&BARS),
        Err(WalkError::RegionMisaligned { pos: 0x4c, .. })
    ));
    for t in [1, 2, 3, 4] {
        assert!(is_essential(t));
    }
    for t in [5, 8, 9, 10, 11, 0, 12, 0xff] {
        assert!(!is_essential(t));
    }
}

#[test]
fn essential_structure_displaces_optional_one() {
    let mut c = Cfg::new();
    c.vendor(0x40, VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 16, 4, 0, 24);
    c.vendor(0x50, VIRTIO_PCI_CAP_COMMON_CFG, 16, 4, 0, 0x38);
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.common, region(0, 0x38));
    assert_eq!(caps.memory_track, None);
    assert_eq!(
        ignored(&caps),
        [fault(
            10,
            WalkError::Overlap {
                pos: 0x40,
                cfg_type: 10,
                other: 1
            }
        )]
    );
}

#[test]
fn a_later_valid_tracker_replaces_a_malformed_one() {
    let mut c = devsim();
    c.bytes[0x90 + 12] = 16;
    c.vendor(0xc4, VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 16, 4, 0x6000, 24);
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.memory_track, region(0x6000, 24));
    assert_eq!(caps.num_ignored, 1);
}

#[test]
fn ignored_faults_are_bounded() {
    let mut c = devsim();
    for i in 0..10u8 {
        c.vendor(0xc4 + 4 * i, VIRTIO_PCI_CAP_VENDOR_CFG, 4, 0, 0, 0);
    }
    let caps = c.walk(&BARS).unwrap();
    assert_eq!(caps.num_ignored, 10);
    assert_eq!(caps.ignored().count(), MAX_IGNORED);
    assert_eq!(caps.ignored().next().unwrap().error.pos(), Some(0xc4));
}

/// Checks the guarantees of an accepted layout.
fn check_accepted(caps: &VirtioCaps, bars: &Bars) {
    let regions = caps.regions();
    for (t, r) in regions {
        let Some(r) = r else { continue };
        assert!(r.bar < 6);
        let bar = bars[r.bar as usize];
        assert_eq!(bar.kind, BarKind::Memory);
        let size = bar.size;
        assert!(size > 0);
        assert!(r.end() <= size);
        assert!(r.length >= min_region_len(t).unwrap());
        assert_eq!(r.offset % region_align(t), 0);
        for (t2, r2) in regions {
            if let Some(r2) = r2 {
                if t2 != t {
                    assert!(!r.overlaps(&r2));
                }
            }
        }
    }
    for q in 0..=u16::MAX {
        if let Some(off) = caps.queue_notify_offset(q, 2) {
            let n = caps.notify.unwrap();
            assert!(off >= n.offset && u64::from(off) + 2 <= n.end());
        }
        if q > 64 {
            break;
        }
    }
    if let Some(p) = caps.msix {
        assert!(p >= 0x40 && p % 4 == 0);
    }
    assert_eq!(
        caps.ignored().count(),
        usize::from(caps.num_ignored).min(MAX_IGNORED)
    );
    for f in caps.ignored() {
        assert!(!is_essential(f.cfg_type));
        assert!(f.error.pos().is_some());
    }
}

/// BARs of arbitrary sizes, some of them I/O.
fn any_bars() -> impl Strategy<Value = Bars> {
    any::<[(u64, bool); 6]>()
        .prop_map(|b| b.map(|(size, io)| if io { Bar::io(size) } else { Bar::memory(size) }))
}

/// A generated capability for the structured proptest.
#[derive(Clone, Debug)]
struct GenCap {
    id: u8,
    cfg_type: u8,
    cap_len: u8,
    bar: u8,
    offset: u32,
    length: u32,
    mult: u32,
}

fn gen_cap() -> impl Strategy<Value = GenCap> {
    (
        prop_oneof![
            Just(PCI_CAP_ID_VNDR),
            Just(PCI_CAP_ID_VNDR),
            Just(PCI_CAP_ID_MSIX),
            any::<u8>()
        ],
        0u8..13,
        prop_oneof![Just(16u8), Just(20), Just(24), any::<u8>()],
        prop_oneof![Just(4u8), 0u8..8],
        prop_oneof![(0u32..16).prop_map(|x| x * 0x800), any::<u32>()],
        prop_oneof![
            Just(0x38u32),
            Just(1),
            Just(8),
            Just(24),
            Just(0x1000),
            any::<u32>()
        ],
        prop_oneof![Just(4u32), any::<u32>()],
    )
        .prop_map(
            |(id, cfg_type, cap_len, bar, offset, length, mult)| GenCap {
                id,
                cfg_type,
                cap_len,
                bar,
                offset,
                length,
                mult,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        bars in any_bars(),
        force in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if force && bytes.len() > 0x34 {
            bytes[PCI_STATUS as usize] |= PCI_STATUS_CAP_LIST as u8;
            bytes[0x34] &= 0xfc;
        }
        let mut n = 0;
        if let Ok(caps) = walk(&bytes[..], &bars, |_| n += 1) {
            check_accepted(&caps, &bars);
            prop_assert_eq!(usize::from(caps.num_caps), n);
            prop_assert!(n <= MAX_CAPS);
        }
    }

    #[test]
    fn structured_lists(
        list in proptest::collection::vec(gen_cap(), 0..12),
        bars in prop_oneof![Just(memory_bars([0, 0, 0, 0, 0x8000, 0])), any_bars()],
        stride in prop_oneof![Just(0x14u8), Just(0x18), Just(0x10)],
    ) {
        let mut c = Cfg::new();
        for (i, g) in list.iter().enumerate() {
            let pos = 0x40usize + i * usize::from(stride);
            if pos > 0xfc {
                break;
            }
            let pos = pos as u8;
            c.link(pos, g.id);
            let p = pos as usize;
            let put = |bytes: &mut [u8; 256], at: usize, v: u32| {
                for (k, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(x) = bytes.get_mut(at + k) {
                        *x = *b;
                    }
                }
            };
            if p + 2 < 256 { c.bytes[p + 2] = g.cap_len; }
            if p + 3 < 256 { c.bytes[p + 3] = g.cfg_type; }
            if p + 4 < 256 { c.bytes[p + 4] = g.bar; }
            put(&mut c.bytes, p + 8, g.offset);
            put(&mut c.bytes, p + 12, g.length);
            put(&mut c.bytes, p + 16, g.mult);
            // The next pointer is written last by `link`, so restore it.
            c.bytes[p] = g.id;
        }
        if let Ok(caps) = c.walk_bars(&bars) {
            check_accepted(&caps, &bars);
        }
    }
}
