#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    retrac_sync::cli::main()
}
