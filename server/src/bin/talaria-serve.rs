//! `talaria-serve`: the OpenAI-compatible server (see `talaria_server::serve`).
use clap::Parser;

fn main() {
    talaria_server::cli::init_logging();
    let args = talaria_server::serve::ServeArgs::parse();
    if let Err(e) = talaria_server::serve::run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
