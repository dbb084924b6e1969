//! Which instruction sets the CPU kernels may use, detected once at run time.
//!
//! `TALARIA_CPU_ISA=portable` forces the scalar fallback,
//! `TALARIA_CPU_ISA=avx2` the AVX2 kernels (as on an EPYC Milan) and
//! `TALARIA_CPU_ISA=avx512` disables AMX (for comparisons and debugging).

use std::sync::OnceLock;

/// The kernel families a matmul can run on, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 with FMA and F16C: the f32 dot-product kernels of CPUs without AVX-512.
    pub avx2: bool,
    /// AVX-512 F/BW/VL with FMA: the f32/f64 dot-product kernels.
    pub avx512: bool,
    /// AMX-TILE + AMX-BF16, enabled by the OS for this process: bf16 weights.
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// The features this process uses (detected on first call).
    pub fn get() -> CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        *FEATURES.get_or_init(detect)
    }
}

fn detect() -> CpuFeatures {
    let forced = std::env::var("TALARIA_CPU_ISA").unwrap_or_default().to_ascii_lowercase();
    if forced == "portable" {
        return CpuFeatures { avx2: false, avx512: false, amx_bf16: false };
    }
    let avx2 = avx2_available();
    let avx512 = avx2 && forced != "avx2" && avx512_available();
    let amx_bf16 = avx512 && forced != "avx512" && amx_available();
    CpuFeatures { avx2, avx512, amx_bf16 }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

/// AMX needs the CPU bits, the OS saving tile state (XCR0 bits 17 and 18)
/// and, on Linux, a per-process permission request for the tile data.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_available() -> bool {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    const XTILE_STATE: u64 = (1 << 17) | (1 << 18);
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;

    let leaf7 = __cpuid_count(7, 0);
    if leaf7.edx & (AMX_BF16 | AMX_TILE) != (AMX_BF16 | AMX_TILE) {
        return false;
    }
    if !is_x86_feature_detected!("xsave") {
        return false;
    }
    // SAFETY: xgetbv(0) is valid once OSXSAVE is set, implied by `xsave` detection.
    let xcr0 = unsafe { _xgetbv(0) };
    if xcr0 & XTILE_STATE != XTILE_STATE {
        return false;
    }
    // SAFETY: plain syscall with integer arguments; failure is reported by the return value.
    let granted = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    if granted != 0 {
        tracing::debug!("AMX present but the kernel refused tile-data permission");
        return false;
    }
    true
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_available() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_implies_avx512_implies_avx2() {
        let f = CpuFeatures::get();
        assert!(!f.amx_bf16 || f.avx512);
        assert!(!f.avx512 || f.avx2);
    }
}
