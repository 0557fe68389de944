// SPDX-License-Identifier: GPL-2.0
//! PCI configuration space of the device.
//!
//! The space is an array of bytes plus a mask of writable bits per byte;
//! a write only changes the writable bits. BAR sizing, the command register,
//! the MSI-X enable bits and the PASID enable bit all follow from the mask.
//!
//! Two writes have side effects beyond the bytes, reported to the device as
//! a [`ConfigEvent`]: a power state change in the power management
//! capability, and Initiate Function Level Reset in the PCI Express Device
//! Control register.
//!
//! With an owner function (`--owner-socket`) both functions are functions
//! of one multi-function slot: the header type says multi-function, and
//! each has a 4 KiB configuration space with an ACS extended capability
//! (SV, RR, CR and UF, enabled through a writable ACS Control), which lets
//! Linux put each function in its own IOMMU group. The owner has no memory
//! tracker and no device state capability, and a 64-byte common
//! configuration (up to `admin_queue_num`).

use crate::config::{BadCap, Config, Role};
use crate::layout::*;

/// The PCI configuration space.
pub struct PciConfig {
    bytes: Vec<u8>,
    wmask: Vec<u8>,
    initial: Vec<u8>,
    /// Whether the power management capability exists.
    pm: bool,
    /// Whether the PCI Express capability advertises FLR.
    flr: bool,
}

/// What a configuration write asks of the function, besides storing bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigEvent {
    /// The power state went from D0 to D3hot: the function quiesces.
    EnterD3hot,
    /// The power state went from D3hot to D0: with No_Soft_Reset clear, the
    /// function is reset.
    LeaveD3hot,
    /// Initiate Function Level Reset was written 1.
    Flr,
}

/// Writes one `struct virtio_pci_cap` (and the notify multiplier) at `at`.
struct VirtioCap {
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
    cap_len: u8,
    next: u8,
}

impl PciConfig {
    /// Builds the configuration space of the function at `--socket` for
    /// `cfg` (see [`Role::of`]).
    pub fn new(cfg: &Config) -> Self {
        Self::for_role(cfg, Role::of(cfg))
    }

    /// Builds the configuration space of a function playing `role`.
    pub fn for_role(cfg: &Config, role: Role) -> Self {
        let slot = role != Role::Single;
        let size = if cfg.pasid || slot {
            EXT_CONFIG_SPACE_SIZE
        } else {
            CONFIG_SPACE_SIZE
        };
        let resettable = !cfg.faults.no_reset;
        let mut pc = PciConfig {
            bytes: vec![0; size],
            wmask: vec![0; size],
            initial: Vec::new(),
            pm: resettable,
            flr: resettable,
        };
        pc.build_header(slot);
        pc.build_virtio_caps(cfg, role);
        let queues = match role {
            Role::Owner => OWNER_REQUEST_QUEUES + OWNER_ADMIN_QUEUE_NUM,
            _ => cfg.queues,
        };
        pc.build_msix_cap(queues);
        pc.build_pcie_cap(if resettable { CAP_PM_AT } else { 0 });
        if resettable {
            pc.build_pm_cap();
        }
        if cfg.pasid {
            pc.build_pasid_ext_cap(if slot { ext_cap_acs_at(true) } else { 0 });
        }
        if slot {
            pc.build_acs_ext_cap(ext_cap_acs_at(cfg.pasid));
        }
        pc.initial = pc.bytes.clone();
        pc
    }

    fn put8(&mut self, at: usize, v: u8) {
        self.bytes[at] = v;
    }

    fn put16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn writable16(&mut self, at: usize, mask: u16) {
        self.wmask[at..at + 2].copy_from_slice(&mask.to_le_bytes());
    }

    fn writable32(&mut self, at: usize, mask: u32) {
        self.wmask[at..at + 4].copy_from_slice(&mask.to_le_bytes());
    }

    fn build_header(&mut self, multi_function: bool) {
        self.put16(0x00, PCI_VENDOR_ID);
        self.put16(0x02, PCI_DEVICE_ID);
        // Command: I/O, memory, bus master, parity, SERR, INTx disable.
        self.writable16(0x04, 0x0547);
        // Status: capabilities list.
        self.put16(0x06, 0x0010);
        self.put8(0x08, PCI_REVISION);
        self.put8(0x09, PCI_CLASS_CODE as u8);
        self.put8(0x0a, (PCI_CLASS_CODE >> 8) as u8);
        self.put8(0x0b, (PCI_CLASS_CODE >> 16) as u8);
        // Header type 0, single or multi-function.
        let multi = if multi_function {
            PCI_HEADER_TYPE_MULTI_FUNCTION
        } else {
            0
        };
        self.put8(0x0e, multi);

        // BAR1: 32-bit memory BAR.
        let bar1 = 0x10 + 4 * MSIX_BAR as usize;
        self.put32(bar1, 0);
        self.writable32(bar1, !(MSIX_BAR_SIZE as u32 - 1) & !0xf);
        // BAR4/5: 64-bit non-prefetchable memory BAR.
        let bar4 = 0x10 + 4 * VIRTIO_BAR as usize;
        self.put32(bar4, 0x4);
        self.writable32(bar4, !(VIRTIO_BAR_SIZE as u32 - 1) & !0xf);
        self.writable32(bar4 + 4, 0xffff_ffff);

        self.put16(0x2c, PCI_SUBSYSTEM_VENDOR_ID);
        self.put16(0x2e, PCI_SUBSYSTEM_ID);
        self.put8(0x34, CAP_LIST_START);
        // Interrupt line is a scratch register; interrupt pin 0: no INTx.
        self.wmask[0x3c] = 0xff;
    }

    fn put_virtio_cap(&mut self, at: u8, cap: VirtioCap) {
        let at = at as usize;
        self.put8(at, PCI_CAP_ID_VNDR);
        self.put8(at + 1, cap.next);
        self.put8(at + 2, cap.cap_len);
        self.put8(at + 3, cap.cfg_type);
        self.put8(at + 4, cap.bar);
        self.put8(at + 5, 0); // id
        self.put32(at + 8, cap.offset);
        self.put32(at + 12, cap.length);
        if cap.cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
            self.put32(at + 16, NOTIFY_OFF_MULTIPLIER);
        }
    }

    fn build_virtio_caps(&mut self, cfg: &Config, role: Role) {
        let common_len = if role == Role::Owner {
            OWNER_COMMON_CFG_LEN
        } else {
            COMMON_CFG_LEN
        };
        let all = [
            (
                CAP_COMMON_AT,
                VIRTIO_PCI_CAP_COMMON_CFG,
                COMMON_CFG_OFFSET,
                common_len,
            ),
            (
                CAP_NOTIFY_AT,
                VIRTIO_PCI_CAP_NOTIFY_CFG,
                NOTIFY_OFFSET,
                NOTIFY_LEN,
            ),
            (CAP_ISR_AT, VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, ISR_LEN),
            (
                CAP_DEVICE_AT,
                VIRTIO_PCI_CAP_DEVICE_CFG,
                DEVICE_CFG_OFFSET,
                DEVICE_CFG_LEN,
            ),
            (
                CAP_MEMORY_TRACK_AT,
                VIRTIO_PCI_CAP_MEMORY_TRACK_CFG,
                MEMORY_TRACK_OFFSET,
                MEMORY_TRACK_LEN,
            ),
            (
                CAP_DEVICE_STATE_AT,
                VIRTIO_PCI_CAP_DEVICE_STATE_CFG,
                DEVICE_STATE_OFFSET,
                DEVICE_STATE_LEN,
            ),
        ];
        // Absent capabilities leave their slot zero; the chain skips it.
        let tracker = role != Role::Owner && !cfg.no_tracker;
        let device_state = role != Role::Owner;
        let caps: Vec<_> = all
            .into_iter()
            .filter(|c| match c.1 {
                VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => tracker,
                VIRTIO_PCI_CAP_DEVICE_STATE_CFG => device_state,
                _ => true,
            })
            .collect();
        for (i, &(at, cfg_type, offset, length)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(CAP_MSIX_AT, |c| c.0);
            let mut cap = VirtioCap {
                cfg_type,
                bar: VIRTIO_BAR,
                offset: offset as u32,
                length: length as u32,
                cap_len: if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                    VIRTIO_NOTIFY_CAP_LEN
                } else {
                    VIRTIO_CAP_LEN
                },
                next,
            };
            if cfg_type == VIRTIO_PCI_CAP_MEMORY_TRACK_CFG {
                match cfg.faults.bad_cap {
                    Some(BadCap::Bar) => cap.bar = 7,
                    Some(BadCap::Offset) => cap.offset = VIRTIO_BAR_SIZE as u32,
                    Some(BadCap::CapLen) => cap.cap_len = 8,
                    None => {}
                }
            }
            self.put_virtio_cap(at, cap);
        }
    }

    fn build_msix_cap(&mut self, queues: u16) {
        let at = CAP_MSIX_AT as usize;
        self.put8(at, PCI_CAP_ID_MSIX);
        self.put8(at + 1, CAP_PCIE_AT);
        // Message control: table size - 1 (config vector + one per queue).
        self.put16(at + 2, queues);
        // MSI-X enable and function mask are writable.
        self.writable16(at + 2, 0xc000);
        self.put32(at + 4, MSIX_TABLE_OFFSET | MSIX_BAR as u32);
        self.put32(at + 8, MSIX_PBA_OFFSET | MSIX_BAR as u32);
    }

    fn build_pcie_cap(&mut self, next: u8) {
        let at = CAP_PCIE_AT as usize;
        self.put8(at, PCI_CAP_ID_EXP);
        self.put8(at + 1, next);
        // Capability version 2, device/port type 0: PCI Express endpoint.
        self.put16(at + 2, 0x0002);
        // Device capabilities: 128-byte payloads, role-based error
        // reporting, and Function Level Reset unless the fault removes it.
        let flr = if self.flr { PCIE_DEVCAP_FLR } else { 0 };
        self.put32(at + 4, PCIE_DEVCAP_RBER | flr);
        // Device control: relaxed ordering, no snoop, max payload/read size.
        // Initiate FLR (bit 15) is not stored: it always reads 0.
        self.put16(at + 8, PCIE_DEVCTL_DEFAULT);
        self.writable16(at + 8, 0x7ef0);
        // One 2.5 GT/s lane (QEMU hides the link registers when it turns
        // the function into a root complex integrated endpoint).
        self.put32(at + 0x0c, PCIE_LNKCAP);
        self.put16(at + 0x12, PCIE_LNKSTA);
    }

    fn build_pm_cap(&mut self) {
        let at = CAP_PM_AT as usize;
        self.put8(at, PCI_CAP_ID_PM);
        self.put8(at + 1, 0);
        self.put16(at + 2, PM_PMC);
        // PMCSR: D0, No_Soft_Reset clear, no PME. Only the power state is
        // writable.
        self.put16(at + 4, 0);
        self.writable16(at + 4, PM_STATE_MASK);
    }

    /// The PASID extended capability, followed by the one at `next` (0: none).
    fn build_pasid_ext_cap(&mut self, next: u16) {
        let at = EXT_CAP_PASID_AT as usize;
        self.put32(
            at,
            PCI_EXT_CAP_ID_PASID as u32 | (1 << 16) | ((next as u32) << 20),
        );
        // PASID capability: no execute/privileged modes, 20-bit PASIDs.
        self.put16(at + 4, (PASID_WIDTH as u16) << 8);
        // PASID control: enable.
        self.writable16(at + 6, 0x0001);
    }

    /// The ACS extended capability at `at`, last of the chain: no egress
    /// control vector.
    fn build_acs_ext_cap(&mut self, at: u16) {
        let at = at as usize;
        self.put32(at, PCI_EXT_CAP_ID_ACS as u32 | (1 << 16));
        self.put16(at + 4, ACS_CAP);
        // ACS Control: the supported bits are writable, 0 after reset.
        self.put16(at + 6, 0);
        self.writable16(at + 6, ACS_CAP);
    }

    /// Size of the configuration space region.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the configuration space is empty (never).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end read as 0.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes `data` at `offset`, changing only writable bits, and tells
    /// what else the write asks for.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<ConfigEvent> {
        let before = self.power_state();
        let mut flr = false;
        for (i, d) in data.iter().enumerate() {
            let Some(at) = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) else {
                break;
            };
            if at >= self.bytes.len() {
                break;
            }
            let m = self.wmask[at];
            self.bytes[at] = (self.bytes[at] & !m) | (d & m);
            // High byte of Device Control, bit 7: Initiate FLR.
            let devctl_hi = CAP_PCIE_AT as usize + 9;
            if self.flr && at == devctl_hi && d & (PCIE_DEVCTL_BCR_FLR >> 8) as u8 != 0 {
                flr = true;
            }
        }
        if flr {
            return Some(ConfigEvent::Flr);
        }
        self.power_transition(before)
    }

    /// Offset of the PMCSR low byte (power state bits), if the capability exists.
    fn pmcsr_at(&self) -> Option<usize> {
        self.pm.then_some(CAP_PM_AT as usize + 4)
    }

    /// The power state in PMCSR (always D0 without the PM capability).
    pub fn power_state(&self) -> u8 {
        self.pmcsr_at()
            .map_or(PM_STATE_D0, |at| self.bytes[at] & PM_STATE_MASK as u8)
    }

    /// Checks the power state after a write that found it at `before`.
    /// D1 and D2 are not supported: writing them leaves the state as it was,
    /// as the PCI power management specification requires.
    fn power_transition(&mut self, before: u8) -> Option<ConfigEvent> {
        let at = self.pmcsr_at()?;
        let after = self.bytes[at] & PM_STATE_MASK as u8;
        match (before, after) {
            (PM_STATE_D0, PM_STATE_D3HOT) => Some(ConfigEvent::EnterD3hot),
            (PM_STATE_D3HOT, PM_STATE_D0) => Some(ConfigEvent::LeaveD3hot),
            (_, PM_STATE_D0 | PM_STATE_D3HOT) => None,
            _ => {
                self.bytes[at] = (self.bytes[at] & !(PM_STATE_MASK as u8)) | before;
                None
            }
        }
    }

    /// Whether the function decodes its memory BARs: Memory Space Enable
    /// set in the Command register (0x04) and the power state D0.
    pub fn memory_enabled(&self) -> bool {
        let command = u16::from_le_bytes([self.bytes[0x04], self.bytes[0x05]]);
        command & PCI_COMMAND_MEMORY != 0 && self.power_state() == PM_STATE_D0
    }

    /// Whether the PASID extended capability exists and is enabled.
    pub fn pasid_enabled(&self) -> bool {
        let at = EXT_CAP_PASID_AT as usize + 6;
        self.bytes.get(at).is_some_and(|b| b & 1 != 0)
    }

    /// Restores every writable field to its power-on value (function reset).
    pub fn reset(&mut self) {
        self.bytes.copy_from_slice(&self.initial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            queues: 2,
            ..Config::default()
        }
    }

    #[test]
    fn header_and_chain() {
        let pc = PciConfig::new(&cfg());
        let mut b = [0u8; 256];
        pc.read(0, &mut b);
        assert_eq!(&b[0..4], &[0xf4, 0x1a, 0x42, 0x10]);
        assert_eq!(b[0x06] & 0x10, 0x10);
        assert_eq!(&b[0x08..0x0c], &[0x01, 0x00, 0x80, 0x01]);
        assert_eq!(b[0x34], 0x40);
        // Walk the chain and collect the cfg_types.
        let mut at = b[0x34] as usize;
        let mut seen = Vec::new();
        while at != 0 {
            if b[at] == PCI_CAP_ID_VNDR {
                seen.push(b[at + 3]);
            } else {
                seen.push(b[at]);
            }
            at = b[at + 1] as usize;
        }
        assert_eq!(
            seen,
            vec![
                1,
                2,
                3,
                4,
                10,
                11,
                PCI_CAP_ID_MSIX,
                PCI_CAP_ID_EXP,
                PCI_CAP_ID_PM
            ]
        );
        // MSI-X table size = queues + 1.
        let msix = CAP_MSIX_AT as usize;
        assert_eq!(u16::from_le_bytes([b[msix + 2], b[msix + 3]]) & 0x7ff, 2);
    }

    #[test]
    fn bar_sizing() {
        let mut pc = PciConfig::new(&cfg());
        pc.write(0x20, &[0xff; 4]);
        pc.write(0x24, &[0xff; 4]);
        let mut b = [0u8; 8];
        pc.read(0x20, &mut b);
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0xffff_8004);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0xffff_ffff);
        pc.write(0x14, &[0xff; 4]);
        pc.read(0x14, &mut b[..4]);
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0xffff_f000);
        // Identity is read-only.
        pc.write(0, &[0; 4]);
        pc.read(0, &mut b[..2]);
        assert_eq!(&b[..2], &[0xf4, 0x1a]);
    }

    #[test]
    fn power_state_transitions() {
        let mut pc = PciConfig::new(&cfg());
        let pmcsr = CAP_PM_AT as u64 + 4;
        assert_eq!(pc.power_state(), PM_STATE_D0);
        // D1 and D2 are not supported: the state does not change.
        assert_eq!(pc.write(pmcsr, &[1, 0]), None);
        assert_eq!(pc.power_state(), PM_STATE_D0);
        assert_eq!(pc.write(pmcsr, &[2, 0]), None);
        assert_eq!(pc.power_state(), PM_STATE_D0);
        assert_eq!(pc.write(pmcsr, &[3, 0]), Some(ConfigEvent::EnterD3hot));
        assert_eq!(pc.power_state(), PM_STATE_D3HOT);
        assert_eq!(pc.write(pmcsr, &[3, 0]), None, "already in D3hot");
        assert_eq!(pc.write(pmcsr, &[2, 0]), None);
        assert_eq!(pc.power_state(), PM_STATE_D3HOT);
        // PMCSR reads the state alone: No_Soft_Reset and PME are 0.
        let mut b = [0u8; 2];
        pc.read(pmcsr, &mut b);
        assert_eq!(u16::from_le_bytes(b), 3);
        // The header and PMC are read-only.
        assert_eq!(pc.write(CAP_PM_AT as u64, &[0xff; 4]), None);
        let mut h = [0u8; 4];
        pc.read(CAP_PM_AT as u64, &mut h);
        assert_eq!(h, [PCI_CAP_ID_PM, 0, 0x03, 0x00]);
        // A dword write of PMCSR, PMCSR_BSE and Data: only D0 sticks.
        assert_eq!(
            pc.write(pmcsr, &[0xfc, 0xff, 0xff, 0xff]),
            Some(ConfigEvent::LeaveD3hot)
        );
        let mut d = [0u8; 4];
        pc.read(pmcsr, &mut d);
        assert_eq!(d, [0; 4]);
        assert_eq!(pc.power_state(), PM_STATE_D0);
        pc.write(pmcsr, &[3, 0]);
        pc.reset();
        assert_eq!(pc.power_state(), PM_STATE_D0);
    }

    #[test]
    fn memory_decoding_follows_command_and_power_state() {
        let mut pc = PciConfig::new(&cfg());
        assert!(!pc.memory_enabled(), "memory space disabled after reset");
        pc.write(0x04, &[0x06, 0x00]);
        assert!(pc.memory_enabled());
        pc.write(CAP_PM_AT as u64 + 4, &[3, 0]);
        assert!(!pc.memory_enabled(), "no decoding in D3hot");
        pc.write(CAP_PM_AT as u64 + 4, &[0, 0]);
        assert!(pc.memory_enabled());
        pc.write(0x04, &[0x04, 0x00]);
        assert!(!pc.memory_enabled());
        pc.write(0x04, &[0x02, 0x00]);
        pc.reset();
        assert!(!pc.memory_enabled());
    }

    #[test]
    fn initiate_flr() {
        let mut pc = PciConfig::new(&cfg());
        let devctl = CAP_PCIE_AT as u64 + 8;
        assert_eq!(pc.write(devctl, &[0x30, 0x50]), None);
        assert_eq!(pc.write(devctl + 1, &[0x80]), Some(ConfigEvent::Flr));
        let mut b = [0u8; 2];
        pc.read(devctl, &mut b);
        assert_eq!(b[1] & 0x80, 0, "Initiate FLR reads 0");
        assert_eq!(
            pc.write(
                devctl,
                &(PCIE_DEVCTL_DEFAULT | PCIE_DEVCTL_BCR_FLR).to_le_bytes()
            ),
            Some(ConfigEvent::Flr)
        );
    }

    #[test]
    fn no_reset_fault() {
        let mut pc = PciConfig::new(&Config {
            faults: crate::config::Faults {
                no_reset: true,
                ..Default::default()
            },
            ..cfg()
        });
        let mut b = [0u8; 256];
        pc.read(0, &mut b);
        let at = CAP_PCIE_AT as usize;
        assert_eq!(b[at + 1], 0, "the PCIe capability ends the chain");
        let devcap = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap());
        assert_eq!(devcap & PCIE_DEVCAP_FLR, 0);
        let pm = CAP_PM_AT as usize..(CAP_PM_AT + PM_CAP_LEN) as usize;
        assert!(b[pm].iter().all(|&x| x == 0), "no PM capability");
        assert_eq!(pc.write(CAP_PCIE_AT as u64 + 8, &[0, 0x80]), None);
        assert_eq!(pc.write(CAP_PM_AT as u64 + 4, &[3, 0]), None);
        assert_eq!(pc.power_state(), PM_STATE_D0);
    }

    fn chain(pc: &PciConfig) -> Vec<(u8, u8)> {
        let mut b = [0u8; 256];
        pc.read(0, &mut b);
        let mut at = b[0x34];
        let mut out = Vec::new();
        while at != 0 {
            let id = b[at as usize];
            out.push((
                at,
                if id == PCI_CAP_ID_VNDR {
                    b[at as usize + 3]
                } else {
                    id
                },
            ));
            at = b[at as usize + 1];
        }
        out
    }

    /// (offset, id) of each extended capability.
    fn ext_chain(pc: &PciConfig) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut at = 0x100u16;
        while at >= 0x100 && out.len() < 16 {
            let mut h = [0u8; 4];
            pc.read(at as u64, &mut h);
            let h = u32::from_le_bytes(h);
            if h == 0 {
                break;
            }
            out.push((at, h as u16));
            at = (h >> 20) as u16;
        }
        out
    }

    #[test]
    fn slot_functions_have_acs_and_their_own_caps() {
        let member_cfg = Config {
            owner_socket: Some("/o".into()),
            ..cfg()
        };
        let single = PciConfig::new(&cfg());
        assert_eq!(single.len(), 256);
        assert_eq!(ext_chain(&single), vec![]);
        let member = PciConfig::new(&member_cfg);
        let owner = PciConfig::for_role(&member_cfg, Role::Owner);
        for pc in [&member, &owner] {
            assert_eq!(pc.len(), 4096);
            let mut h = [0u8; 1];
            pc.read(0x0e, &mut h);
            assert_eq!(h[0], 0x80, "multi-function");
            assert_eq!(ext_chain(pc), vec![(0x100, PCI_EXT_CAP_ID_ACS)]);
        }
        assert_eq!(chain(&member), chain(&single));
        let ids: Vec<u8> = chain(&owner).iter().map(|c| c.1).collect();
        assert_eq!(
            ids,
            vec![1, 2, 3, 4, PCI_CAP_ID_MSIX, PCI_CAP_ID_EXP, PCI_CAP_ID_PM]
        );
        // The owner's common configuration is 64 bytes; 3 MSI-X vectors.
        let mut b = [0u8; 4];
        owner.read(CAP_COMMON_AT as u64 + 12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x40);
        owner.read(CAP_MSIX_AT as u64 + 2, &mut b[..2]);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 2);
        // ACS capability bits, control writable in those bits only.
        let mut owner = owner;
        owner.read(0x104, &mut b);
        assert_eq!(b, [0x1d, 0, 0, 0]);
        owner.write(0x106, &[0xff, 0xff]);
        owner.read(0x106, &mut b[..2]);
        assert_eq!(&b[..2], &[0x1d, 0]);
        owner.reset();
        owner.read(0x106, &mut b[..2]);
        assert_eq!(&b[..2], &[0, 0]);
        // With PASID: PASID at 0x100, then ACS.
        let pasid = PciConfig::new(&Config {
            pasid: true,
            ..member_cfg.clone()
        });
        assert_eq!(
            ext_chain(&pasid),
            vec![(0x100, PCI_EXT_CAP_ID_PASID), (0x108, PCI_EXT_CAP_ID_ACS)]
        );
        // Without the tracker the chain skips its slot.
        let no_tracker = PciConfig::new(&Config {
            no_tracker: true,
            ..cfg()
        });
        let ids: Vec<u8> = chain(&no_tracker).iter().map(|c| c.1).collect();
        assert_eq!(
            ids,
            vec![
                1,
                2,
                3,
                4,
                11,
                PCI_CAP_ID_MSIX,
                PCI_CAP_ID_EXP,
                PCI_CAP_ID_PM
            ]
        );
    }

    #[test]
    fn pasid_cap_only_with_option() {
        let pc = PciConfig::new(&cfg());
        assert_eq!(pc.len(), 256);
        assert!(!pc.pasid_enabled());
        let mut pc = PciConfig::new(&Config {
            pasid: true,
            ..cfg()
        });
        assert_eq!(pc.len(), 4096);
        let mut b = [0u8; 4];
        pc.read(0x100, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x1_001b);
        pc.write(0x106, &[1, 0]);
        assert!(pc.pasid_enabled());
        pc.reset();
        assert!(!pc.pasid_enabled());
    }
}
