//! The SEV-SNP certificate table the host hands the guest (configfs-tsm
//! `auxblob`): entries of {GUID (16 bytes), offset (u32 LE), length (u32 LE)}
//! ended by an all-zero GUID; offsets count from the table's start. The host
//! is untrusted, so every offset is bounds-checked here (the `sev` crate's
//! parser dereferences raw pointers).

use crate::AttestError;

/// GUID of the VCEK entry, 63da758d-e664-4564-adc5-f4b93be8accd, in the
/// byte order the table uses (as written by the `sev` crate and the host tools).
pub const VCEK_GUID: [u8; 16] = [0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];

const ENTRY_LEN: usize = 24;

/// The certificate stored under `guid`, if the table has one.
pub fn find_certificate(table: &[u8], guid: &[u8; 16]) -> Result<Option<Vec<u8>>, AttestError> {
    let bad = |what: String| AttestError::Other(format!("SNP certificate table from the host: {what}"));
    for (i, entry) in table.chunks(ENTRY_LEN).enumerate() {
        if entry.len() < ENTRY_LEN {
            return Err(bad(format!("entry {i} truncated, no terminating zero entry")));
        }
        let entry_guid = &entry[..16];
        if entry_guid.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if entry_guid != guid {
            continue;
        }
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= table.len())
            .ok_or_else(|| bad(format!("entry {i} ({offset}+{length}) is outside the {}-byte table", table.len())))?;
        return Ok(Some(table[offset..end].to_vec()));
    }
    Err(bad("no terminating zero entry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev::firmware::host::{CertTableEntry, CertType};

    #[test]
    fn finds_the_vcek_in_a_table_written_by_the_sev_crate() {
        let table = CertTableEntry::cert_table_to_vec_bytes(&[
            CertTableEntry::new(CertType::ARK, vec![1; 10]),
            CertTableEntry::new(CertType::VCEK, vec![2, 3, 4]),
        ])
        .unwrap();
        assert_eq!(find_certificate(&table, &VCEK_GUID).unwrap(), Some(vec![2, 3, 4]));
    }

    #[test]
    fn a_table_without_vcek_yields_none() {
        let table = CertTableEntry::cert_table_to_vec_bytes(&[CertTableEntry::new(CertType::ASK, vec![1; 10])]).unwrap();
        assert_eq!(find_certificate(&table, &VCEK_GUID).unwrap(), None);
    }

    #[test]
    fn out_of_bounds_entries_are_refused() {
        let mut table = vec![0u8; 48];
        table[..16].copy_from_slice(&VCEK_GUID);
        table[16..20].copy_from_slice(&40u32.to_le_bytes());
        table[20..24].copy_from_slice(&100u32.to_le_bytes());
        assert!(find_certificate(&table, &VCEK_GUID).is_err());
        assert!(find_certificate(&VCEK_GUID, &VCEK_GUID).is_err(), "truncated");
    }
}
