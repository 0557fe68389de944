// SPDX-License-Identifier: GPL-2.0
//! Fuzzes every parser of the admin command codec.
//!
//! The first four input bytes are a `used_len` for `parse_completion`; the
//! rest is fed to every parser as it is, and accepted results are checked
//! against what they promise (lengths, counts, rules of
//! `validate_start`), then encoded back where an encoder exists.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::admin::{
    encode_read_records, encode_start, max_read_entries, parse_completion, parse_opcode_bitmap,
    parse_read_request, parse_start, read_window_valid, start_len, validate_start, CodecError,
    Header, ReadRecords, StartEntry, WriteRecordCaps, HEADER_LEN, READ_RESULT_HEADER_LEN,
    STATUS_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Some((used, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let used = u32::from_le_bytes(*used);

    if let Ok(h) = Header::parse(rest) {
        assert!(rest.len() >= HEADER_LEN);
        let mut out = [0u8; HEADER_LEN];
        assert_eq!(h.encode(&mut out), Ok(HEADER_LEN));
        assert_eq!(Header::parse(&out), Ok(h));
    }
    if let Ok(b) = parse_opcode_bitmap(rest) {
        assert_eq!(b.to_le_bytes(), rest[..8]);
    }
    match WriteRecordCaps::parse(rest) {
        Ok(c) => {
            assert!(c.page_size_bitmap != 0 && c.max_ranges != 0);
            assert_eq!(
                c.page_sizes().count(),
                c.page_size_bitmap.count_ones() as usize
            );
            assert!(c.page_sizes().all(|p| c.supports_page_size(p)));
        }
        Err(e) => assert!(matches!(
            e,
            CodecError::Truncated | CodecError::NoPageSize | CodecError::NoRanges
        )),
    }
    if let Ok((page_size, entries)) = parse_start(rest) {
        assert_eq!(start_len(entries.len()), Some(rest.len()));
        let v: Vec<StartEntry> = entries.clone().collect();
        assert_eq!(v.len(), entries.len());
        let mut out = vec![0u8; rest.len()];
        assert_eq!(encode_start(page_size, &v, &mut out), Ok(rest.len()));
        // Only the reserved bytes may differ.
        assert_eq!(out[..12], rest[..12]);
        assert_eq!(out[16..], rest[16..]);
        let caps = WriteRecordCaps {
            page_size_bitmap: u32::MAX,
            max_ranges: u32::MAX,
            record_capacity: 0,
        };
        if validate_start(page_size, entries, &caps).is_ok() {
            assert!(!v.is_empty() && page_size.is_power_of_two());
            let mut end = 0u64;
            for e in &v {
                assert!(e.iova >= end && e.iova % page_size == 0 && e.page_count > 0);
                end = e.iova + e.page_count * page_size;
            }
        }
    }
    if let Ok((iova, length)) = parse_read_request(rest) {
        let _ = read_window_valid(iova, length);
    }
    if let Ok((_, result)) = parse_completion(rest, used) {
        assert_eq!(result.len() + STATUS_LEN, used as usize);
        if let Ok(rr) = ReadRecords::parse(result) {
            assert!(rr.len() <= max_read_entries(rest.len()));
        }
    }
    if let Ok(rr) = ReadRecords::parse(rest) {
        let n = rr.len();
        assert!(READ_RESULT_HEADER_LEN + 8 * n <= rest.len());
        assert_eq!(rr.is_empty(), n == 0);
        let v: Vec<u64> = rr.iter().collect();
        assert_eq!(v.len(), n);
        let mut out = vec![0u8; READ_RESULT_HEADER_LEN + 8 * n];
        assert_eq!(encode_read_records(rr.flags, &v, &mut out), Ok(out.len()));
        assert_eq!(out, rest[..out.len()]);
    }
});
