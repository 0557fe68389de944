// SPDX-License-Identifier: GPL-2.0
//! Tests of the migration stream codec.

use proptest::prelude::*;
use virtio_mig_core::mig_stream::*;

fn identity() -> DeviceIdentity {
    DeviceIdentity {
        device_type: 2,
        vendor_id: 0x1af4,
        device_id: 0x1042,
        subsystem_vendor_id: 0x1af4,
        subsystem_id: 0x0002,
        device_features: 0x1_3000_0646,
        num_queues: 2,
        max_queue_size: 256,
        device_config_len: 60,
    }
}

fn queues() -> [QueueState; 2] {
    [
        QueueState {
            index: 0,
            size: 256,
            enable: 1,
            msix_vector: 1,
            notify_off: 0,
            last_avail_idx: 0x1234,
            desc_addr: 0x1_0000_0000,
            driver_addr: 0x1_0000_1000,
            device_addr: 0x1_0000_2000,
        },
        QueueState {
            index: 1,
            size: 128,
            enable: 0,
            msix_vector: 0xffff,
            notify_off: 1,
            last_avail_idx: 0,
            desc_addr: 0,
            driver_addr: 0,
            device_addr: 0,
        },
    ]
}

const CONFIG: [u8; 60] = {
    let mut c = [0u8; 60];
    let mut i = 0;
    while i < 60 {
        c[i] = i as u8 * 3;
        i += 1;
    }
    c
};

fn state<'a>(queues: &'a [QueueState], config: &'a [u8]) -> SavedState<'a> {
    SavedState {
        identity: identity(),
        driver: DriverState {
            driver_features: 0x1_0000_0646,
            device_status: 0x0f,
            config_generation: 3,
        },
        config_msix_vector: 0,
        selectors: SELECTORS,
        queues,
        device_config: config,
    }
}

const SELECTORS: Selectors = Selectors {
    device_feature_select: 1,
    driver_feature_select: 0x8000_0001,
    queue_select: 0x1ff,
};

fn final_frame() -> Vec<u8> {
    let qs = queues();
    let st = state(&qs, &CONFIG);
    let mut buf = vec![0u8; final_frame_len(2, 60)];
    let n = encode_final(&mut buf, &st).unwrap();
    assert_eq!(n, buf.len());
    buf
}

/// Recomputes the CRC after editing a frame.
fn fix_crc(buf: &mut [u8]) {
    let n = buf.len() - 4;
    let crc = crc32(&buf[..n]);
    buf[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Builds a frame from raw sections.
fn raw_frame(flags: u16, sections: &[(u16, u16, &[u8])]) -> Vec<u8> {
    let mut w = FrameWriter::new(&mut [], flags);
    for (t, f, p) in sections {
        w.section(*t, *f, p);
    }
    let needed = match w.finish() {
        Err(EncodeError::TooSmall { needed }) => needed,
        other => panic!("{other:?}"),
    };
    let mut buf = vec![0u8; needed];
    let mut w = FrameWriter::new(&mut buf, flags);
    for (t, f, p) in sections {
        w.section(*t, *f, p);
    }
    assert_eq!(w.finish(), Ok(needed));
    buf
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xcbf4_3926);
}

#[test]
fn round_trip_final() {
    let buf = final_frame();
    assert_eq!(&buf[..4], b"VVMS");
    assert_eq!(buf.len() % 8, 4);
    let f = Frame::parse(&buf).unwrap();
    assert!(f.is_final() && !f.is_precopy());
    assert_eq!(f.len, buf.len());
    assert_eq!(f.identity, identity());
    assert_eq!(f.driver.unwrap().driver_features, 0x1_0000_0646);
    assert_eq!(f.driver.unwrap().device_status, 0x0f);
    assert_eq!(f.driver.unwrap().config_generation, 3);
    assert_eq!(f.config_msix_vector, Some(0));
    assert_eq!(f.device_config, Some(&CONFIG[..]));
    assert_eq!(f.num_queue_sections, 2);
    assert_eq!(f.queues().collect::<Vec<_>>(), queues());
    let types: Vec<u16> = f.sections().map(|s| s.ty).collect();
    assert_eq!(types, [1, 2, 3, 6, 4, 4, 5]);
    // Every section is mandatory but the selectors.
    assert!(f
        .sections()
        .all(|s| (s.flags == SECTION_MANDATORY) == (s.ty != SECTION_SELECTORS)));
}

#[test]
fn round_trip_precopy_and_concatenation() {
    let mut stream = vec![0u8; PRECOPY_FRAME_LEN];
    assert_eq!(
        encode_precopy(&mut stream, &identity()),
        Ok(PRECOPY_FRAME_LEN)
    );
    stream.extend(final_frame());
    let first = Frame::parse(&stream).unwrap();
    assert!(first.is_precopy());
    assert_eq!(first.identity, identity());
    assert_eq!(first.driver, None);
    assert_eq!(first.queues().count(), 0);
    let second = Frame::parse(&stream[first.len..]).unwrap();
    assert!(second.is_final());
    assert_eq!(first.len + second.len, stream.len());
}

#[test]
fn header_peek() {
    let buf = final_frame();
    let h = FrameHeader::peek(&buf[..16]).unwrap();
    assert_eq!(h.flags, FRAME_FINAL);
    assert_eq!(h.total_length, buf.len());
    assert_eq!(
        FrameHeader::peek(&buf[..15]),
        Err(StreamError::Truncated { needed: 16 })
    );
}

#[test]
fn encoder_too_small_and_too_large() {
    let qs = queues();
    let st = state(&qs, &CONFIG);
    let need = final_frame_len(2, 60);
    for len in [0, 1, 16, need - 1] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            encode_final(&mut buf, &st),
            Err(EncodeError::TooSmall { needed: need })
        );
    }
    let big = vec![0u8; MAX_DEVICE_CONFIG_LEN + 1];
    let st = state(&qs, &big);
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    assert_eq!(encode_final(&mut buf, &st), Err(EncodeError::TooLarge));
    let many = vec![QueueState::default(); MAX_FRAME_LEN / 48 + 1];
    let st = state(&many, &CONFIG);
    assert_eq!(encode_final(&mut buf, &st), Err(EncodeError::TooLarge));
    assert_eq!(
        EncodeError::TooSmall { needed: 5 }.to_string(),
        "buffer too small, 5 bytes needed"
    );
}

#[test]
fn err_truncated() {
    let buf = final_frame();
    for cut in [0, 5, 15] {
        assert_eq!(
            Frame::parse(&buf[..cut]).unwrap_err(),
            StreamError::Truncated { needed: 16 }
        );
    }
    assert_eq!(
        Frame::parse(&buf[..buf.len() - 1]).unwrap_err(),
        StreamError::Truncated { needed: buf.len() }
    );
}

#[test]
fn err_bad_magic_version_flags_length() {
    let good = final_frame();
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(Frame::parse(&b).unwrap_err(), StreamError::BadMagic);
    let mut b = good.clone();
    b[4] = 2;
    assert_eq!(Frame::parse(&b).unwrap_err(), StreamError::BadVersion(2));
    for flags in [0u16, 3, 4, 0x8002] {
        let mut b = good.clone();
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        assert_eq!(Frame::parse(&b).unwrap_err(), StreamError::BadFlags(flags));
    }
    for len in [0u32, 19, MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        let mut b = good.clone();
        b[8..12].copy_from_slice(&len.to_le_bytes());
        assert_eq!(Frame::parse(&b).unwrap_err(), StreamError::BadLength(len));
    }
}

#[test]
fn err_bad_crc_on_any_flipped_bit() {
    let good = final_frame();
    for i in 12..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x10;
        assert!(
            matches!(Frame::parse(&b), Err(StreamError::BadCrc { .. })),
            "byte {i}"
        );
    }
    let msg = {
        let mut b = good.clone();
        let n = b.len();
        b[n - 1] ^= 1;
        Frame::parse(&b).unwrap_err().to_string()
    };
    assert!(msg.starts_with("CRC mismatch (stored 0x"), "{msg}");
}

#[test]
fn err_section_overrun() {
    let id = identity().to_bytes();
    let mut b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id)]);
    // Claim a longer identity payload than the frame holds.
    b[16 + 4..16 + 8].copy_from_slice(&100u32.to_le_bytes());
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::SectionOverrun { offset: 16 }
    );
    // A partial section header at the end.
    let mut b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id)]);
    let crc_at = b.len() - 4;
    b.splice(crc_at..crc_at, [9u8, 0, 0, 0]);
    let total = b.len() as u32;
    b[8..12].copy_from_slice(&total.to_le_bytes());
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::SectionOverrun { offset: 16 + 40 }
    );
    // A payload whose padding is missing.
    let mut b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id), (9, 0, &[1, 2, 3])]);
    let crc_at = b.len() - 4;
    b.drain(crc_at - 5..crc_at);
    let total = b.len() as u32;
    b[8..12].copy_from_slice(&total.to_le_bytes());
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::SectionOverrun { offset: 16 + 40 }
    );
}

#[test]
fn err_bad_section_length() {
    let id = identity().to_bytes();
    let b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id[..31])]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::BadSectionLength { ty: 1, len: 31 }
    );
    for (ty, len) in [(2u16, 8usize), (3, 2), (4, 48)] {
        let payload = vec![0u8; len];
        let b = raw_frame(FRAME_FINAL, &[(1, 1, &id), (ty, 1, &payload)]);
        assert_eq!(
            Frame::parse(&b).unwrap_err(),
            StreamError::BadSectionLength {
                ty,
                len: len as u32
            }
        );
    }
}

#[test]
fn err_unknown_mandatory_and_optional_skipped() {
    let id = identity().to_bytes();
    let b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id), (77, 1, b"new")]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::UnknownMandatory(77)
    );
    let b = raw_frame(
        FRAME_PRECOPY,
        &[(1, 1, &id), (77, 0, b"new"), (0xffff, 2, b"")],
    );
    let f = Frame::parse(&b).unwrap();
    assert_eq!(f.identity, identity());
    let s: Vec<_> = f.sections().map(|s| (s.ty, s.payload.len())).collect();
    assert_eq!(s, [(1, 32), (77, 3), (0xffff, 0)]);
}

fn final_sections<'a>(
    id: &'a [u8],
    drv: &'a [u8],
    msix: &'a [u8],
    q0: &'a [u8],
    q1: &'a [u8],
) -> Vec<(u16, u16, &'a [u8])> {
    vec![
        (1, 1, id),
        (2, 1, drv),
        (3, 1, msix),
        (4, 1, q0),
        (4, 1, q1),
        (5, 1, &CONFIG[..]),
    ]
}

#[test]
fn err_duplicates() {
    let id = identity().to_bytes();
    let drv = DriverState::default().to_bytes();
    let msix = [0u8; 8];
    let [q0, q1] = queues().map(|q| q.to_bytes());
    let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
    assert!(Frame::parse(&raw_frame(FRAME_FINAL, &s)).is_ok());
    s.push((2, 1, &drv));
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
        StreamError::Duplicate { ty: 2, index: 0 }
    );
    let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
    s[4] = (4, 1, &q0);
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
        StreamError::Duplicate { ty: 4, index: 0 }
    );
    let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
    s.insert(1, (1, 1, &id));
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
        StreamError::Duplicate { ty: 1, index: 0 }
    );
}

#[test]
fn err_missing_sections_and_queues() {
    let id = identity().to_bytes();
    let drv = DriverState::default().to_bytes();
    let msix = [0u8; 8];
    let [q0, q1] = queues().map(|q| q.to_bytes());
    // Identity not first.
    let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
    s.swap(0, 1);
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
        StreamError::MissingSection(1)
    );
    // Empty frame.
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_PRECOPY, &[])).unwrap_err(),
        StreamError::MissingSection(1)
    );
    // Each required section of a final frame.
    for (drop_at, ty) in [(1usize, 2u16), (2, 3), (5, 5)] {
        let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
        s.remove(drop_at);
        assert_eq!(
            Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
            StreamError::MissingSection(ty)
        );
    }
    let mut s = final_sections(&id, &drv, &msix, &q0, &q1);
    s.remove(3);
    assert_eq!(
        Frame::parse(&raw_frame(FRAME_FINAL, &s)).unwrap_err(),
        StreamError::MissingQueue(0)
    );
}

#[test]
fn err_unexpected_in_precopy() {
    let id = identity().to_bytes();
    let q = queues()[0].to_bytes();
    let b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id), (4, 1, &q)]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::UnexpectedSection(4)
    );
}

#[test]
fn err_queue_limits() {
    let mut id = identity();
    id.num_queues = MAX_QUEUES as u16 + 1;
    let b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id.to_bytes())]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::TooManyQueues(1025)
    );
    id.num_queues = MAX_QUEUES as u16;
    assert!(Frame::parse(&raw_frame(FRAME_PRECOPY, &[(1, 1, &id.to_bytes())])).is_ok());

    let id = identity().to_bytes();
    let mut q = queues()[1];
    q.index = 2;
    let qb = q.to_bytes();
    let b = raw_frame(FRAME_FINAL, &[(1, 1, &id), (4, 1, &qb)]);
    assert_eq!(Frame::parse(&b).unwrap_err(), StreamError::BadQueueIndex(2));
}

#[test]
fn err_config_length() {
    let mut id = identity();
    id.device_config_len = MAX_DEVICE_CONFIG_LEN as u32 + 1;
    let b = raw_frame(FRAME_PRECOPY, &[(1, 1, &id.to_bytes())]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::BadConfigLength(4097)
    );
    let id = identity().to_bytes();
    let b = raw_frame(FRAME_FINAL, &[(1, 1, &id), (5, 1, &CONFIG[..59])]);
    assert_eq!(
        Frame::parse(&b).unwrap_err(),
        StreamError::BadConfigLength(59)
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        StreamError::Truncated { needed: 16 }.to_string(),
        "truncated frame (16 bytes needed)"
    );
    assert_eq!(
        StreamError::UnknownMandatory(9).to_string(),
        "unknown mandatory section (type 9)"
    );
    assert_eq!(StreamError::BadMagic.reason(), "bad magic");
}

#[test]
fn compat_checks() {
    let src = identity();
    assert_eq!(check_compat(&src, &src), Ok(()));
    let mut dst = src;
    dst.device_type = 1;
    assert_eq!(
        check_compat(&src, &dst),
        Err(Incompat::DeviceType { src: 2, dst: 1 })
    );
    for edit in [
        |d: &mut DeviceIdentity| d.vendor_id = 1,
        |d: &mut DeviceIdentity| d.device_id = 1,
        |d: &mut DeviceIdentity| d.subsystem_vendor_id = 1,
        |d: &mut DeviceIdentity| d.subsystem_id = 1,
    ] {
        let mut dst = src;
        edit(&mut dst);
        assert_eq!(check_compat(&src, &dst), Err(Incompat::PciIds));
    }
    let mut dst = src;
    dst.num_queues = 4;
    assert_eq!(
        check_compat(&src, &dst),
        Err(Incompat::NumQueues { src: 2, dst: 4 })
    );
    let mut dst = src;
    dst.device_config_len = 8;
    assert_eq!(
        check_compat(&src, &dst),
        Err(Incompat::ConfigLength { src: 60, dst: 8 })
    );

    let buf = final_frame();
    let frame = Frame::parse(&buf).unwrap();
    assert_eq!(check_state_compat(&frame, &src), Ok(()));
    // Offering fewer features is fine while the negotiated ones remain.
    let mut dst = src;
    dst.device_features = 0x1_0000_0646;
    assert_eq!(check_state_compat(&frame, &dst), Ok(()));
    dst.device_features = 0x0646;
    assert_eq!(
        check_state_compat(&frame, &dst),
        Err(Incompat::Features {
            missing: 0x1_0000_0000
        })
    );
    let mut dst = src;
    dst.max_queue_size = 128;
    assert_eq!(
        check_state_compat(&frame, &dst),
        Err(Incompat::QueueSize {
            index: 0,
            size: 256,
            max: 128
        })
    );
    assert_eq!(
        Incompat::Features { missing: 4 }.to_string(),
        "negotiated features not offered by destination (0x4)"
    );
}

fn arb_identity(max_q: u16) -> impl Strategy<Value = DeviceIdentity> {
    (
        any::<(u32, u16, u16, u16, u16, u64)>(),
        0..=max_q,
        any::<u16>(),
        0u32..=64,
    )
        .prop_map(|((t, v, d, sv, s, f), nq, mq, cl)| DeviceIdentity {
            device_type: t,
            vendor_id: v,
            device_id: d,
            subsystem_vendor_id: sv,
            subsystem_id: s,
            device_features: f,
            num_queues: nq,
            max_queue_size: mq,
            device_config_len: cl,
        })
}

fn arb_queue() -> impl Strategy<Value = QueueState> {
    any::<(u16, u16, u16, u16, u16, u64, u64, u64)>().prop_map(|(s, e, m, n, l, a, b, c)| {
        QueueState {
            index: 0,
            size: s,
            enable: e,
            msix_vector: m,
            notify_off: n,
            last_avail_idx: l,
            desc_addr: a,
            driver_addr: b,
            device_addr: c,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn prop_round_trip(
        id in arb_identity(40),
        qs in proptest::collection::vec(arb_queue(), 40),
        cfg in proptest::collection::vec(any::<u8>(), 64),
        drv in any::<(u64, u8, u8)>(),
        msix in any::<u16>(),
        sel in any::<(u32, u32, u16)>(),
        order_seed in any::<u64>(),
    ) {
        let n = usize::from(id.num_queues);
        let mut qs: Vec<QueueState> = qs[..n].to_vec();
        for (i, q) in qs.iter_mut().enumerate() {
            q.index = i as u16;
        }
        // Any order of queue sections is valid.
        if n > 1 {
            let k = (order_seed % n as u64) as usize;
            qs.rotate_left(k);
        }
        let cfg = &cfg[..id.device_config_len as usize];
        let st = SavedState {
            identity: id,
            driver: DriverState { driver_features: drv.0, device_status: drv.1, config_generation: drv.2 },
            config_msix_vector: msix,
            selectors: Selectors { device_feature_select: sel.0, driver_feature_select: sel.1, queue_select: sel.2 },
            queues: &qs,
            device_config: cfg,
        };
        let len = final_frame_len(n, cfg.len());
        prop_assert_eq!(encode_final(&mut [], &st), Err(EncodeError::TooSmall { needed: len }));
        let mut buf = vec![0u8; len + 7];
        prop_assert_eq!(encode_final(&mut buf, &st), Ok(len));
        let f = Frame::parse(&buf).unwrap();
        prop_assert_eq!(f.len, len);
        prop_assert_eq!(f.identity, id);
        prop_assert_eq!(f.driver, Some(st.driver));
        prop_assert_eq!(f.config_msix_vector, Some(msix));
        prop_assert_eq!(f.selectors, Some(st.selectors));
        prop_assert_eq!(f.device_config, Some(cfg));
        prop_assert_eq!(&f.queues().collect::<Vec<_>>(), &qs);
        prop_assert_eq!(check_state_compat(&f, &id).is_ok(), qs.iter().all(|q| q.size <= id.max_queue_size) && st.driver.driver_features & !id.device_features == 0);

        let mut pre = vec![0u8; PRECOPY_FRAME_LEN];
        prop_assert_eq!(encode_precopy(&mut pre, &id), Ok(PRECOPY_FRAME_LEN));
        prop_assert_eq!(Frame::parse(&pre).unwrap().identity, id);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = FrameHeader::peek(&bytes);
        if let Ok(f) = Frame::parse(&bytes) {
            prop_assert!(f.len <= bytes.len());
            let _ = f.sections().count();
            let _ = f.queues().count();
        }
    }

    #[test]
    fn prop_valid_header_and_crc_random_body(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        flags in prop_oneof![Just(FRAME_PRECOPY), Just(FRAME_FINAL)],
        seed_sections in any::<bool>(),
    ) {
        // Valid framing around a random body reaches the section parser.
        let mut b = Vec::new();
        b.extend_from_slice(b"VVMS");
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        if seed_sections {
            b.extend_from_slice(&[1, 0, 1, 0, 32, 0, 0, 0]);
            let mut id = identity();
            id.device_config_len = 0;
            id.num_queues = 1;
            b.extend_from_slice(&id.to_bytes());
        }
        b.extend_from_slice(&body);
        b.extend_from_slice(&[0; 4]);
        let total = b.len() as u32;
        b[8..12].copy_from_slice(&total.to_le_bytes());
        fix_crc(&mut b);
        match Frame::parse(&b) {
            Ok(f) => {
                prop_assert_eq!(f.len, b.len());
                prop_assert!(usize::from(f.num_queue_sections) <= usize::from(f.identity.num_queues));
                prop_assert_eq!(f.queues().count(), usize::from(f.num_queue_sections));
                if f.is_final() {
                    prop_assert!(f.driver.is_some() && f.device_config.is_some());
                }
            }
            Err(e) => {
                let framing = matches!(e, StreamError::BadCrc { .. } | StreamError::Truncated { .. });
                prop_assert!(!framing, "framing error {:?}", e);
            }
        }
    }
}

#[test]
fn selectors_round_trip_and_are_optional() {
    let buf = final_frame();
    let f = Frame::parse(&buf).unwrap();
    assert_eq!(f.selectors, Some(SELECTORS));
    let at = vvms_section(&buf, SECTION_SELECTORS);
    assert_eq!(
        &buf[at + SECTION_HEADER_LEN..at + SECTION_HEADER_LEN + SELECTORS_LEN],
        &[1, 0, 0, 0, 1, 0, 0, 0x80, 0xff, 1, 0, 0, 0, 0, 0, 0]
    );
    // Optional: not mandatory, and a stream without it (an older source) is complete.
    assert_eq!(
        u16::from_le_bytes([buf[at + 2], buf[at + 3]]) & SECTION_MANDATORY,
        0
    );
    let mut older = buf[..at].to_vec();
    older.extend_from_slice(&buf[at + section_len(SELECTORS_LEN)..]);
    let len = older.len() as u32;
    older[8..12].copy_from_slice(&len.to_le_bytes());
    fix_crc(&mut older);
    let f = Frame::parse(&older).unwrap();
    assert_eq!(f.selectors, None);
    assert_eq!(f.queues().count(), 2);
}

#[test]
fn selectors_section_is_checked() {
    let id = identity().to_bytes();
    let sel = SELECTORS.to_bytes();
    let pre = raw_frame(
        FRAME_PRECOPY,
        &[
            (SECTION_DEVICE_IDENTITY, SECTION_MANDATORY, &id),
            (SECTION_SELECTORS, 0, &sel),
        ],
    );
    assert_eq!(
        Frame::parse(&pre).err(),
        Some(StreamError::UnexpectedSection(SECTION_SELECTORS))
    );
    let short = raw_frame(
        FRAME_FINAL,
        &[
            (SECTION_DEVICE_IDENTITY, SECTION_MANDATORY, &id),
            (SECTION_SELECTORS, 0, &sel[..12]),
        ],
    );
    assert_eq!(
        Frame::parse(&short).err(),
        Some(StreamError::BadSectionLength {
            ty: SECTION_SELECTORS,
            len: 12
        })
    );
    let twice = raw_frame(
        FRAME_FINAL,
        &[
            (SECTION_DEVICE_IDENTITY, SECTION_MANDATORY, &id),
            (SECTION_SELECTORS, 0, &sel),
            (SECTION_SELECTORS, 0, &sel),
        ],
    );
    assert_eq!(
        Frame::parse(&twice).err(),
        Some(StreamError::Duplicate {
            ty: SECTION_SELECTORS,
            index: 0
        })
    );
}

/// Offset of the first section of type `ty` in the frame `buf`.
fn vvms_section(buf: &[u8], ty: u16) -> usize {
    let mut at = HEADER_LEN;
    loop {
        let t = u16::from_le_bytes([buf[at], buf[at + 1]]);
        let len = u32::from_le_bytes(buf[at + 4..at + 8].try_into().unwrap()) as usize;
        if t == ty {
            return at;
        }
        at += section_len(len);
    }
}
