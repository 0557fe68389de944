// SPDX-License-Identifier: GPL-2.0
//! Tests of the admin command codec against byte arrays written from the
//! protocol text.

use proptest::prelude::*;
use virtio_mig_core::admin::*;

#[test]
fn constants_match_the_protocol() {
    assert_eq!(VIRTIO_F_ADMIN_VQ, 41);
    assert_eq!(COMMON_CFG_ADMIN_QUEUE_INDEX, 60);
    assert_eq!(COMMON_CFG_ADMIN_QUEUE_NUM, 62);
    assert_eq!(
        [
            opcode::LIST_QUERY,
            opcode::LIST_USE,
            opcode::WRITE_RECORD_CAP_QUERY,
            opcode::WRITE_RECORDS_START,
            opcode::WRITE_RECORDS_STOP,
            opcode::WRITE_RECORDS_READ
        ],
        [0x0, 0x1, 0x13, 0x14, 0x15, 0x16]
    );
    assert_eq!([group_type::SRIOV, group_type::SLOT], [1, 2]);
    assert_eq!(
        [status::OK, status::EAGAIN, status::ENOMEM, status::EINVAL],
        [0, 11, 12, 22]
    );
    assert_eq!(
        [
            qualifier::OK,
            qualifier::INVALID_COMMAND,
            qualifier::INVALID_OPCODE,
            qualifier::INVALID_FIELD,
            qualifier::INVALID_GROUP,
            qualifier::INVALID_MEMBER,
            qualifier::NORESOURCE,
            qualifier::TOOMANY
        ],
        [0, 1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!((HEADER_LEN, STATUS_LEN, READ_RESULT_HEADER_LEN), (24, 8, 8));
    assert_eq!((READ_FLAG_MORE, READ_FLAG_OVERFLOW), (1, 2));
    assert_eq!(WRITE_RECORDING_OPCODES, 0x78_0000);
    // The register table agrees.
    use virtio_mig_core::layout;
    assert_eq!(
        layout::VIRTIO_ADMIN_CMD_WRITE_RECORD_CAP_QUERY,
        opcode::WRITE_RECORD_CAP_QUERY
    );
    assert_eq!(
        layout::VIRTIO_ADMIN_CMD_WRITE_RECORD_READ,
        opcode::WRITE_RECORDS_READ
    );
}

#[test]
fn header_bytes() {
    let h = Header {
        opcode: opcode::WRITE_RECORDS_READ,
        group_type: group_type::SLOT,
        member_id: 0x0102_0304_0506_0708,
    };
    let mut out = [0xaau8; 30];
    assert_eq!(h.encode(&mut out), Ok(24));
    #[rustfmt::skip]
    let want: [u8; 30] = [
        0x16, 0x00,             // opcode
        0x02, 0x00,             // group_type
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // member id
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, // untouched
    ];
    assert_eq!(out, want);
    assert_eq!(Header::parse(&out), Ok(h));
    // Reserved bytes are ignored by the parser.
    let mut r = out;
    r[4..16].fill(0xff);
    assert_eq!(Header::parse(&r), Ok(h));
}

#[test]
fn header_errors() {
    let h = Header {
        opcode: 0,
        group_type: 1,
        member_id: 0,
    };
    assert_eq!(h.encode(&mut [0; 23]), Err(CodecError::BufferTooSmall));
    assert_eq!(h.encode(&mut []), Err(CodecError::BufferTooSmall));
    assert_eq!(Header::parse(&[0; 23]), Err(CodecError::Truncated));
    assert_eq!(Header::parse(&[]), Err(CodecError::Truncated));
}

#[test]
fn opcode_bitmap() {
    let mut out = [0u8; 8];
    assert_eq!(encode_opcode_bitmap(0x78_0003, &mut out), Ok(8));
    assert_eq!(out, [0x03, 0x00, 0x78, 0, 0, 0, 0, 0]);
    assert_eq!(
        encode_opcode_bitmap(1, &mut [0; 7]),
        Err(CodecError::BufferTooSmall)
    );
    // First word of a longer result.
    let r = [0x03, 0, 0x78, 0, 0, 0, 0, 0x80, 0xff, 0xff];
    assert_eq!(parse_opcode_bitmap(&r), Ok(0x8000_0000_0078_0003));
    assert_eq!(parse_opcode_bitmap(&r[..7]), Err(CodecError::Truncated));
    assert_eq!(parse_opcode_bitmap(&[]), Err(CodecError::Truncated));
    let b = parse_opcode_bitmap(&r).unwrap();
    assert!(has_opcode(b, opcode::LIST_QUERY));
    assert!(has_opcode(b, opcode::WRITE_RECORDS_READ));
    assert!(!has_opcode(b, 0x2));
    assert!(has_opcode(b, 63));
    assert!(!has_opcode(u64::MAX, 64));
    assert!(!has_opcode(u64::MAX, u16::MAX));
    assert_eq!(b & WRITE_RECORDING_OPCODES, WRITE_RECORDING_OPCODES);
}

#[test]
fn caps_bytes() {
    #[rustfmt::skip]
    let r = [
        0x11, 0x00, 0x00, 0x00, // bitmap: 4 KiB and 64 KiB
        0x04, 0x00, 0x00, 0x00, // 4 ranges
        0x00, 0x00, 0x01, 0x00, // 65536 records
        0xee, 0xee, 0xee, 0xee, // reserved (ignored)
    ];
    let caps = WriteRecordCaps::parse(&r).unwrap();
    assert_eq!(
        caps,
        WriteRecordCaps {
            page_size_bitmap: 0x11,
            max_ranges: 4,
            record_capacity: 0x1_0000,
        }
    );
    assert_eq!(caps.page_sizes().collect::<Vec<_>>(), [4096, 65536]);
    assert!(caps.supports_page_size(4096));
    assert!(caps.supports_page_size(65536));
    assert!(!caps.supports_page_size(8192));
    assert!(!caps.supports_page_size(2048));
    assert!(!caps.supports_page_size(0));
    assert!(!caps.supports_page_size(4097));
    assert!(!caps.supports_page_size(1 << 63));
    // 12 bytes suffice.
    assert_eq!(WriteRecordCaps::parse(&r[..12]), Ok(caps));
    let mut out = [0xffu8; 16];
    assert_eq!(caps.encode(&mut out), Ok(16));
    assert_eq!(out[..12], r[..12]);
    assert_eq!(out[12..], [0; 4]);
    assert_eq!(caps.encode(&mut [0; 15]), Err(CodecError::BufferTooSmall));
    // All 32 sizes.
    let all = WriteRecordCaps {
        page_size_bitmap: u32::MAX,
        ..caps
    };
    let sizes: Vec<u64> = all.page_sizes().collect();
    assert_eq!(sizes.len(), 32);
    assert_eq!(sizes[0], 4096);
    assert_eq!(sizes[31], 1 << 43);
    assert!(all.supports_page_size(1 << 43));
    assert!(!all.supports_page_size(1 << 44));
}

#[test]
fn caps_errors() {
    let mut r = [0u8; 16];
    assert_eq!(WriteRecordCaps::parse(&r[..11]), Err(CodecError::Truncated));
    assert_eq!(WriteRecordCaps::parse(&[]), Err(CodecError::Truncated));
    // No page size (checked first), then no range.
    assert_eq!(WriteRecordCaps::parse(&r), Err(CodecError::NoPageSize));
    r[4] = 1;
    assert_eq!(WriteRecordCaps::parse(&r), Err(CodecError::NoPageSize));
    r[4] = 0;
    r[0] = 1;
    assert_eq!(WriteRecordCaps::parse(&r), Err(CodecError::NoRanges));
    r[4] = 1;
    assert!(WriteRecordCaps::parse(&r).is_ok());
}

#[test]
fn start_bytes() {
    let entries = [
        StartEntry {
            iova: 0x1000,
            page_count: 3,
        },
        StartEntry {
            iova: 0x1_0000_0000,
            page_count: 0x100,
        },
    ];
    let mut out = [0xaau8; 50];
    assert_eq!(encode_start(4096, &entries, &mut out), Ok(48));
    #[rustfmt::skip]
    let want: [u8; 48] = [
        0x00, 0x10, 0, 0, 0, 0, 0, 0, // page_size 4096
        0x02, 0, 0, 0,                // count 2
        0, 0, 0, 0,                   // reserved
        0x00, 0x10, 0, 0, 0, 0, 0, 0, // iova 0x1000
        0x03, 0, 0, 0, 0, 0, 0, 0,    // 3 pages
        0, 0, 0, 0, 0x01, 0, 0, 0,    // iova 0x1_0000_0000
        0x00, 0x01, 0, 0, 0, 0, 0, 0, // 256 pages
    ];
    assert_eq!(out[..48], want);
    assert_eq!(out[48..], [0xaa, 0xaa]);
    let (ps, it) = parse_start(&want).unwrap();
    assert_eq!(ps, 4096);
    assert_eq!(it.len(), 2);
    assert_eq!(it.collect::<Vec<_>>(), entries);
    assert_eq!(start_len(2), Some(48));
    assert_eq!(start_len(usize::MAX), None);
    // No entries: 16 bytes, count 0 (refused by validate_start, not here).
    let mut out = [0xaau8; 16];
    assert_eq!(encode_start(8192, &[], &mut out), Ok(16));
    assert_eq!(out, [0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let (ps, mut it) = parse_start(&out).unwrap();
    assert_eq!((ps, it.next()), (8192, None));
}

#[test]
fn start_errors() {
    let e = [StartEntry {
        iova: 0,
        page_count: 1,
    }];
    assert_eq!(
        encode_start(4096, &e, &mut [0; 31]),
        Err(CodecError::BufferTooSmall)
    );
    assert_eq!(encode_start(4096, &e, &mut [0; 32]), Ok(32));
    let mut good = [0u8; 32];
    encode_start(4096, &e, &mut good).unwrap();
    assert_eq!(parse_start(&good[..15]).err(), Some(CodecError::Truncated));
    assert_eq!(parse_start(&[]).err(), Some(CodecError::Truncated));
    // Shorter or longer than 16 + 16 * count.
    assert_eq!(parse_start(&good[..31]).err(), Some(CodecError::BadLength));
    assert_eq!(parse_start(&good[..16]).err(), Some(CodecError::BadLength));
    let mut long = [0u8; 48];
    long[..32].copy_from_slice(&good);
    assert_eq!(parse_start(&long).err(), Some(CodecError::BadLength));
    // A count that cannot fit.
    let mut huge = good;
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(parse_start(&huge).err(), Some(CodecError::BadLength));
}

#[test]
fn start_len_boundaries() {
    // TooManyEntries needs a slice of more than u32::MAX entries (64 GiB),
    // which a test cannot build; the length arithmetic is checked here.
    assert_eq!(start_len(0), Some(16));
    assert_eq!(start_len((usize::MAX - 16) / 16), Some(usize::MAX - 15));
    assert_eq!(start_len((usize::MAX - 16) / 16 + 1), None);
}

fn caps(bitmap: u32, max_ranges: u32) -> WriteRecordCaps {
    WriteRecordCaps {
        page_size_bitmap: bitmap,
        max_ranges,
        record_capacity: 16,
    }
}

fn se(iova: u64, page_count: u64) -> StartEntry {
    StartEntry { iova, page_count }
}

#[test]
fn validate_start_rules() {
    let c = caps(0b11, 3);
    assert_eq!(validate_start(4096, [se(0, 1)], &c), Ok(()));
    assert_eq!(
        validate_start(8192, [se(0, 1), se(0x2000, 2), se(0x8000, 1)], &c),
        Ok(())
    );
    // Touching entries are fine.
    assert_eq!(validate_start(4096, [se(0, 2), se(0x2000, 1)], &c), Ok(()));
    assert_eq!(
        validate_start(16384, [se(0, 1)], &c),
        Err(StartFault::PageSize)
    );
    assert_eq!(
        validate_start(4095, [se(0, 1)], &c),
        Err(StartFault::PageSize)
    );
    assert_eq!(validate_start(0, [se(0, 1)], &c), Err(StartFault::PageSize));
    assert_eq!(validate_start(4096, [], &c), Err(StartFault::Count));
    assert_eq!(
        validate_start(
            4096,
            [se(0, 1), se(0x1000, 1), se(0x2000, 1), se(0x3000, 1)],
            &c
        ),
        Err(StartFault::Count)
    );
    assert_eq!(
        validate_start(4096, [se(0, 2), se(0x1000, 1)], &c),
        Err(StartFault::Order(1))
    );
    assert_eq!(
        validate_start(4096, [se(0x2000, 1), se(0x1000, 1)], &c),
        Err(StartFault::Order(1))
    );
    assert_eq!(
        validate_start(8192, [se(0x1000, 1)], &c),
        Err(StartFault::Misaligned(0))
    );
    assert_eq!(
        validate_start(4096, [se(0, 1), se(0x1000, 0)], &c),
        Err(StartFault::NoPages(1))
    );
    // The end 2^64 does not fit.
    assert_eq!(
        validate_start(4096, [se(u64::MAX - 0xfff, 1)], &c),
        Err(StartFault::Overflow(0))
    );
    assert_eq!(validate_start(4096, [se(u64::MAX - 0x1fff, 1)], &c), Ok(()));
    assert_eq!(
        validate_start(4096, [se(0, u64::MAX)], &c),
        Err(StartFault::Overflow(0))
    );
    // Through the parser, as the device model does.
    let mut buf = [0u8; 48];
    let n = encode_start(4096, &[se(0, 1), se(0x1000, 1)], &mut buf).unwrap();
    let (ps, it) = parse_start(&buf[..n]).unwrap();
    assert_eq!(validate_start(ps, it, &c), Ok(()));
}

#[test]
fn read_request_bytes() {
    let mut out = [0u8; 16];
    assert_eq!(encode_read(0x1234_5000, 0x20_0000, &mut out), Ok(16));
    #[rustfmt::skip]
    let want = [
        0x00, 0x50, 0x34, 0x12, 0, 0, 0, 0, // iova
        0x00, 0x00, 0x20, 0x00, 0, 0, 0, 0, // length
    ];
    assert_eq!(out, want);
    assert_eq!(parse_read_request(&want), Ok((0x1234_5000, 0x20_0000)));
    assert_eq!(
        encode_read(0, 1, &mut [0; 15]),
        Err(CodecError::BufferTooSmall)
    );
    assert_eq!(parse_read_request(&want[..15]), Err(CodecError::Truncated));
    assert_eq!(parse_read_request(&[]), Err(CodecError::Truncated));
    assert!(read_window_valid(0, 1));
    // The end iova + length must fit in 64 bits (2^64 does not).
    assert!(read_window_valid(u64::MAX - 1, 1));
    assert!(!read_window_valid(u64::MAX, 1));
    assert!(!read_window_valid(2, u64::MAX - 1));
    assert!(!read_window_valid(5, 0));
    assert!(read_window_valid(0, u64::MAX));
}

#[test]
fn completion() {
    #[rustfmt::skip]
    let w = [
        0x16, 0x00, // EINVAL
        0x03, 0x00, // INVALID_FIELD
        0xee, 0xee, 0xee, 0xee, // reserved
        1, 2, 3, 4, 5,
    ];
    let (c, r) = parse_completion(&w, 8).unwrap();
    assert_eq!(
        c,
        Completion {
            status: status::EINVAL,
            qualifier: qualifier::INVALID_FIELD
        }
    );
    assert!(!c.is_ok());
    assert_eq!(r, &[] as &[u8]);
    let (_, r) = parse_completion(&w, 11).unwrap();
    assert_eq!(r, [1, 2, 3]);
    let (_, r) = parse_completion(&w, 13).unwrap();
    assert_eq!(r, [1, 2, 3, 4, 5]);
    assert_eq!(parse_completion(&w, 7), Err(CodecError::Truncated));
    assert_eq!(parse_completion(&w, 0), Err(CodecError::Truncated));
    assert_eq!(parse_completion(&w, 14), Err(CodecError::BadLength));
    assert_eq!(parse_completion(&w, u32::MAX), Err(CodecError::BadLength));
    assert_eq!(parse_completion(&w[..7], 8), Err(CodecError::BadLength));
    assert_eq!(parse_completion(&[], 0), Err(CodecError::Truncated));
    let ok = Completion {
        status: status::OK,
        qualifier: qualifier::OK,
    };
    assert!(ok.is_ok());
    let mut out = [0xffu8; 8];
    assert_eq!(c.encode(&mut out), Ok(8));
    assert_eq!(out, [0x16, 0, 0x03, 0, 0, 0, 0, 0]);
    assert_eq!(c.encode(&mut [0; 7]), Err(CodecError::BufferTooSmall));
}

#[test]
fn read_records_bytes() {
    #[rustfmt::skip]
    let r = [
        0x02, 0, 0, 0,             // count 2
        0x03, 0, 0, 0,             // MORE | OVERFLOW
        0x00, 0x30, 0, 0, 0, 0, 0, 0, // 0x3000
        0x00, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // top page
        0xee, 0xee,                // trailing (ignored)
    ];
    let rr = ReadRecords::parse(&r).unwrap();
    assert_eq!(rr.flags, 3);
    assert_eq!(rr.len(), 2);
    assert!(!rr.is_empty());
    assert!(rr.more() && rr.overflow());
    assert_eq!(
        rr.iter().collect::<Vec<_>>(),
        [0x3000, 0xffff_ffff_ffff_f000]
    );
    let mut out = [0xaau8; 26];
    assert_eq!(
        encode_read_records(3, &[0x3000, 0xffff_ffff_ffff_f000], &mut out),
        Ok(24)
    );
    assert_eq!(out[..24], r[..24]);
    assert_eq!(out[24..], [0xaa, 0xaa]);
    // Flags alone.
    let rr = ReadRecords::parse(&[0, 0, 0, 0, 1, 0, 0, 0]).unwrap();
    assert!(rr.is_empty() && rr.more() && !rr.overflow());
    assert_eq!(rr.len(), 0);
    assert_eq!(rr.iter().count(), 0);
    let rr = ReadRecords::parse(&[0, 0, 0, 0, 2, 0, 0, 0]).unwrap();
    assert!(!rr.more() && rr.overflow());
    let rr = ReadRecords::parse(&[0, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff]).unwrap();
    assert!(!rr.more() && !rr.overflow());
}

#[test]
fn read_records_errors() {
    let mut r = [0u8; 24];
    encode_read_records(0, &[0x1000, 0x2000], &mut r).unwrap();
    assert_eq!(ReadRecords::parse(&r[..7]), Err(CodecError::Truncated));
    assert_eq!(ReadRecords::parse(&[]), Err(CodecError::Truncated));
    assert_eq!(ReadRecords::parse(&r[..23]), Err(CodecError::Truncated));
    assert_eq!(ReadRecords::parse(&r[..16]), Err(CodecError::Truncated));
    assert!(ReadRecords::parse(&r).is_ok());
    let mut huge = r;
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(ReadRecords::parse(&huge), Err(CodecError::Truncated));
    assert_eq!(
        encode_read_records(0, &[1, 2], &mut [0; 23]),
        Err(CodecError::BufferTooSmall)
    );
    assert_eq!(
        encode_read_records(0, &[], &mut [0; 7]),
        Err(CodecError::BufferTooSmall)
    );
    assert_eq!(encode_read_records(0, &[], &mut [0; 8]), Ok(8));
}

#[test]
fn read_sizes() {
    assert_eq!(max_read_entries(0), 0);
    assert_eq!(max_read_entries(15), 0);
    assert_eq!(max_read_entries(16), 0);
    assert_eq!(max_read_entries(23), 0);
    assert_eq!(max_read_entries(24), 1);
    assert_eq!(max_read_entries(4096), 510);
    assert_eq!(max_read_entries(usize::MAX), u32::MAX as usize);
    assert_eq!(read_writable_len(0), Some(16));
    assert_eq!(read_writable_len(510), Some(4096));
    assert_eq!(read_writable_len(usize::MAX / 8), None);
    for n in 0..100 {
        assert_eq!(max_read_entries(read_writable_len(n).unwrap()), n);
    }
}

#[test]
fn a_whole_read_command() {
    // Driver side: header + data in the readable buffer.
    let mut readable = [0u8; HEADER_LEN + 16];
    let h = Header {
        opcode: opcode::WRITE_RECORDS_READ,
        group_type: group_type::SLOT,
        member_id: 1,
    };
    let n = h.encode(&mut readable).unwrap();
    let n = n + encode_read(0x10_0000, 0x4000, &mut readable[n..]).unwrap();
    assert_eq!(n, readable.len());
    // Device side.
    let dh = Header::parse(&readable).unwrap();
    assert_eq!(dh, h);
    let (iova, len) = parse_read_request(&readable[HEADER_LEN..]).unwrap();
    assert!(read_window_valid(iova, len));
    let mut writable = [0u8; 40];
    let cap = max_read_entries(writable.len());
    assert_eq!(cap, 3);
    let recs = [0x10_0000, 0x10_3000];
    Completion {
        status: 0,
        qualifier: 0,
    }
    .encode(&mut writable)
    .unwrap();
    let used = 8 + encode_read_records(0, &recs, &mut writable[8..]).unwrap();
    // Driver side again.
    let (c, result) = parse_completion(&writable, used as u32).unwrap();
    assert!(c.is_ok());
    let rr = ReadRecords::parse(result).unwrap();
    assert_eq!(rr.iter().collect::<Vec<_>>(), recs);
    assert!(!rr.more());
}

#[test]
fn errors_display() {
    assert_eq!(CodecError::Truncated.to_string(), "truncated");
    assert_eq!(
        StartFault::Order(2).to_string(),
        "entry 2 overlaps or precedes the previous one"
    );
}

fn entries() -> impl Strategy<Value = Vec<StartEntry>> {
    prop::collection::vec(
        (any::<u64>(), any::<u64>()).prop_map(|(iova, page_count)| StartEntry { iova, page_count }),
        0..20,
    )
}

proptest! {
    #[test]
    fn prop_header_round_trip(opcode: u16, group_type: u16, member_id: u64) {
        let h = Header { opcode, group_type, member_id };
        let mut out = [0u8; HEADER_LEN];
        prop_assert_eq!(h.encode(&mut out), Ok(HEADER_LEN));
        prop_assert_eq!(&out[4..16], &[0u8; 12]);
        prop_assert_eq!(Header::parse(&out), Ok(h));
    }

    #[test]
    fn prop_caps_round_trip(page_size_bitmap in 1u32.., max_ranges in 1u32.., record_capacity: u32) {
        let c = WriteRecordCaps { page_size_bitmap, max_ranges, record_capacity };
        let mut out = [0u8; 16];
        c.encode(&mut out).unwrap();
        prop_assert_eq!(WriteRecordCaps::parse(&out), Ok(c));
        let sizes: Vec<u64> = c.page_sizes().collect();
        prop_assert_eq!(sizes.len(), page_size_bitmap.count_ones() as usize);
        prop_assert!(sizes.windows(2).all(|w| w[0] < w[1]));
        for s in sizes {
            prop_assert!(s.is_power_of_two() && c.supports_page_size(s));
            prop_assert!(page_size_bitmap & (1 << (s.trailing_zeros() - 12)) != 0);
        }
    }

    #[test]
    fn prop_start_round_trip(page_size: u64, e in entries()) {
        let mut out = vec![0u8; 16 + 16 * e.len()];
        prop_assert_eq!(encode_start(page_size, &e, &mut out), Ok(out.len()));
        let (ps, it) = parse_start(&out).unwrap();
        prop_assert_eq!(ps, page_size);
        prop_assert_eq!(it.len(), e.len());
        prop_assert_eq!(it.collect::<Vec<_>>(), e.clone());
        // One byte short of room.
        if !out.is_empty() {
            let n = out.len() - 1;
            prop_assert_eq!(encode_start(page_size, &e, &mut out[..n]), Err(CodecError::BufferTooSmall));
        }
    }

    #[test]
    fn prop_read_round_trip(iova: u64, length: u64) {
        let mut out = [0u8; 16];
        encode_read(iova, length, &mut out).unwrap();
        prop_assert_eq!(parse_read_request(&out), Ok((iova, length)));
        prop_assert_eq!(read_window_valid(iova, length), length > 0 && iova.checked_add(length).is_some());
    }

    #[test]
    fn prop_read_records_round_trip(
        flags: u32,
        e in prop::collection::vec(any::<u64>(), 0..40),
        extra in 0usize..20,
    ) {
        let mut out = vec![0u8; 8 + 8 * e.len() + extra];
        prop_assert_eq!(encode_read_records(flags, &e, &mut out), Ok(8 + 8 * e.len()));
        let rr = ReadRecords::parse(&out).unwrap();
        prop_assert_eq!(rr.flags, flags);
        prop_assert_eq!(rr.len(), e.len());
        prop_assert_eq!(rr.is_empty(), e.is_empty());
        prop_assert_eq!(rr.more(), flags & 1 != 0);
        prop_assert_eq!(rr.overflow(), flags & 2 != 0);
        prop_assert_eq!(rr.iter().collect::<Vec<_>>(), e.clone());
        // Cut inside the entries: truncated.
        if !e.is_empty() {
            prop_assert_eq!(ReadRecords::parse(&out[..8 + 8 * e.len() - 1]), Err(CodecError::Truncated));
        }
    }

    #[test]
    fn prop_completion(status: u16, qualifier: u16, len in 0usize..64, used: u32) {
        let mut w = vec![0u8; len];
        let c = Completion { status, qualifier };
        let enc = c.encode(&mut w);
        prop_assert_eq!(enc.is_ok(), len >= 8);
        match parse_completion(&w, used) {
            Ok((p, r)) => {
                prop_assert!(8 <= used as usize && used as usize <= len);
                prop_assert_eq!(p, c);
                prop_assert_eq!(r.len(), used as usize - 8);
            }
            Err(CodecError::Truncated) => prop_assert!(used < 8),
            Err(CodecError::BadLength) => prop_assert!(used >= 8 && used as usize > len),
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    #[test]
    fn prop_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), used: u32) {
        let _ = Header::parse(&data);
        let _ = parse_opcode_bitmap(&data);
        if let Ok(c) = WriteRecordCaps::parse(&data) {
            prop_assert!(c.page_size_bitmap != 0 && c.max_ranges != 0);
            prop_assert!(c.page_sizes().count() >= 1);
        }
        if let Ok((ps, it)) = parse_start(&data) {
            prop_assert_eq!(data.len(), 16 + 16 * it.len());
            let caps = WriteRecordCaps { page_size_bitmap: u32::MAX, max_ranges: u32::MAX, record_capacity: 0 };
            let _ = validate_start(ps, it, &caps);
        }
        let _ = parse_read_request(&data);
        if let Ok((c, r)) = parse_completion(&data, used) {
            prop_assert_eq!(r.len() + 8, used as usize);
            prop_assert_eq!(c.status, u16::from_le_bytes([data[0], data[1]]));
            if let Ok(rr) = ReadRecords::parse(r) {
                prop_assert!(rr.len() <= max_read_entries(data.len()));
            }
        }
        if let Ok(rr) = ReadRecords::parse(&data) {
            prop_assert!(8 + 8 * rr.len() <= data.len());
            prop_assert_eq!(rr.len() as u32, u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
            prop_assert_eq!(rr.iter().count(), rr.len());
        }
    }

    #[test]
    fn prop_validate_start_accepts_exactly_the_rules(
        shift in 0u32..4,
        bitmap in 1u32..16,
        max_ranges in 1u32..6,
        e in prop::collection::vec((0u64..64, 0u64..4, any::<bool>()), 0..7),
    ) {
        let ps = 4096u64 << shift;
        let c = caps(bitmap, max_ranges);
        // Mostly valid entries: aligned, in 4 KiB units that may or may not be aligned.
        let entries: Vec<StartEntry> = e
            .iter()
            .map(|&(unit, count, aligned)| StartEntry {
                iova: if aligned { unit * ps } else { unit * 4096 },
                page_count: count,
            })
            .collect();
        let ok = bitmap & (1 << shift) != 0
            && !entries.is_empty()
            && entries.len() <= max_ranges as usize
            && entries.iter().all(|x| x.iova % ps == 0 && x.page_count >= 1)
            && entries.windows(2).all(|w| w[1].iova >= w[0].iova + w[0].page_count * ps);
        prop_assert_eq!(validate_start(ps, entries.iter().copied(), &c).is_ok(), ok);
    }
}
