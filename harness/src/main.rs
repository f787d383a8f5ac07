//! `harness`: the command line; the commands are `harness::cli`.

fn main() -> std::process::ExitCode {
    harness::cli::main()
}
