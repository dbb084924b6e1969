//! Runs the CUDA kernels on the CPU thread emulator (bench/gpu/emu): g++
//! compiles the same .cu text NVRTC gets, with warp shuffles and the two
//! mma.sync instructions emulated per the PTX ISA fragment layouts, and
//! checks every kernel against a double-precision reference on shapes that
//! hit tile edges, scalar and vector load paths and several row blocks.
//! Catches indexing, tiling and limb-split mistakes without a GPU. The
//! exact kernels also read random GGUF quant blocks of every kernel-read
//! type in place, checked against the values the CPU side gives the same
//! bytes (a fixture this test writes). Skipped (passes, says so) where no
//! C++20 g++ is installed.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use talaria_kernels::{WeightDType, WeightMatrix};

/// Random blocks of every quant type the kernels read, with finite f16
/// scales at ggml's offsets, and the exact values `WeightMatrix` gives
/// them: `[name len, n, k, byte count] (u32), name, bytes, values (f32)`.
fn write_quant_fixture(path: &Path) {
    use WeightDType::*;
    let types = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut file = std::fs::File::create(path).expect("fixture file");
    for dtype in types {
        let (per, block_bytes) = dtype.block();
        // Partial 64-column tiles; two K-quant super-blocks or three 32-blocks per row.
        let (n, k) = (72, if per == 256 { 512 } else { 96 });
        let mut bytes: Vec<u8> = (0..dtype.bytes_for(n * k).unwrap()).map(|_| next() as u8).collect();
        for block in bytes.chunks_exact_mut(block_bytes) {
            for &at in dtype.f16_scale_offsets() {
                let bits = (next() as u16 & 0x83FF) | (((next() % 16) as u16 + 4) << 10);
                block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
        }
        let values = WeightMatrix::from_stored(n, k, dtype, &bytes).expect("whole blocks").to_f32();
        let name = dtype.name().as_bytes();
        for v in [name.len(), n, k, bytes.len()] {
            file.write_all(&(v as u32).to_le_bytes()).unwrap();
        }
        file.write_all(name).unwrap();
        file.write_all(&bytes).unwrap();
        file.write_all(bytemuck::cast_slice(&values)).unwrap();
    }
}

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
    let fixture = Path::new(env!("CARGO_TARGET_TMPDIR")).join("talaria_emu_quant_blocks.bin");
    write_quant_fixture(&fixture);
    let run = Command::new(&binary).arg(&fixture).output().expect("run the emulator check");
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("{report}");
    assert!(run.status.success(), "emulator check failed:\n{report}");
    assert!(report.contains("exact_dmma_f16") && report.contains("fast_mma_bf16"));
    for t in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"] {
        assert!(report.contains(&format!("exact_gemv_{t} ")) && report.contains(&format!("exact_dmma_{t} ")), "{t} not checked");
    }
    assert!(!report.contains("FAIL"));
}
