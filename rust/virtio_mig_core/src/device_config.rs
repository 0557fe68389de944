// SPDX-License-Identifier: GPL-2.0

//! How to read a device type's configuration: one access per field at its
//! natural width, as the virtio specification asks of drivers (8-bit fields
//! with 8-bit accesses, 16-bit with 16-bit, 32-bit and 64-bit fields with
//! 32-bit accesses), and no access to reserved bytes, which are saved as 0.
//!
//! A device type without a field table here is read a byte at a time, and so
//! is the part of a configuration past its table (a newer device's fields):
//! correct for 8-bit fields, and the only width that is safe for fields whose
//! layout is unknown.

/// One read of the device configuration: `width` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigRead {
    /// Offset in the device configuration.
    pub offset: u16,
    /// 1, 2 or 4 bytes.
    pub width: u8,
}

/// Virtio device type of block devices.
pub const VIRTIO_ID_BLOCK: u32 = 2;

const fn f(offset: u16, width: u8) -> ConfigRead {
    ConfigRead { offset, width }
}

/// `struct virtio_blk_config` (virtio 1.3, 5.2.4), in offset order; the gaps
/// are its `unused` bytes.
const BLOCK_FIELDS: &[ConfigRead] = &[
    f(0, 4),  // capacity, low half
    f(4, 4),  // capacity, high half
    f(8, 4),  // size_max
    f(12, 4), // seg_max
    f(16, 2), // geometry.cylinders
    f(18, 1), // geometry.heads
    f(19, 1), // geometry.sectors
    f(20, 4), // blk_size
    f(24, 1), // topology.physical_block_exp
    f(25, 1), // topology.alignment_offset
    f(26, 2), // topology.min_io_size
    f(28, 4), // topology.opt_io_size
    f(32, 1), // writeback
    f(34, 2), // num_queues
    f(36, 4), // max_discard_sectors
    f(40, 4), // max_discard_seg
    f(44, 4), // discard_sector_alignment
    f(48, 4), // max_write_zeroes_sectors
    f(52, 4), // max_write_zeroes_seg
    f(56, 1), // write_zeroes_may_unmap
    f(60, 4), // max_secure_erase_sectors
    f(64, 4), // max_secure_erase_seg
    f(68, 4), // secure_erase_sector_alignment
    f(72, 4), // zoned.zone_sectors
    f(76, 4), // zoned.max_open_zones
    f(80, 4), // zoned.max_active_zones
    f(84, 4), // zoned.max_append_sectors
    f(88, 4), // zoned.write_granularity
    f(92, 1), // zoned.model
];

/// The fields of `device_type`'s configuration, or `&[]` when unknown.
pub fn fields(device_type: u32) -> &'static [ConfigRead] {
    match device_type {
        VIRTIO_ID_BLOCK => BLOCK_FIELDS,
        _ => &[],
    }
}

/// `VIRTIO_BLK_F_CONFIG_WCE`: the driver may switch the cache mode in `writeback`.
pub const VIRTIO_BLK_F_CONFIG_WCE: u64 = 1 << 11;

/// `writeback` of `struct virtio_blk_config`.
const BLOCK_WRITEBACK: &[ConfigRead] = &[f(32, 1)];

/// The fields of a `device_type` configuration the driver writes, with the features it
/// negotiated, `driver_features`: the destination gets them back from the stream (its device
/// starts with the defaults). Only fields inside the first `len` bytes count.
pub fn writable(
    device_type: u32,
    driver_features: u64,
    len: u16,
) -> impl Iterator<Item = ConfigRead> {
    let table = match device_type {
        VIRTIO_ID_BLOCK if driver_features & VIRTIO_BLK_F_CONFIG_WCE != 0 => BLOCK_WRITEBACK,
        _ => &[],
    };
    table
        .iter()
        .copied()
        .filter(move |w| u32::from(w.offset) + u32::from(w.width) <= u32::from(len))
}

/// The reads that fetch the first `len` bytes of a `device_type`
/// configuration, in offset order.
pub fn reads(device_type: u32, len: u16) -> ConfigReads {
    ConfigReads {
        table: fields(device_type),
        next_field: 0,
        pos: 0,
        len,
    }
}

/// Iterator of [`reads`].
#[derive(Clone, Debug)]
pub struct ConfigReads {
    table: &'static [ConfigRead],
    next_field: usize,
    /// First byte neither read nor skipped.
    pos: u16,
    len: u16,
}

impl Iterator for ConfigReads {
    type Item = ConfigRead;

    fn next(&mut self) -> Option<ConfigRead> {
        if let Some(&field) = self.table.get(self.next_field) {
            if u32::from(field.offset) + u32::from(field.width) <= u32::from(self.len) {
                // Whole field inside: the bytes before it are reserved.
                self.next_field += 1;
                self.pos = field.offset + u16::from(field.width);
                return Some(field);
            }
            // The configuration ends inside or before this field: what is left of it (a
            // field the device's shorter configuration cuts) is read bytewise.
            self.table = &[];
            self.pos = self.pos.max(field.offset);
        }
        if self.pos >= self.len {
            return None;
        }
        let byte = ConfigRead {
            offset: self.pos,
            width: 1,
        };
        self.pos += 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(device_type: u32, len: u16) -> Vec<ConfigRead> {
        reads(device_type, len).collect()
    }

    #[test]
    fn block_fields_are_read_at_natural_width_without_reserved_bytes() {
        // The device model's configuration: up to write_zeroes_may_unmap and unused1.
        let r = all(VIRTIO_ID_BLOCK, 0x3c);
        assert_eq!(r.len(), 20);
        assert_eq!(r[0], f(0, 4));
        assert_eq!(r[1], f(4, 4));
        assert!(r
            .iter()
            .all(|x| x.offset != 33 && !(57..60).contains(&x.offset)));
        assert_eq!(r.last(), Some(&f(56, 1)));
        // Every access is aligned to its width.
        assert!(r.iter().all(|x| x.offset % u16::from(x.width) == 0));
    }

    #[test]
    fn writeback_is_written_back_only_with_config_wce() {
        let w = |features, len| writable(VIRTIO_ID_BLOCK, features, len).collect::<Vec<_>>();
        assert_eq!(w(VIRTIO_BLK_F_CONFIG_WCE, 0x3c), [f(32, 1)]);
        assert_eq!(w(VIRTIO_BLK_F_CONFIG_WCE | 1 << 32, 33), [f(32, 1)]);
        assert_eq!(w(!VIRTIO_BLK_F_CONFIG_WCE, 0x3c), []);
        assert_eq!(w(VIRTIO_BLK_F_CONFIG_WCE, 32), []);
        assert_eq!(writable(1, !0, 0x3c).count(), 0);
        // What is written back was read at the same width.
        assert!(reads(VIRTIO_ID_BLOCK, 0x3c).any(|r| r == f(32, 1)));
    }

    #[test]
    fn a_cut_field_is_read_bytewise() {
        assert_eq!(
            all(VIRTIO_ID_BLOCK, 10),
            [f(0, 4), f(4, 4), f(8, 1), f(9, 1)]
        );
        assert_eq!(all(VIRTIO_ID_BLOCK, 0), []);
    }

    #[test]
    fn past_the_table_and_unknown_types_read_bytes() {
        let r = all(VIRTIO_ID_BLOCK, 100);
        assert_eq!(&r[r.len() - 4..], [f(96, 1), f(97, 1), f(98, 1), f(99, 1)]);
        assert_eq!(r.iter().filter(|x| x.offset == 92).count(), 1);
        let net = all(1, 6);
        assert_eq!(net.len(), 6);
        assert!(net.iter().enumerate().all(|(i, x)| *x == f(i as u16, 1)));
    }

    #[test]
    fn the_block_table_is_sorted_and_disjoint() {
        let t = fields(VIRTIO_ID_BLOCK);
        for w in t.windows(2) {
            assert!(w[0].offset + u16::from(w[0].width) <= w[1].offset);
        }
        assert!(t.iter().all(|x| matches!(x.width, 1 | 2 | 4)));
    }
}
