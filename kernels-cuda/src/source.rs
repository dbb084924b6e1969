//! The CUDA C sources, their entry points, and NVRTC compilation.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

use super::error::{catch_library_panic, CudaError};
use super::library::ensure_nvrtc;

/// Prepended to every source (NVRTC gets no include paths).
const COMMON: &str = include_str!("kernels/common.cuh");

/// One `.cu` file: the entry points it defines and the tensor-core
/// instructions its sm_80+ PTX must contain.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    pub name: &'static str,
    pub code: &'static str,
    pub entries: &'static [&'static str],
    pub mma_instructions: &'static [&'static str],
}

pub const EXACT_SOURCE: KernelSource = KernelSource {
    name: "gemm_exact.cu",
    code: include_str!("kernels/gemm_exact.cu"),
    entries: &[
        "talaria_exact_dmma_bf16",
        "talaria_exact_dmma_f16",
        "talaria_exact_dmma_f32",
        "talaria_exact_dmma90_bf16",
        "talaria_exact_dmma90_f16",
        "talaria_exact_dmma90_f32",
        "talaria_exact_gemv_bf16",
        "talaria_exact_gemv_f16",
        "talaria_exact_gemv_f32",
        "talaria_exact_dmma_q4_0",
        "talaria_exact_dmma90_q4_0",
        "talaria_exact_gemv_q4_0",
        "talaria_exact_dmma_q4_1",
        "talaria_exact_dmma90_q4_1",
        "talaria_exact_gemv_q4_1",
        "talaria_exact_dmma_q5_0",
        "talaria_exact_dmma90_q5_0",
        "talaria_exact_gemv_q5_0",
        "talaria_exact_dmma_q5_1",
        "talaria_exact_dmma90_q5_1",
        "talaria_exact_gemv_q5_1",
        "talaria_exact_dmma_q8_0",
        "talaria_exact_dmma90_q8_0",
        "talaria_exact_gemv_q8_0",
        "talaria_exact_dmma_q4_k",
        "talaria_exact_dmma90_q4_k",
        "talaria_exact_gemv_q4_k",
        "talaria_exact_dmma_q5_k",
        "talaria_exact_dmma90_q5_k",
        "talaria_exact_gemv_q5_k",
        "talaria_exact_dmma_q6_k",
        "talaria_exact_dmma90_q6_k",
        "talaria_exact_gemv_q6_k",
    ],
    mma_instructions: &["mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64"],
};

pub const BF16_SOURCE: KernelSource = KernelSource {
    name: "gemm_bf16.cu",
    code: include_str!("kernels/gemm_bf16.cu"),
    entries: &[
        "talaria_fast_gemv_bf16",
        "talaria_fast_mma_bf16",
        "talaria_plain_gemv_bf16",
        "talaria_plain_mma_bf16",
        "talaria_fast_gemv_f16",
        "talaria_plain_gemv_f16",
        "talaria_fast_gemv_f32",
        "talaria_plain_gemv_f32",
        "talaria_fast_gemv_q4_0",
        "talaria_fast_mma_q4_0",
        "talaria_plain_gemv_q4_0",
        "talaria_plain_mma_q4_0",
        "talaria_fast_gemv_q4_1",
        "talaria_fast_mma_q4_1",
        "talaria_plain_gemv_q4_1",
        "talaria_plain_mma_q4_1",
        "talaria_fast_gemv_q5_0",
        "talaria_fast_mma_q5_0",
        "talaria_plain_gemv_q5_0",
        "talaria_plain_mma_q5_0",
        "talaria_fast_gemv_q5_1",
        "talaria_fast_mma_q5_1",
        "talaria_plain_gemv_q5_1",
        "talaria_plain_mma_q5_1",
        "talaria_fast_gemv_q8_0",
        "talaria_fast_mma_q8_0",
        "talaria_plain_gemv_q8_0",
        "talaria_plain_mma_q8_0",
        "talaria_fast_gemv_q4_k",
        "talaria_fast_mma_q4_k",
        "talaria_plain_gemv_q4_k",
        "talaria_plain_mma_q4_k",
        "talaria_fast_gemv_q5_k",
        "talaria_fast_mma_q5_k",
        "talaria_plain_gemv_q5_k",
        "talaria_plain_mma_q5_k",
        "talaria_fast_gemv_q6_k",
        "talaria_fast_mma_q6_k",
        "talaria_plain_gemv_q6_k",
        "talaria_plain_mma_q6_k",
    ],
    mma_instructions: &["mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"],
};

pub const SOURCES: [KernelSource; 2] = [EXACT_SOURCE, BF16_SOURCE];

impl KernelSource {
    /// The text NVRTC compiles: the common prelude, then this file (with a
    /// `#line` so that diagnostics name the right file and line).
    pub fn full_text(&self) -> String {
        format!("{COMMON}\n#line 1 \"{}\"\n{}", self.name, self.code)
    }
}

/// NVRTC `--gpu-architecture` value for a compute capability. A real
/// architecture (`sm_XY`) makes NVRTC also run ptxas, so errors in inline
/// PTX surface at compile time rather than when the driver loads the module.
pub fn nvrtc_arch(compute_capability: (i32, i32)) -> String {
    format!("sm_{}{}", compute_capability.0, compute_capability.1)
}

/// Compiles `source` for `arch` (`sm_80`, `sm_90`, `compute_70`, …).
pub fn compile(source: &KernelSource, arch: &str) -> Result<Ptx, CudaError> {
    ensure_nvrtc()?;
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".to_string()],
        name: Some(source.name.to_string()),
        ..Default::default()
    };
    let text = source.full_text();
    catch_library_panic("NVRTC", || {
        compile_ptx_with_opts(&text, opts).map_err(|e| CudaError::Compile {
            source_name: source.name,
            arch: arch.to_string(),
            message: describe(&e),
        })
    })
}

/// Compiles for the device's own architecture, falling back to `compute_90`
/// PTX (JIT-compiled by the driver) for devices newer than this NVRTC knows.
pub fn compile_for_device(source: &KernelSource, compute_capability: (i32, i32)) -> Result<Ptx, CudaError> {
    match compile(source, &nvrtc_arch(compute_capability)) {
        Err(CudaError::Compile { .. }) if compute_capability.0 > 9 => compile(source, "compute_90"),
        other => other,
    }
}

fn describe(e: &CompileError) -> String {
    match e {
        CompileError::CompileError { nvrtc, options, log } => format!("{nvrtc:?} with options {options:?}:\n{}", log.to_string_lossy()),
        other => format!("{other:?}"),
    }
}

/// The names of the `.entry` functions in a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|line| {
            let rest = line.trim_start();
            let rest = rest.strip_prefix(".visible .entry ").or_else(|| rest.strip_prefix(".entry "))?;
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!(nvrtc_arch((9, 0)), "sm_90");
        assert_eq!(nvrtc_arch((8, 6)), "sm_86");
    }

    #[test]
    fn entries_are_parsed_from_ptx() {
        let ptx = ".version 8.4\n.visible .entry talaria_a(\n\t.param .u64 p\n)\n.entry b_2(\n";
        assert_eq!(ptx_entries(ptx), vec!["talaria_a", "b_2"]);
    }

    #[test]
    fn every_entry_is_defined_in_its_source() {
        for source in SOURCES {
            // Macro instantiations: `TALARIA_EXACT_ENTRIES(q4_k, WQ4K)` defines `…_##SUFFIX` as `…_q4_k`.
            let suffixes: Vec<&str> =
                source.code.match_indices("_ENTRIES(").filter_map(|(at, _)| source.code[at + 9..].split(',').next()).collect();
            for entry in source.entries {
                let by_macro = suffixes.iter().any(|sfx| {
                    entry.strip_suffix(sfx).is_some_and(|stem| stem.ends_with('_') && source.code.contains(&format!("{stem}##SUFFIX")))
                });
                assert!(source.code.contains(entry) || by_macro, "{entry} not found in {}", source.name);
            }
        }
    }

    #[test]
    fn full_text_starts_with_the_prelude() {
        let text = EXACT_SOURCE.full_text();
        assert!(text.starts_with(COMMON));
        assert!(text.contains("#line 1 \"gemm_exact.cu\""));
    }
}
