//! `talaria-serve`: the OpenAI-compatible server (see `talaria_cvm::serve`).
use clap::Parser;

fn main() {
    talaria_cvm::cli::init_logging();
    let args = talaria_cvm::serve::ServeArgs::parse();
    if let Err(e) = talaria_cvm::serve::run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
