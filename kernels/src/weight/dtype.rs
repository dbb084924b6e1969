//! The element type a weight matrix is held in, and the loader's choice of
//! it (`--dtype`).

/// Element type of stored weights. GGUF quant blocks are kept in memory as
/// stored and every kernel dequantizes them in registers to their exact
/// f32 values (f64 in the exact mode); Q8_K, an activation type no file
/// stores weights in (`kernels_read`), is read and held as exact f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDType {
    F32,
    Bf16,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
}

impl WeightDType {
    /// A float type by name (`f32`, `bf16`, `f16`): the types a loader can
    /// convert to. Quant types are only ever kept as stored.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(Self::F32),
            "bf16" | "bfloat16" => Some(Self::Bf16),
            "f16" | "float16" | "half" => Some(Self::F16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q8_0 => "q8_0",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
            Self::Q8K => "q8_k",
        }
    }

    /// Whether a matrix can be held in this type (the kernels read it in
    /// place); Q8_K is held as exact f32 instead.
    pub fn kernels_read(self) -> bool {
        self != Self::Q8K
    }

    /// (values per block, bytes per block); plain floats are blocks of one.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::Bf16 | Self::F16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
        }
    }

    /// Byte offsets of a quant block's f16 scales (`d`, and the offset `m`
    /// or min `dmin` where there is one), as ggml-common.h lays them out;
    /// empty for the plain floats and Q8_K (an f32 scale).
    pub fn f16_scale_offsets(self) -> &'static [usize] {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => &[0],
            Self::Q4_1 | Self::Q5_1 | Self::Q4K | Self::Q5K => &[0, 2],
            Self::Q6K => &[208],
            Self::F32 | Self::Bf16 | Self::F16 | Self::Q8K => &[],
        }
    }

    /// Bytes that `n` values take, `None` unless `n` is whole blocks (or
    /// when the size would not fit a `usize`).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (per, bytes) = self.block();
        n.is_multiple_of(per).then(|| (n / per).checked_mul(bytes)).flatten()
    }

    /// Bits per value in memory (for load-time and bandwidth figures).
    pub fn bits_per_value(self) -> f64 {
        let (per, bytes) = self.block();
        (bytes * 8) as f64 / per as f64
    }
}

/// How a loader holds the weights: as the file stores them (the default:
/// the model's exact values at the file's size), or converted to a float
/// type (`bf16` rounds; `f32` is exact but the largest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    #[default]
    Stored,
    Convert(WeightDType),
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Convert(d) => d.name(),
        }
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `stored`, `f32`, `bf16` or `f16`, as the command lines take it.
impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("stored") {
            return Ok(Self::Stored);
        }
        WeightDType::parse(s).map(Self::Convert).ok_or_else(|| format!("unknown dtype {s:?} (stored, f32, bf16 or f16)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("stored".parse::<WeightFormat>(), Ok(WeightFormat::Stored));
        assert_eq!("BF16".parse::<WeightFormat>(), Ok(WeightFormat::Convert(WeightDType::Bf16)));
        assert!("q4_1".parse::<WeightFormat>().is_err(), "quant types are not conversion targets");
        assert_eq!(WeightFormat::default().to_string(), "stored");
        assert_eq!(WeightDType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(WeightDType::Q8_0.bytes_for(33), None);
        assert_eq!(WeightDType::Q4_0.bits_per_value(), 4.5);
    }
}
