//! `talaria`: command-line generation on the default (or a given) model.
use clap::Parser;

fn main() {
    talaria_cvm::cli::init_logging();
    talaria_kernels::cpu::join_global_pool();
    let cli = talaria_cvm::cli::Cli::parse();
    if let Err(e) = talaria_cvm::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
