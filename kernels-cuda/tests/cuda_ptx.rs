//! NVRTC without a GPU: compiles every CUDA source for sm_80 and sm_90 (real
//! architectures, so NVRTC also runs ptxas over the inline PTX) and for
//! compute_70 (no tensor cores), and checks the entry points and the
//! tensor-core instructions in the PTX. NVRTC is looked up as the backend
//! does (`ensure_nvrtc`: the dynamic linker, then `$TALARIA_NVRTC_DIR`, then
//! the folder `bench/gpu/nvrtc_env.sh` installs into); without it the test
//! says "skipped: no NVRTC" and passes.

use talaria_kernels_cuda::source::{compile, ptx_entries, SOURCES};
use talaria_kernels_cuda::{ensure_nvrtc, CudaError};

fn nvrtc_or_skip() -> bool {
    match ensure_nvrtc() {
        Ok(location) => {
            eprintln!("NVRTC: {location:?}");
            true
        }
        Err(e) => {
            eprintln!("skipped: no NVRTC ({e})");
            false
        }
    }
}

fn compile_text(source_index: usize, arch: &str) -> String {
    let source = &SOURCES[source_index];
    match compile(source, arch) {
        Ok(ptx) => ptx.to_src(),
        Err(e) => panic!("{} for {arch}: {e}", source.name),
    }
}

#[test]
fn tensor_core_targets_have_every_entry_and_the_mma_instructions() {
    if !nvrtc_or_skip() {
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        for (i, source) in SOURCES.iter().enumerate() {
            let ptx = compile_text(i, arch);
            let mut found = ptx_entries(&ptx);
            found.sort();
            let mut expected: Vec<String> = source.entries.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(found, expected, "{} for {arch}", source.name);
            assert!(ptx.contains(&format!(".target {arch}")), "{} targets {arch}", source.name);
            for instruction in source.mma_instructions {
                assert!(ptx.contains(instruction), "{} for {arch} lacks {instruction}", source.name);
            }
            assert!(!ptx.contains("trap;"), "{} for {arch} compiled the no-MMA stub", source.name);
            if arch == "sm_90" && source.name == "gemm_exact.cu" {
                assert!(ptx.contains("mma.sync.aligned.m16n8k4.row.col.f64.f64.f64.f64"), "no sm_90 DMMA in gemm_exact.cu");
            }
        }
    }
}

#[test]
fn pre_ampere_target_compiles_without_tensor_core_instructions() {
    if !nvrtc_or_skip() {
        return;
    }
    for (i, source) in SOURCES.iter().enumerate() {
        let ptx = compile_text(i, "compute_70");
        assert_eq!(ptx_entries(&ptx).len(), source.entries.len(), "{}", source.name);
        assert!(!ptx.contains("mma.sync"), "{} emits mma for sm_70", source.name);
    }
}

#[test]
fn compile_errors_are_reported_with_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let broken = talaria_kernels_cuda::source::KernelSource {
        name: "broken.cu",
        code: "extern \"C\" __global__ void k(double* y) { y[0] = undefined_name; }",
        entries: &["k"],
        mma_instructions: &[],
    };
    match compile(&broken, "sm_80") {
        Err(CudaError::Compile { source_name, arch, message }) => {
            assert_eq!(source_name, "broken.cu");
            assert_eq!(arch, "sm_80");
            assert!(message.contains("undefined_name"), "log missing from: {message}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn backend_without_a_driver_is_an_error_not_a_panic() {
    // On a machine with a GPU this opens it instead; either way no panic.
    match talaria_kernels_cuda::CudaMatmul::new(0) {
        Ok(m) => eprintln!("CUDA device present: {:?}", m.device()),
        Err(e) => {
            eprintln!("CUDA backend unavailable (expected without a GPU): {e}");
            if !talaria_kernels_cuda::driver_present() {
                assert!(matches!(e, CudaError::DriverNotFound), "got {e:?}");
            }
        }
    }
    if !talaria_kernels_cuda::driver_present() {
        assert!(talaria_kernels_cuda::CudaMatmul::try_default().is_none());
    }
}
