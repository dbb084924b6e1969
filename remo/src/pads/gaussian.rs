//! Standard normal draws in bulk for the pads: the ziggurat of Marsaglia
//! and Tsang (256 layers), read from a keystream drawn in bulk
//! ([`BulkStream`]: AES-256-CTR, or ChaCha12 on CPUs without AES).
//! Its common case (about 98.8 % of draws: the point falls inside its
//! layer's rectangle) runs eight lanes at a time with AVX-512, four with
//! AVX2; the rest (the wedges and the tail beyond `R`) take the same
//! scalar steps as a one-at-a-time ziggurat, in place, so every output is
//! an independent, exact N(0, 1) draw whatever its position.
//! One 64-bit word makes one draw: 8 bits pick the layer, 52 bits the
//! uniform.

use std::sync::OnceLock;

use crate::pads::bulk_stream::BulkStream;

/// Layers of the ziggurat.
const LAYERS: usize = 256;
/// The right edge of the base layer's rectangle, `x₁`.
const R: f64 = 3.654_152_885_361_009;
/// The area of each layer (base layer: rectangle plus tail).
const V: f64 = 0.004_928_673_233_99;
/// Keystream words drawn at once.
const WORDS: usize = 512;

fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

/// `x[i]`, the layers' right edges (`x[0] = V / f(R)`, the base layer's
/// equivalent width; `x[256] = 0`), and `f[i] = f(x[i])`.
struct Tables {
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; LAYERS + 1];
        x[0] = V / pdf(R);
        x[1] = R;
        for i in 1..LAYERS - 1 {
            x[i + 1] = (-2.0 * (V / x[i] + pdf(x[i])).ln()).sqrt();
        }
        x[LAYERS] = 0.0;
        let f = std::array::from_fn(|i| pdf(x[i]));
        Tables { x, f }
    })
}

/// A keystream read a word at a time, refilled in bulk.
pub struct Keystream<'a> {
    stream: &'a mut BulkStream,
    words: [u64; WORDS],
    next: usize,
}

impl<'a> Keystream<'a> {
    pub fn new(stream: &'a mut BulkStream) -> Self {
        Self { stream, words: [0; WORDS], next: WORDS }
    }

    fn refill(&mut self) {
        self.stream.fill(&mut self.words);
        self.next = 0;
    }

    fn word(&mut self) -> u64 {
        if self.next == WORDS {
            self.refill();
        }
        self.next += 1;
        self.words[self.next - 1]
    }

    /// Uniform on (0, 1].
    fn open_uniform(&mut self) -> f64 {
        ((self.word() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl Drop for Keystream<'_> {
    fn drop(&mut self) {
        crate::pads::wipe::wipe(&mut self.words);
    }
}

/// The layer and the uniform in [-1, 1) of one word.
#[inline(always)]
fn split(bits: u64) -> (usize, f64) {
    let u = 2.0 * f64::from_bits((bits >> 12) | 0x3FF0_0000_0000_0000) - 3.0;
    ((bits & 0xFF) as usize, u)
}

/// Finishes a draw whose point `x = u·x[i]` fell outside its rectangle:
/// the tail beyond `R` for the base layer, else the wedge test; a point
/// outside the curve restarts from a fresh word.
fn finish(t: &Tables, mut i: usize, mut u: f64, ks: &mut Keystream<'_>) -> f64 {
    loop {
        let x = u * t.x[i];
        if x.abs() < t.x[i + 1] {
            return x;
        }
        if i == 0 {
            // Marsaglia's tail method.
            loop {
                let a = -ks.open_uniform().ln() / R;
                let b = -ks.open_uniform().ln();
                if 2.0 * b > a * a {
                    return if u < 0.0 { -(R + a) } else { R + a };
                }
            }
        }
        if t.f[i + 1] + (t.f[i] - t.f[i + 1]) * ks.open_uniform() < pdf(x) {
            return x;
        }
        (i, u) = split(ks.word());
    }
}

/// One draw, one word at a time (the reference the bulk path must match).
pub fn standard_normal(ks: &mut Keystream<'_>) -> f64 {
    let (i, u) = split(ks.word());
    finish(tables(), i, u, ks)
}

/// Fills `out` with independent N(0, 1) draws.
pub fn fill_standard_normal(ks: &mut Keystream<'_>, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { fill_avx512(ks, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { fill_avx2(ks, out) };
        }
    }
    out.iter_mut().for_each(|v| *v = standard_normal(ks));
}

/// Redraws, in lane order, the lanes of `out` (the `words` of one vector
/// step) whose points fell outside their rectangles. Every output stays
/// in its own word's position: writing the rectangle values first and
/// the rest after them would put the wedge and tail values at the end of
/// each step, so that positions within a row (columns of a pad) would
/// differ in distribution.
#[inline(always)]
fn patch_outside(t: &Tables, ks: &mut Keystream<'_>, words: &mut [u64], out: &mut [f64], mut outside: u32) {
    while outside != 0 {
        let lane = outside.trailing_zeros() as usize;
        outside &= outside - 1;
        let (i, u) = split(words[lane]);
        out[lane] = finish(t, i, u, ks);
    }
    crate::pads::wipe::wipe(words);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512(ks: &mut Keystream<'_>, out: &mut [f64]) {
    use std::arch::x86_64::*;
    let t = tables();
    let mut n = 0;
    while out.len() - n >= 8 {
        if ks.next + 8 > WORDS {
            ks.refill();
        }
        let bits = _mm512_loadu_si512(ks.words.as_ptr().add(ks.next).cast());
        ks.next += 8;
        let idx = _mm512_and_si512(bits, _mm512_set1_epi64(0xFF));
        let xi = _mm512_i64gather_pd::<8>(idx, t.x.as_ptr().cast());
        let xi1 = _mm512_i64gather_pd::<8>(idx, t.x.as_ptr().add(1).cast());
        let one = _mm512_set1_epi64(0x3FF0_0000_0000_0000);
        let m = _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(bits), one));
        let u = _mm512_sub_pd(_mm512_add_pd(m, m), _mm512_set1_pd(3.0));
        let x = _mm512_mul_pd(u, xi);
        let inside = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_abs_pd(x), xi1);
        _mm512_storeu_pd(out.as_mut_ptr().add(n), x);
        if inside != 0xFF {
            let mut words = [0u64; 8];
            _mm512_storeu_si512(words.as_mut_ptr().cast(), bits);
            patch_outside(t, ks, &mut words, &mut out[n..n + 8], u32::from(!inside));
        }
        n += 8;
    }
    out[n..].iter_mut().for_each(|v| *v = standard_normal(ks));
}

/// [`fill_avx512`] four lanes at a time (EPYC Rome and Milan, older Xeons).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(ks: &mut Keystream<'_>, out: &mut [f64]) {
    use std::arch::x86_64::*;
    let t = tables();
    let abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let one = _mm256_set1_epi64x(0x3FF0_0000_0000_0000);
    let mut n = 0;
    while out.len() - n >= 4 {
        if ks.next + 4 > WORDS {
            ks.refill();
        }
        let bits = _mm256_loadu_si256(ks.words.as_ptr().add(ks.next).cast());
        ks.next += 4;
        let idx = _mm256_and_si256(bits, _mm256_set1_epi64x(0xFF));
        let xi = _mm256_i64gather_pd::<8>(t.x.as_ptr(), idx);
        let xi1 = _mm256_i64gather_pd::<8>(t.x.as_ptr().add(1), idx);
        let m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64::<12>(bits), one));
        let u = _mm256_sub_pd(_mm256_add_pd(m, m), _mm256_set1_pd(3.0));
        let x = _mm256_mul_pd(u, xi);
        let inside = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, abs_mask), xi1)) as u32;
        _mm256_storeu_pd(out.as_mut_ptr().add(n), x);
        if inside != 0xF {
            let mut words = [0u64; 4];
            _mm256_storeu_si256(words.as_mut_ptr().cast(), bits);
            patch_outside(t, ks, &mut words, &mut out[n..n + 4], !inside & 0xF);
        }
        n += 4;
    }
    out[n..].iter_mut().for_each(|v| *v = standard_normal(ks));
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::pads::bulk_stream::BulkKind;

    /// `Φ(z)` at a few points, and how far a fraction of `n` draws may be
    /// from it (six binomial standard deviations).
    fn check_cdf(draws: &[f64], what: &str) {
        let n = draws.len() as f64;
        for (z, phi) in
            [(-3.0, 0.001_349_898), (-1.0, 0.158_655_254), (0.0, 0.5), (0.5, 0.691_462_461), (2.0, 0.977_249_868), (3.7, 0.999_892_200)]
        {
            let below = draws.iter().filter(|&&d| d < z).count() as f64 / n;
            let sd = (phi * (1.0 - phi) / n).sqrt();
            assert!((below - phi).abs() < 6.0 * sd, "{what}: P(z < {z}) = {below}, expected {phi} ± {}", 6.0 * sd);
        }
        let mean = draws.iter().sum::<f64>() / n;
        let var = draws.iter().map(|d| d * d).sum::<f64>() / n;
        let kurt = draws.iter().map(|d| d.powi(4)).sum::<f64>() / n;
        assert!(mean.abs() < 6.0 / n.sqrt(), "{what}: mean {mean}");
        assert!((var - 1.0).abs() < 6.0 * (2.0 / n).sqrt(), "{what}: variance {var}");
        assert!((kurt - 3.0).abs() < 6.0 * (96.0 / n).sqrt(), "{what}: fourth moment {kurt}");
    }

    #[test]
    fn the_layers_close_at_zero_and_the_base_layer_holds_the_tail() {
        let t = tables();
        assert!(t.x[LAYERS - 1] > 0.0 && t.x[LAYERS - 1] < 0.3, "last inner edge {}", t.x[LAYERS - 1]);
        assert!(t.x.windows(2).skip(1).all(|w| w[0] > w[1]), "edges must fall");
        // Each layer's rectangle holds area V: x[i]·(f[i+1] − f[i]) = V.
        for i in 1..LAYERS - 1 {
            let area = t.x[i] * (t.f[i + 1] - t.f[i]);
            assert!((area - V).abs() < 1e-9 * V, "layer {i}: area {area}");
        }
        // R and V are the pair for which the top layer closes too, and the
        // base layer (rectangle and tail) has the same area.
        let top = t.x[LAYERS - 1] * (1.0 - t.f[LAYERS - 1]);
        assert!((top - V).abs() < 1e-6 * V, "top layer: area {top}");
        assert!((t.x[0] * t.f[1] - V).abs() < 1e-12, "base layer");
    }

    #[test]
    fn bulk_and_one_by_one_draws_are_standard_normal() {
        let n = 4_000_000;
        let mut stream = BulkStream::keyed(BulkKind::for_this_cpu(), &mut ChaCha20Rng::from_os_rng());
        let mut ks = Keystream::new(&mut stream);
        let mut bulk = vec![0.0; n + 5];
        fill_standard_normal(&mut ks, &mut bulk);
        check_cdf(&bulk, "bulk");
        let single: Vec<f64> = (0..n).map(|_| standard_normal(&mut ks)).collect();
        check_cdf(&single, "one by one");
        // The tail path is exercised: about 2.6e-4 of draws lie beyond R.
        let beyond = bulk.iter().filter(|d| d.abs() > R).count() as f64 / bulk.len() as f64;
        assert!((beyond - 2.58e-4).abs() < 6.0 * (2.58e-4 / n as f64).sqrt(), "beyond R: {beyond}");
        // Every position draws from the same law: the tail is as frequent at
        // each position within a vector step (eight lanes, four) as overall.
        for p in 0..8 {
            let lane: Vec<f64> = bulk.iter().skip(p).step_by(8).copied().collect();
            let expected = 2.58e-4 * lane.len() as f64;
            let beyond = lane.iter().filter(|d| d.abs() > R).count() as f64;
            assert!((beyond - expected).abs() < 6.0 * expected.sqrt(), "position {p} of 8: {beyond} beyond R, expected {expected}");
        }
    }
}
