//! `find`: start points, an expression of whitelisted tests, and the literal
//! `-path ./X -prune` that keeps the walk out of a large directory.

use super::stamp::Shows;
use super::{Tree, What, MAX_OPERANDS};

/// Tests and actions whose answer depends only on what a stamp covers (names,
/// types, sizes, permissions, owners, link counts, depth), with no argument.
/// The stamp's key leaves the times out (`Shows::Attrs`), but for `-empty`.
/// Time-relative tests (`-mtime`, `-newer`…) are left out: their answer changes
/// as time passes, with no change to the files.
const NULLARY: &[&str] = &[
    "-prune", "-print", "-print0", "-o", "-or", "-a", "-and", "-not", "!", "(", ")", "-depth",
    "-xdev", "-mount", "-empty", "-true", "-false", "-nouser", "-nogroup",
];

/// The same, taking one argument.
const UNARY: &[&str] = &[
    "-name",
    "-iname",
    "-path",
    "-ipath",
    "-wholename",
    "-iwholename",
    "-regex",
    "-iregex",
    "-regextype",
    "-type",
    "-size",
    "-perm",
    "-user",
    "-group",
    "-uid",
    "-gid",
    "-links",
    "-maxdepth",
    "-mindepth",
];

/// The inputs of `find args`: each start point's tree (to `-maxdepth`), less
/// the directories a leading `-path P -prune` keeps find out of.
pub(super) fn parse(args: &[String]) -> Option<What> {
    let mut i = 0;
    // Leading options: -P (the default, never follow) only; -H/-L follow links.
    while args.get(i).is_some_and(|w| w == "-P") {
        i += 1;
    }
    let mut starts: Vec<&str> = Vec::new();
    while let Some(w) = args.get(i) {
        if w.starts_with('-') || w == "(" || w == "!" || w == ")" || w == "," {
            break;
        }
        starts.push(w);
        i += 1;
    }
    if starts.is_empty() {
        starts.push(".");
    }
    if starts.len() > MAX_OPERANDS {
        return None;
    }
    let expr = &args[i..];
    let mut depth: Option<u32> = None;
    let (mut depth_first, mut min_depth, mut empty) = (false, false, false);
    let mut words = expr.iter();
    while let Some(w) = words.next() {
        let w = w.as_str();
        if NULLARY.contains(&w) {
            depth_first |= w == "-depth";
            empty |= w == "-empty";
            continue;
        }
        if !UNARY.contains(&w) {
            return None;
        }
        let value = words.next()?;
        match w {
            // Global, wherever it is written; the walk goes as deep as the largest.
            "-maxdepth" => depth = Some(depth.unwrap_or(0).max(value.parse().ok()?)),
            "-mindepth" => min_depth = true,
            _ => {}
        }
    }
    // -depth turns -prune off; under -mindepth the expression is not asked
    // about the shallow entries, so their -prune never runs.
    let prune = if depth_first || min_depth {
        Vec::new()
    } else {
        pruned(expr)
    };
    Some(What::Walk(Tree {
        prune: prune.into_iter().map(Box::from).collect(),
        // `-empty` asks about the entries of a directory at the depth bound,
        // which the walk does not read: only its times show they changed.
        shows: if empty { Shows::All } else { Shows::Attrs },
        ..Tree::new(
            starts.into_iter().map(Box::from).collect(),
            depth.unwrap_or(u32::MAX),
        )
    }))
}

/// The literal paths of a first operand `-path P -prune` or
/// `\( -path A -o -path B \) -prune` (then `-o` and the rest): find evaluates
/// it first for every entry it meets, so it never enters a directory whose path
/// is P. Anything else prunes nothing here (the walk goes everywhere).
fn pruned(expr: &[String]) -> Vec<&str> {
    let mut level = 0i32;
    let end = expr
        .iter()
        .position(|w| {
            match w.as_str() {
                "(" => level += 1,
                ")" => level -= 1,
                _ => {}
            }
            level == 0 && (w == "-o" || w == "-or")
        })
        .unwrap_or(expr.len());
    let mut first: Vec<&str> = expr[..end].iter().map(String::as_str).collect();
    // Options written first are true and change nothing about the order.
    while let ["-xdev" | "-mount", ..] = first.as_slice() {
        first.remove(0);
    }
    while let ["-maxdepth", _, ..] = first.as_slice() {
        first.drain(..2);
    }
    let Some((&"-prune", mut test)) = first.split_last() else {
        return Vec::new();
    };
    if let Some((&("-a" | "-and"), t)) = test.split_last() {
        test = t;
    }
    let mut out = Vec::new();
    let alternatives: &[&str] = match test {
        ["(", inner @ .., ")"] => inner,
        one => one,
    };
    for (n, alt) in alternatives
        .split(|w| *w == "-o" || *w == "-or")
        .enumerate()
    {
        match alt {
            [op, p] if (*op == "-path" || *op == "-wholename") && literal(p) => out.push(*p),
            _ => return Vec::new(),
        }
        if n > 0 && !matches!(test.first(), Some(&"(")) {
            return Vec::new();
        }
    }
    out
}

/// A pattern that matches only itself (fnmatch without special characters).
fn literal(p: &str) -> bool {
    !p.is_empty() && !p.contains(['*', '?', '[', '\\'])
}
