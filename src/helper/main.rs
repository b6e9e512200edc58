//! `passthrough-helper`: see the library for everything.

fn main() -> std::process::ExitCode {
    passthrough_helper::run()
}
