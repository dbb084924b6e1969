//! Minimal writer for numpy `.npy` v1.0 files (2-D, little-endian, C order).

use std::io::Write;

/// The `.npy` bytes header for a `rows × cols` matrix of `descr` (`<f8`, `<f4`).
pub fn npy_header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic(6) + version(2) + len(2) + dict + pad + '\n' is a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = unpadded.div_ceil(64) * 64 - unpadded;
    let mut h = Vec::with_capacity(unpadded + pad);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

pub fn write_npy(path: &std::path::Path, descr: &str, rows: usize, cols: usize, data_le: &[u8]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&npy_header(descr, rows, cols))?;
    f.write_all(data_le)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_aligned_and_parsable() {
        let h = super::npy_header("<f8", 3, 576);
        assert_eq!(h.len() % 64, 0);
        let len = u16::from_le_bytes([h[8], h[9]]) as usize;
        assert_eq!(10 + len, h.len());
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert!(dict.contains("'shape': (3, 576)") && dict.ends_with('\n'));
    }
}
