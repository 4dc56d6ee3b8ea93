//! `sample-app` binary: everything lives in the library so `baton sample-app` can reuse it.

fn main() -> std::process::ExitCode {
    sample_app::run_main()
}
