//! GGUF tensor type codes (ggml.h `ggml_type`) and the element types they
//! load as.

use talaria_kernels::WeightDType;

/// The element type of a GGUF type code; `None` for types this build
/// cannot read.
pub fn dtype_of_code(code: u32) -> Option<WeightDType> {
    Some(match code {
        0 => WeightDType::F32,
        1 => WeightDType::F16,
        2 => WeightDType::Q4_0,
        3 => WeightDType::Q4_1,
        6 => WeightDType::Q5_0,
        7 => WeightDType::Q5_1,
        8 => WeightDType::Q8_0,
        12 => WeightDType::Q4K,
        13 => WeightDType::Q5K,
        14 => WeightDType::Q6K,
        15 => WeightDType::Q8K,
        30 => WeightDType::Bf16,
        _ => return None,
    })
}

/// Human-readable name of any GGUF type code, for error messages.
pub fn code_name(code: u32) -> String {
    const KNOWN: [(u32, &str); 15] = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (30, "BF16"),
    ];
    match KNOWN.iter().find(|(c, _)| *c == code) {
        Some((_, n)) => n.to_string(),
        None => format!("type code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_types_and_names() {
        for code in [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 30] {
            let dtype = dtype_of_code(code).expect("readable");
            assert_eq!(code_name(code).to_ascii_lowercase(), dtype.name(), "code {code}");
        }
        assert_eq!(dtype_of_code(10), None, "Q2_K");
        assert_eq!(code_name(12), "Q4_K");
        assert_eq!(code_name(99), "type code 99");
    }
}
