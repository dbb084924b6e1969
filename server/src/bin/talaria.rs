//! `talaria`: command-line generation on the default (or a given) model.
use clap::Parser;

fn main() {
    talaria_server::cli::init_logging();
    talaria_kernels::cpu::join_global_pool();
    let cli = talaria_server::cli::Cli::parse();
    if let Err(e) = talaria_server::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
