//! Frame header encoding, validation and robustness against garbage.

use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use talaria_transport::frame::FRAME_MAGIC;
use talaria_transport::{DType, FrameHeader, FrameKind, TransportError, HEADER_LEN, MAX_PAYLOAD_LEN, PROTOCOL_VERSION};

fn sample_header() -> FrameHeader {
    FrameHeader::matrix(FrameKind::Call, DType::F32, 7, 576).with_call(0xDEAD_BEEF_0123, 29, 3, 1)
}

#[test]
fn every_kind_and_dtype_round_trips() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    for kind in FrameKind::ALL {
        for dtype in DType::ALL {
            let rows = rng.random_range(0..100u32);
            let cols = rng.random_range(0..100u32);
            let mut h = FrameHeader::matrix(kind, dtype, rows, cols).with_call(rng.random(), rng.random(), rng.random(), rng.random());
            if dtype == DType::U8 {
                // Byte payloads are free-sized.
                h.payload_len = rng.random_range(0..10_000);
            }
            let bytes = h.encode();
            assert_eq!(&bytes[..4], &FRAME_MAGIC);
            assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), PROTOCOL_VERSION);
            assert_eq!(FrameHeader::decode(&bytes).unwrap(), h);
        }
    }
}

#[test]
fn encoding_is_little_endian_at_fixed_offsets() {
    let h = sample_header();
    let b = h.encode();
    assert_eq!(b.len(), HEADER_LEN);
    assert_eq!(b[6], FrameKind::Call as u8);
    assert_eq!(b[7], DType::F32 as u8);
    assert_eq!(b[8], 3);
    assert_eq!(b[9], 1);
    assert_eq!(i32::from_le_bytes(b[12..16].try_into().unwrap()), 29);
    assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 7);
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 576);
    assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), 0xDEAD_BEEF_0123);
    assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 7 * 576 * 4);
}

#[test]
fn each_defect_gets_its_own_error() {
    let good = sample_header().encode();

    let mut b = good;
    b[0] = b'X';
    assert!(matches!(FrameHeader::decode(&b), Err(TransportError::BadMagic { .. })));

    let mut b = good;
    b[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    assert!(matches!(
        FrameHeader::decode(&b),
        Err(TransportError::UnsupportedVersion { found, supported })
            if found == PROTOCOL_VERSION + 1 && supported == PROTOCOL_VERSION
    ));

    let mut b = good;
    b[6] = 200;
    assert!(matches!(FrameHeader::decode(&b), Err(TransportError::UnknownKind(200))));

    let mut b = good;
    b[7] = 0;
    assert!(matches!(FrameHeader::decode(&b), Err(TransportError::UnknownDType(0))));

    let mut b = good;
    b[44] = 1;
    assert!(matches!(FrameHeader::decode(&b), Err(TransportError::ReservedNotZero { offset: 44 })));

    let mut b = good;
    b[32..40].copy_from_slice(&(7u64 * 576 * 4 + 1).to_le_bytes());
    assert!(matches!(
        FrameHeader::decode(&b),
        Err(TransportError::PayloadLenMismatch { rows: 7, cols: 576, expected, .. }) if expected == 7 * 576 * 4
    ));

    assert!(matches!(
        FrameHeader::decode(&good[..HEADER_LEN - 1]),
        Err(TransportError::ShortHeader { got, need: HEADER_LEN }) if got == HEADER_LEN - 1
    ));
}

#[test]
fn size_limits_are_enforced() {
    // Consistent shape but larger than the global limit.
    let big = FrameHeader::matrix(FrameKind::Result, DType::F64, 1 << 16, 1 << 16);
    assert!(matches!(big.validate(), Err(TransportError::PayloadTooLarge { max: MAX_PAYLOAD_LEN, .. })));
    // rows*cols*size overflows u64: saturates and is reported, not wrapped.
    let huge = FrameHeader::matrix(FrameKind::Call, DType::F64, u32::MAX, u32::MAX);
    assert!(matches!(huge.validate(), Err(TransportError::PayloadLenMismatch { .. })));
    // A caller-chosen limit.
    let h = FrameHeader::bytes(FrameKind::Error, 100);
    assert!(h.validate_with_limit(100).is_ok());
    assert!(matches!(h.validate_with_limit(99), Err(TransportError::PayloadTooLarge { len: 100, max: 99 })));
    assert!(matches!(FrameHeader::decode_with_limit(&h.encode(), 99), Err(TransportError::PayloadTooLarge { .. })));
}

/// Decoding arbitrary bytes never panics, and whatever it accepts is
/// canonical: re-encoding gives the same bytes back.
#[test]
fn garbage_never_panics_and_accepted_headers_are_canonical() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let mut accepted = 0;
    let mut check = |bytes: &[u8]| {
        if let Ok(h) = FrameHeader::decode(bytes) {
            assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN]);
            accepted += 1;
        }
    };
    // Pure noise of every length up to two headers.
    for _ in 0..20_000 {
        let len = rng.random_range(0..2 * HEADER_LEN);
        let mut buf = vec![0u8; len];
        rng.fill_bytes(&mut buf);
        check(&buf);
    }
    // Every truncation of a valid header.
    let good = sample_header().encode();
    for len in 0..=HEADER_LEN {
        check(&good[..len]);
    }
    // Every single-byte substitution of a valid header.
    for pos in 0..HEADER_LEN {
        for value in 0..=255u8 {
            let mut b = good;
            b[pos] = value;
            check(&b);
        }
    }
    // Noise behind a valid prefix (magic + version) reaches the deeper checks.
    for _ in 0..20_000 {
        let mut b = [0u8; HEADER_LEN];
        rng.fill_bytes(&mut b);
        b[..6].copy_from_slice(&good[..6]);
        b[6] = rng.random_range(0..10);
        b[7] = rng.random_range(0..7);
        check(&b);
    }
    // The substitutions alone keep the header valid for op/call_kind/layer/
    // call_id bytes, so some inputs must have been accepted.
    assert!(accepted > 1000, "only {accepted} accepted");
}
