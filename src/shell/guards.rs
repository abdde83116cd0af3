//! Guards against hostile input, checked on the raw text before the parser sees
//! it. Each one is a bound found by fuzzing brush-parser: past it the parser
//! recurses off the stack, backtracks exponentially or loops, so such a line is
//! not understood (and therefore refused by a policy and never cached) without
//! being parsed.

/// Most openers (see [`nesting_bound`]) a line may hold: `brush-parser` recurses
/// once per nesting level on the caller's stack, and about 600 nested `(`
/// overflowed a 2 MiB tokio worker stack (a stack overflow aborts the process).
pub const MAX_NESTING: usize = 64;

/// Most `$((` a line may hold: brush-parser tries each as arithmetic and then as
/// `$( (`, so the work doubles with every one (20 of them took 5 s, 24 over 20 s).
pub const MAX_ARITHMETIC: usize = 8;

/// Why `line` must not reach the parser, or `None` when it may.
pub fn refuse(line: &str) -> Option<&'static str> {
    if line.contains('\0') {
        Some("the line holds a NUL byte")
    } else if nesting_bound(line) > MAX_NESTING {
        Some("the line nests too deeply to be checked")
    } else if huge_io_number(line) {
        Some("a redirection names a file descriptor too large to be checked")
    } else if arithmetic_openers(line) > MAX_ARITHMETIC {
        Some("the line holds too many arithmetic expansions to be checked")
    } else if empty_here_tag(line) {
        Some("a here-document has an empty delimiter")
    } else {
        None
    }
}

/// An upper bound of the nesting depth the parser can reach on `line`: every byte
/// and reserved word that can open a level counts, whether or not it does (quotes,
/// escapes and closers are ignored, so the bound never underestimates). Backslashes
/// and newlines are skipped inside words so that `i\<newline>f` counts as `if`.
pub(crate) fn nesting_bound(line: &str) -> usize {
    let mut count = 0;
    let mut word = [0u8; 6];
    let mut len = 0;
    for b in line.bytes().chain([b' ']) {
        match b {
            b'\\' | b'\n' => continue,
            b'a'..=b'z' => {
                if let Some(slot) = word.get_mut(len) {
                    *slot = b;
                }
                len += 1;
                continue;
            }
            b'(' | b'{' | b'`' => count += 1,
            _ => {}
        }
        if matches!(
            word.get(..len),
            Some(b"if" | b"for" | b"case" | b"while" | b"until" | b"select")
        ) {
            count += 1;
        }
        len = 0;
    }
    count
}

/// How many `$((` the line holds, line continuations (and any backslash or
/// newline) between the three bytes included.
pub(crate) fn arithmetic_openers(line: &str) -> usize {
    let mut last = [0u8; 2];
    let mut count = 0;
    for b in line.bytes().filter(|b| !matches!(b, b'\\' | b'\n')) {
        if b == b'(' && last == [b'$', b'('] {
            count += 1;
        }
        last = [last[1], b];
    }
    count
}

/// True when `(`/`)` and `{`/`}` pair up in order (quotes are not considered, so
/// some balanced text is refused: that only costs a verdict).
pub(crate) fn balanced(text: &str) -> bool {
    let (mut paren, mut brace) = (0usize, 0usize);
    for b in text.bytes() {
        let depth = match b {
            b'(' => {
                paren += 1;
                continue;
            }
            b'{' => {
                brace += 1;
                continue;
            }
            b')' => &mut paren,
            b'}' => &mut brace,
            _ => continue,
        };
        match depth.checked_sub(1) {
            Some(d) => *depth = d,
            None => return false,
        }
    }
    paren == 0 && brace == 0
}

/// True when a here-document delimiter may be empty once unquoted: `<<` (or
/// `<<-`) followed by a word of quotes only, as `''`, `""` or `"'"`. brush-parser
/// 0.2's tokenizer loops on such a tag when the line ends, without a newline, on
/// an empty token (`cat <<'' ` with a trailing blank): at the end of input it
/// finds the empty tag at the end of the empty token, ends the body, files that
/// (as the state is still "next line is the here-document") as a token pending
/// after the tag, and goes round again, pushing to a `Vec` forever (found by the
/// bracket-soup property test: a 400-byte line took 16 GB before it was killed;
/// minimized by hand to `''<<"" `). Also reached through `$(...)` and backquotes.
/// Every empty delimiter is refused, with a newline or not (rare in practice: the
/// body then ends at the first empty line). Conservative: backslashes and
/// newlines between `<`, `<`, `-` and the tag are skipped, as line continuations
/// would be, quotes are not paired, and a backslash counts as a quote.
pub(crate) fn empty_here_tag(line: &str) -> bool {
    let b = line.as_bytes();
    let skip = |mut i: usize, blanks: bool| {
        while let Some(&c) = b.get(i) {
            if !(matches!(c, b'\\' | b'\n') || blanks && matches!(c, b' ' | b'\t')) {
                break;
            }
            i += 1;
        }
        i
    };
    for (at, _) in line.match_indices('<') {
        let mut i = skip(at + 1, false);
        if b.get(i) != Some(&b'<') {
            continue;
        }
        i = skip(i + 1, false);
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        i = skip(i, true);
        let start = i;
        while matches!(b.get(i), Some(b'\'' | b'"' | b'\\')) {
            i += 1;
        }
        let word = &b[start..i];
        // The tag word ends here (at the end of the line or an operator byte).
        let ends = !matches!(b.get(i), Some(c) if !matches!(
            c,
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'`'
        ));
        if ends && word.iter().any(|c| matches!(c, b'\'' | b'"')) {
            return true;
        }
    }
    false
}

/// True when 10 or more digits stand right before a `<` or `>`: brush-parser 0.2
/// unwraps such a redirection's fd number as a `u32` and panics (found by
/// fuzzing). Backslashes and newlines inside the run are skipped, as line
/// continuations would join it.
pub(crate) fn huge_io_number(line: &str) -> bool {
    let mut digits = 0;
    for b in line.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'\\' | b'\n' => {}
            b'<' | b'>' if digits >= 10 => return true,
            _ => digits = 0,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_here_tags_are_spotted() {
        for line in [
            "cat <<'' ",
            "cat <<\"\"",
            "cat <<-\"'\" x",
            "cat << \\\n''\"\";",
            "cat <\\\n<''",
            "echo $(cat <<'')",
            "cat <<''\nbody\n\n",
        ] {
            assert!(empty_here_tag(line), "{line:?}");
        }
        for line in [
            "cat <<E ",
            "cat <<'E'\nx\nE\n",
            "cat <<''E",
            "cat <<$'' ",
            "cat << -'' ",
            "echo a < '' b",
            "echo $((1 << 2))",
        ] {
            assert!(!empty_here_tag(line), "{line:?}");
        }
    }
}
