//! Device check for the CUDA kernels: correctness of every kernel against a
//! CPU reference on fresh random data, then timings against cuBLAS, printed
//! as markdown. Run by bench/gpu/check.sh on a machine with a GPU:
//!
//!   cargo run --release -p talaria-kernels --example cuda_check [-- --skip-timing]
//!
//! Exit status: 0 all checks passed, 1 a check failed, 3 no usable CUDA
//! device (the reason is printed).

mod accuracy;
mod data;
mod timing;

use talaria_kernels_cuda::CudaMatmul;

fn main() {
    let skip_timing = std::env::args().any(|a| a == "--skip-timing");
    let mut m = match CudaMatmul::new(0) {
        Ok(m) => m,
        Err(e) => {
            println!("skipped: no usable CUDA device: {e}");
            std::process::exit(3);
        }
    };
    let info = m.device().clone();
    let (mut rng, seed) = data::Rng64::fresh();
    println!(
        "# Talaria CUDA kernel check\n\ndevice: {} (sm_{}{}, {} SMs, {:.0} GiB), NVRTC: {:?}, seed: {seed}\n",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.sm_count,
        info.total_mem_bytes as f64 / (1u64 << 30) as f64,
        m.nvrtc_location()
    );

    let mut failures = 0;
    match accuracy::run(&mut m, &mut rng) {
        Ok(outcome) => {
            println!("## Accuracy\n");
            for line in &outcome.lines {
                println!("{line}");
            }
            failures += outcome.failures;
        }
        Err(e) => {
            println!("accuracy checks aborted: {e}");
            failures += 1;
        }
    }
    if !skip_timing {
        match timing::run(&mut m, &mut rng) {
            Ok(report) => {
                println!("\n## Timing (kernel only, CUDA events; host call = copies included)\n");
                for line in &report.table {
                    println!("{line}");
                }
                failures += report.cross_check_failures;
            }
            Err(e) => {
                println!("timing aborted: {e}");
                failures += 1;
            }
        }
    }
    println!("\n{} passed, {} failed", usize::from(failures == 0), usize::from(failures != 0));
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
