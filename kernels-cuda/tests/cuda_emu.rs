//! Runs the CUDA kernels on the CPU thread emulator (bench/gpu/emu): g++
//! compiles the same .cu text NVRTC gets, with warp shuffles and the two
//! mma.sync instructions emulated per the PTX ISA fragment layouts, and
//! checks every kernel against a double-precision reference on shapes that
//! hit tile edges, scalar and vector load paths and several row blocks.
//! Catches indexing, tiling and limb-split mistakes without a GPU. Skipped
//! (passes, says so) where no C++20 g++ is installed.

use std::path::Path;
use std::process::Command;

#[test]
fn kernels_match_a_reference_on_the_cpu_emulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = root.join("bench/gpu/emu/emu_check.cpp");
    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("talaria_emu_check");
    let compiled =
        Command::new("g++").args(["-std=c++20", "-O2", "-pthread", "-Wno-unknown-pragmas", "-o"]).arg(&binary).arg(&source).output();
    match compiled {
        Err(e) => {
            eprintln!("skipped: no g++ ({e})");
            return;
        }
        Ok(out) if !out.status.success() => {
            let log = String::from_utf8_lossy(&out.stderr);
            // An old compiler without C++20 <barrier> is a skip; anything
            // else is a broken kernel source.
            if log.contains("barrier") && log.contains("No such file") {
                eprintln!("skipped: g++ lacks C++20 <barrier>");
                return;
            }
            panic!("emulator build failed:\n{log}");
        }
        Ok(_) => {}
    }
    let run = Command::new(&binary).output().expect("run the emulator check");
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("{report}");
    assert!(run.status.success(), "emulator check failed:\n{report}");
    assert!(report.contains("exact_dmma_f16") && report.contains("fast_mma_bf16"));
    assert!(!report.contains("FAIL"));
}
