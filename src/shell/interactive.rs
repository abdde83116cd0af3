//! Programs that wait for a terminal: started without one (an `Exec`, whose
//! stdin is `/dev/null` and whose output is a pipe) they hang until the
//! timeout (`vi`), fail (`top`), or end at once having done nothing (a REPL
//! reads end-of-file). The engine tells the person before that happens
//! (`Notice { NeedsTerminal }`), with what to do instead.
//!
//! Only a plain line (one program, literal words) is recognised: that is how
//! these programs are started, and a guess about a pipeline would be noise.

use super::words::program_name;
use super::Line;

/// Full-screen programs: they need a terminal whatever their arguments.
const FULL_SCREEN: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "view",
    "vimdiff",
    "nano",
    "pico",
    "emacs",
    "top",
    "htop",
    "btop",
    "atop",
    "iotop",
    "watch",
    "tmux",
    "screen",
    "mc",
    "ranger",
    "nnn",
    "tig",
    "ncdu",
    "mutt",
    "alsamixer",
    "nmtui",
    "whiptail",
    "dialog",
];

/// Programs that read from the terminal when given no operand: a pager with
/// nothing to page, a REPL, a shell, a database client.
const WITHOUT_OPERANDS: &[&str] = &[
    "less",
    "more",
    "most",
    "python",
    "python3",
    "ipython",
    "node",
    "irb",
    "ghci",
    "lua",
    "R",
    "bash",
    "sh",
    "zsh",
    "fish",
    "dash",
    "ksh",
    "sqlite3",
    "psql",
    "mysql",
    "mariadb",
    "redis-cli",
    "ftp",
    "sftp",
    "telnet",
    "bc",
    "gdb",
];

/// A line for the person when `line` starts a program that waits for a
/// terminal, e.g. "vi needs a terminal: run it with -t (voxterm exec -t), or
/// in the voice terminal page". `None` for everything else.
pub fn needs_terminal(line: &Line) -> Option<String> {
    let argv = line.direct_argv()?;
    let program = program_name(argv.first()?)?;
    let args = &argv[1..];
    let why = if FULL_SCREEN.contains(&program) && !batch_mode(program, args) {
        "needs a terminal"
    } else if WITHOUT_OPERANDS.contains(&program) && args.is_empty() {
        "reads from a terminal when started without arguments"
    } else if program == "ssh" && ssh_operands(args) == 1 {
        "without a command opens an interactive login that needs a terminal"
    } else if program == "git" && git_opens_editor(args) {
        return Some(format!(
            "git {} opens an editor, and there is no terminal: give the message with -m, or run it with -t (voxterm exec -t)",
            args.first().map_or("", String::as_str)
        ));
    } else {
        return None;
    };
    Some(format!(
        "{program} {why}: run it with -t (voxterm exec -t), or in the page's terminal"
    ))
}

/// `emacs --batch`, `top -b`: the full-screen program's own non-interactive mode.
fn batch_mode(program: &str, args: &[String]) -> bool {
    let has = |flags: &[&str]| args.iter().any(|a| flags.contains(&a.as_str()));
    match program {
        "emacs" => has(&["--batch", "-batch", "--script"]),
        "top" => args.iter().any(|a| a.starts_with("-b") || a == "--batch"),
        "vi" | "vim" | "nvim" => has(&["-es", "-Es", "--headless", "--version", "-h", "--help"]),
        _ => has(&["--version", "--help", "-V"]),
    }
}

/// How many operands (host, then command words) an ssh argv has.
fn ssh_operands(args: &[String]) -> usize {
    const WITH_VALUE: &[u8] = b"BbcDEeFIiJLlmOoPpQRSWw";
    let mut operands = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_bytes() {
            [b'-', b'-'] => return operands + it.count(),
            [b'-', flag, rest @ ..] if operands == 0 => {
                if WITH_VALUE.contains(flag) && rest.is_empty() {
                    it.next();
                }
            }
            _ => operands += 1,
        }
    }
    operands
}

/// `git commit` without a message, `git rebase -i`, `git add -p`.
fn git_opens_editor(args: &[String]) -> bool {
    let has = |flags: &[&str]| {
        args.iter().any(|a| {
            flags
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        })
    };
    match args.first().map(String::as_str) {
        Some("commit") => {
            // `-m`, `-am`, `-mfix`, `-F file`, `-C commit`: a message is given.
            let short_message = args[1..]
                .iter()
                .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(['m', 'F', 'C']));
            !short_message
                && !has(&[
                    "--message",
                    "--file",
                    "--reuse-message",
                    "--no-edit",
                    "--fixup",
                ])
        }
        Some("rebase") => has(&["-i", "--interactive"]),
        Some("add") => has(&["-p", "--patch", "-i", "--interactive"]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(line: &str) -> Option<String> {
        needs_terminal(&Line::parse(line))
    }

    #[test]
    fn programs_that_wait_for_a_terminal_are_named() {
        for line in [
            "vi notes.txt",
            "vim",
            "top",
            "/usr/bin/htop",
            "less",
            "python3",
            "node",
            "bash",
            "ssh example.org",
            "ssh -p 2222 -i key me@example.org",
            "git commit",
            "git commit -a",
            "git rebase -i main",
            "git add -p",
        ] {
            let h = hint(line).unwrap_or_else(|| panic!("{line:?} should need a terminal"));
            assert!(h.contains("-t"), "{line:?}: {h}");
        }
        assert_eq!(
            hint("vi a.txt").as_deref(),
            Some(
                "vi needs a terminal: run it with -t (voxterm exec -t), or in the page's terminal"
            )
        );
    }

    #[test]
    fn the_same_programs_used_without_a_terminal_are_left_alone() {
        for line in [
            "less README.md",
            "python3 -c 'print(1)'",
            "python3 script.py",
            "node app.js",
            "bash -c 'echo hi'",
            "ssh example.org uptime",
            "ssh -p 2222 example.org -- ls",
            "top -b -n 1",
            "emacs --batch -l x.el",
            "vim --version",
            "git commit -m 'fix'",
            "git commit -am fix",
            "git commit --no-edit",
            "git status",
            "ls -la",
            "echo vi | cat",
        ] {
            assert_eq!(hint(line), None, "{line:?}");
        }
    }
}
