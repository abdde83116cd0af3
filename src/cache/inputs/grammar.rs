//! The words of the programs whose operands are their inputs: readers (`cat`,
//! `grep`…), listings (`ls`, `ls -R`) and tree summaries (`du`, `tree`).

use super::stamp::Shows;
use super::{Tree, What, MAX_OPERANDS};

/// What a program does with its operands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads each operand (none: stdin, refused).
    Read,
    /// Lists each operand (`ls`; none: `.`): names and kinds, or with
    /// [`Grammar::meta`] flags their metadata too (`ls -l` dates).
    List,
    /// Walks each operand's whole tree (none: `.`).
    Tree,
}

/// How one program's words are read.
struct Grammar {
    programs: &'static [&'static str],
    /// Short options without a value that keep the output a function of the inputs.
    flags: &'static str,
    /// Short options that take a value (the rest of the word, or the next word).
    valued: &'static str,
    /// Long options without a value, accepted as written.
    long: &'static [&'static str],
    /// `-NUM` is a count (`head -20`).
    numeric: bool,
    /// The first operand is a pattern, not a file, unless `-e` gave one (grep).
    pattern: bool,
    mode: Mode,
    /// The flag that makes a reader or a listing walk whole trees (`grep -r`,
    /// `ls -R`; not `grep -R`, which follows every symlink).
    recursive: Option<char>,
    /// The valued option that bounds the depth shown (`tree -L 2`).
    depth: Option<char>,
    /// A listing's flags that show or sort by what a file's metadata holds
    /// beyond its name and kind (times, sizes, blocks, inodes, owners, links:
    /// `ls -l`, `-t`, `-s`…). A listing with none of them prints names and
    /// kinds only, and is stamped by those alone.
    meta: &'static str,
    /// Of those, the flags that order or print by a time to its last
    /// nanosecond (`ls -t` sorts by mtime, `-c` by ctime and prints it):
    /// the listing is stamped by every time, not by the minute it shows.
    exact: &'static str,
}

const fn reader(programs: &'static [&'static str], flags: &'static str) -> Grammar {
    Grammar {
        programs,
        flags,
        valued: "",
        long: &[],
        numeric: false,
        pattern: false,
        mode: Mode::Read,
        recursive: None,
        depth: None,
        meta: "",
        exact: "",
    }
}

/// The programs whose inputs can be told from their words. Options not listed
/// make a line unvalidated (`tail -f`, `grep -R`, `sort -R`, `grep -f`, `du -L`).
const GRAMMARS: &[Grammar] = &[
    reader(&["cat"], "AbeEnstTuv"),
    Grammar {
        valued: "nc",
        numeric: true,
        ..reader(&["head", "tail"], "qvz")
    },
    reader(&["wc"], "clmwL"),
    Grammar {
        valued: "mABCe",
        pattern: true,
        recursive: Some('r'),
        ..reader(&["grep", "egrep", "fgrep"], "EFGPiyvwxcLlHhnbToOsqUzaI")
    },
    reader(
        &[
            "md5sum",
            "sha1sum",
            "sha224sum",
            "sha256sum",
            "sha384sum",
            "sha512sum",
            "b2sum",
            "cksum",
        ],
        "btz",
    ),
    Grammar {
        valued: "s",
        ..reader(&["tac"], "br")
    },
    reader(&["rev"], ""),
    Grammar {
        valued: "w",
        ..reader(&["base64"], "di")
    },
    Grammar {
        valued: "ktST",
        ..reader(&["sort"], "bdfgiMhnrVsuzcmC")
    },
    Grammar {
        valued: "bcdf",
        ..reader(&["cut"], "snz")
    },
    // `-c` alone sorts by ctime; `-h`, `-k`, `-G` only change what `-l` or
    // `-s` print, and count as them to be safe.
    Grammar {
        mode: Mode::List,
        recursive: Some('R'),
        meta: "lhtSisngoGkc",
        exact: "tc",
        ..reader(&["ls"], "aAlh1FprtSXvisdngoGBQNkc")
    },
    // du sums every entry whatever `-d` shows; `-L`, `-D`, `-H` follow links.
    Grammar {
        valued: "dBt",
        long: &["--apparent-size"],
        mode: Mode::Tree,
        ..reader(&["du"], "ahcskmbxlS0P")
    },
    // tree -D (dates), -l (follows links), -o (writes a file) are not listed.
    Grammar {
        valued: "L",
        long: &["--noreport"],
        mode: Mode::Tree,
        depth: Some('L'),
        ..reader(&["tree"], "adfiFsphugnNrv")
    },
];

/// The inputs of `program args`, when it is one of [`GRAMMARS`] and every word
/// is understood.
pub(super) fn parse(program: &str, args: &[String]) -> Option<What> {
    let g = GRAMMARS.iter().find(|g| g.programs.contains(&program))?;
    let mut operands: Vec<&str> = Vec::new();
    let mut pattern_given = false;
    let mut all = false;
    let mut shows_meta = false;
    let mut exact = false;
    let mut recursive = false;
    let mut depth = u32::MAX;
    let mut options_done = false;
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if w == "-" {
            return None; // stdin
        }
        if options_done || !w.starts_with('-') {
            operands.push(w);
            continue;
        }
        // An option after an operand is one only where getopt permutes
        // (not with POSIXLY_CORRECT): refuse rather than guess.
        if !operands.is_empty() {
            return None;
        }
        if w == "--" {
            options_done = true;
            continue;
        }
        if w.starts_with("--") {
            if g.long.contains(&w.as_str()) {
                continue;
            }
            return None;
        }
        let body = &w[1..];
        if g.numeric && body.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for (i, c) in body.char_indices() {
            if g.flags.contains(c) {
                all |= c == 'a';
                shows_meta |= g.meta.contains(c);
                exact |= g.exact.contains(c);
                continue;
            }
            if g.recursive == Some(c) {
                recursive = true;
                continue;
            }
            if !g.valued.contains(c) {
                return None;
            }
            pattern_given |= g.pattern && c == 'e';
            let rest = &body[i + c.len_utf8()..];
            let value = if rest.is_empty() {
                words.next()? // the value is the next word
            } else {
                rest // or the rest of this one
            };
            if g.depth == Some(c) {
                depth = value.parse().ok()?;
            }
            break;
        }
    }
    if g.pattern && !pattern_given {
        if operands.is_empty() {
            return None;
        }
        operands.remove(0);
    }
    if operands.is_empty() {
        if g.mode == Mode::Read && !recursive {
            return None; // would read stdin
        }
        operands.push(".");
    }
    if operands.len() > MAX_OPERANDS {
        return None;
    }
    let paths = operands.into_iter().map(Box::from).collect();
    Some(match g.mode {
        Mode::Read if !recursive => What::Read(paths),
        Mode::Read => What::Walk(Tree {
            reads: true,
            ..Tree::new(paths, u32::MAX)
        }),
        Mode::List => What::Walk(Tree {
            parent: all,
            dates: shows_meta,
            shows: match (shows_meta, exact) {
                (false, _) => Shows::Names,
                (true, false) => Shows::Columns,
                (true, true) => Shows::All,
            },
            ..Tree::new(paths, if recursive { u32::MAX } else { 1 })
        }),
        Mode::Tree => What::Walk(Tree::new(paths, depth)),
    })
}
