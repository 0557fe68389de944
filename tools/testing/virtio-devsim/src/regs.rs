// SPDX-License-Identifier: GPL-2.0
//! Byte-level helpers for little-endian register blocks.
//!
//! Drivers may access a register with any width (a 64-bit field is often
//! written as two 32-bit halves), so every register block is modelled as a
//! set of fields and each access is split into the bytes of the fields it
//! covers.

/// A little-endian field of a register block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Offset of the field from the start of its block.
    pub offset: u64,
    /// Width of the field in bytes (1, 2, 4 or 8).
    pub width: u64,
}

impl Field {
    /// Creates a field descriptor.
    pub const fn new(offset: u64, width: u64) -> Self {
        Self { offset, width }
    }

    /// Whether an access of `len` bytes at `off` touches this field.
    pub fn overlaps(&self, off: u64, len: usize) -> bool {
        let end = off.saturating_add(len as u64);
        off < self.offset + self.width && self.offset < end
    }

    /// Copies the bytes of `value` that an access at `off` covers into `buf`.
    pub fn read(&self, off: u64, buf: &mut [u8], value: u64) {
        let bytes = value.to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            let pos = off.saturating_add(i as u64);
            if pos >= self.offset && pos < self.offset + self.width {
                *b = bytes[(pos - self.offset) as usize];
            }
        }
    }

    /// Merges the bytes an access at `off` writes into `old`. Returns `None`
    /// when the access does not touch this field.
    pub fn write(&self, off: u64, data: &[u8], old: u64) -> Option<u64> {
        if !self.overlaps(off, data.len()) {
            return None;
        }
        let mut bytes = old.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            let pos = off.saturating_add(i as u64);
            if pos >= self.offset && pos < self.offset + self.width {
                bytes[(pos - self.offset) as usize] = *b;
            }
        }
        let mask = if self.width >= 8 {
            u64::MAX
        } else {
            (1u64 << (self.width * 8)) - 1
        };
        Some(u64::from_le_bytes(bytes) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_access_of_a_64_bit_field() {
        let f = Field::new(8, 8);
        let v = f.write(8, &0x1122_3344u32.to_le_bytes(), 0).unwrap();
        let v = f.write(12, &0x5566_7788u32.to_le_bytes(), v).unwrap();
        assert_eq!(v, 0x5566_7788_1122_3344);
        let mut buf = [0u8; 4];
        f.read(12, &mut buf, v);
        assert_eq!(u32::from_le_bytes(buf), 0x5566_7788);
    }

    #[test]
    fn access_outside_the_field_is_ignored() {
        let f = Field::new(4, 2);
        assert_eq!(f.write(0, &[1, 2, 3, 4], 7), None);
        assert_eq!(f.write(6, &[1], 7), None);
        let v = f.write(3, &[0xaa, 0xbb, 0xcc, 0xdd], 0).unwrap();
        assert_eq!(v, 0xccbb);
    }
}
