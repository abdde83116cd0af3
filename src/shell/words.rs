//! What single words say once the shell has removed their quotes.

/// A word as the shell will see it after quote removal, or `None` when it has
/// expansions (its value is only known when it runs) or does not split cleanly.
pub fn dequote(word: &str) -> Option<String> {
    if word.contains(['$', '`']) {
        return None;
    }
    let mut words = shell_words::split(word).ok()?;
    match words.len() {
        0 => Some(String::new()),
        1 => words.pop(),
        _ => Some(words.join(" ")),
    }
}

/// The program a command word names, when it names one plainly: quoted or
/// expanded program words are not guessed at. `/bin/ls` and `/usr/bin/ls` are
/// `ls`; any other path (`./script`) is a program no table can know.
pub fn program_name(word: &str) -> Option<&str> {
    if word.is_empty()
        || word
            .bytes()
            .any(|b| matches!(b, b'$' | b'`' | b'"' | b'\'' | b'\\' | b'*' | b'?' | b'['))
    {
        return None;
    }
    for dir in ["/bin/", "/usr/bin/", "/usr/local/bin/"] {
        if let Some(rest) = word.strip_prefix(dir) {
            return (!rest.contains('/')).then_some(rest);
        }
    }
    (!word.contains('/')).then_some(word)
}

/// True when a word may name something under `/dev` (other than `/dev/null`),
/// `/proc` or `/sys`, directly, relative to `/`, through `..`, or as an option's
/// value (`--file=/proc/x`, `-f/dev/urandom`): devices, kernel files and FIFOs
/// print something new on every read. Deliberately broad (a path segment
/// `dev`, `proc` or `sys` anywhere in the word): a false alarm costs one hit.
pub fn touches_kernel_files(word: &str) -> bool {
    let b = word.as_bytes();
    let boundary = |c: Option<&u8>| c.map_or(true, |c| matches!(c, b'/' | b'\'' | b'"' | b' '));
    for name in ["dev", "proc", "sys"] {
        for (at, _) in word.match_indices(name) {
            let before = at.checked_sub(1).and_then(|i| b.get(i));
            let starts = before.map_or(true, |c| matches!(c, b'/' | b'=' | b'\'' | b'"'));
            let end = at + name.len();
            if !starts || !boundary(b.get(end)) {
                continue;
            }
            let null = name == "dev"
                && word[end..]
                    .strip_prefix("/null")
                    .is_some_and(|t| boundary(t.as_bytes().first()) && !t.starts_with('/'));
            if !null {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_files_are_seen_wherever_they_are_named() {
        for w in [
            "/dev/urandom",
            "/dev/random",
            "/proc/uptime",
            "/proc",
            "/sys/class",
            "../../proc/uptime",
            "--file=/proc/x",
            "-f/dev/zero",
            "'/proc/uptime'",
            "/dev/stdin",
            "/dev/fd/0",
            "/dev",
        ] {
            assert!(touches_kernel_files(w), "{w}");
        }
        for w in [
            "/dev/null",
            "file",
            "./processes",
            "/devices.txt",
            "/system",
            "src/dev.rs",
            "-",
        ] {
            assert!(!touches_kernel_files(w), "{w}");
        }
    }
}
