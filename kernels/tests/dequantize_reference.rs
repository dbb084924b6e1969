//! Stored blocks of every GGUF quant type Talaria reads give, bit for bit,
//! the values of the `gguf` Python package's reference dequantizer
//! (`reference/make_dequantize_reference.py`: random blocks with random
//! finite f16 scales of either sign and any exponent). The one allowed
//! difference is the sign of a zero: Q4_0's `q·d − 8d` gives +0 where the
//! reference's `(q − 8)·d` gives −0 for a negative `d`; no product or sum
//! can tell them apart.

use talaria_kernels::weight::dequantize_stored;
use talaria_kernels::WeightDType;

#[test]
fn every_quant_type_dequantizes_like_the_gguf_reference() {
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/dequantize_reference.json")).unwrap();
    let types = [
        ("Q4_0", WeightDType::Q4_0),
        ("Q4_1", WeightDType::Q4_1),
        ("Q8_0", WeightDType::Q8_0),
        ("Q5_0", WeightDType::Q5_0),
        ("Q5_1", WeightDType::Q5_1),
        ("Q4_K", WeightDType::Q4K),
        ("Q5_K", WeightDType::Q5K),
        ("Q6_K", WeightDType::Q6K),
    ];
    for (name, dtype) in types {
        let case = &data[name];
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let want: Vec<u32> = case["value_bits"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut got = vec![0f32; want.len()];
        dequantize_stored(dtype, &bytes, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w = f32::from_bits(*w);
            let same = g.to_bits() == w.to_bits() || (*g == 0.0 && w == 0.0);
            assert!(same, "{name} value {i}: {g:e} vs the reference's {w:e}");
        }
    }
}
