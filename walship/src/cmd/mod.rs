//! One module per subcommand; each turns parsed arguments into library calls and an exit code.

use crate::cli::Command;
use crate::exit;

/// Runs the parsed command and returns its exit code (see [`crate::exit`]).
pub fn run(command: Command) -> u8 {
    let (name, issue) = match command {
        Command::Archive(_) => ("archive", Some(3)),
        Command::Fetch(_) => ("fetch", Some(3)),
        Command::Stream(_) => ("stream", Some(6)),
        Command::Backup(_) => ("backup", Some(4)),
        Command::List(_) => ("list", Some(4)),
        Command::Info(_) => ("info", Some(4)),
        Command::Restore(_) => ("restore", Some(5)),
        Command::Verify(_) => ("verify", None),
        Command::Expire(_) => ("expire", None),
        Command::Check(_) => ("check", None),
    };
    not_built(name, issue)
}

/// Refuses plainly: a command that is not built must never look like a success.
fn not_built(name: &str, issue: Option<u32>) -> u8 {
    match issue {
        Some(n) => {
            eprintln!("walship {name}: not built yet (tracked in issue {n}); nothing was done")
        }
        None => eprintln!("walship {name}: not built yet; nothing was done"),
    }
    exit::USAGE
}
