//! Rewrites the settings table of the README named on the command line (`make settings-table`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: readme-table README.md");
        return ExitCode::from(2);
    };
    let readme = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(fresh) = settings::with_table(&readme) else {
        eprintln!(
            "error: {path} lacks the lines {:?} and {:?} around the table",
            settings::TABLE_BEGIN,
            settings::TABLE_END
        );
        return ExitCode::FAILURE;
    };
    if let Err(e) = std::fs::write(&path, fresh) {
        eprintln!("error: cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
