//! Programs that run another program named among their arguments (`timeout 5
//! rm x`, `env -u A rm x`, `xargs -I {} rm {}`), read with each one's option
//! grammar, so that the command policy checks the program they run and not an
//! option's value. An option not in a grammar makes the line uncheckable: a
//! wrapper's unknown option may take a value (`timeout -s KILL 5 rm`), and
//! guessing wrong would check the wrong word.

/// How one wrapper's words are read (GNU/util-linux getopt with `+`: options
/// stop at the first operand).
pub(super) struct Grammar {
    pub names: &'static [&'static str],
    /// Short options without a value.
    pub flags: &'static str,
    /// Short options that take a value (rest of the word, or the next word).
    pub valued: &'static str,
    /// Short options whose value, if any, is attached (`xargs -i{}`, `-l5`).
    pub attached: &'static str,
    /// Long options without a value (`--name`).
    pub long_flags: &'static [&'static str],
    /// Long options that take a value (`--name=v` or `--name v`).
    pub long_valued: &'static [&'static str],
    /// `-NUM` is an option (`nice -5`).
    pub numeric: bool,
    /// Operands before the program (`timeout DURATION`, `taskset MASK`).
    pub leading: usize,
    /// Options after which nothing is run (`command -v`, `taskset -p`).
    pub no_run: &'static [&'static str],
}

const fn grammar(names: &'static [&'static str]) -> Grammar {
    Grammar {
        names,
        flags: "",
        valued: "",
        attached: "",
        long_flags: &[],
        long_valued: &[],
        numeric: false,
        leading: 0,
        no_run: &[],
    }
}

/// Every wrapper the policy looks through. Shells, `eval`, `trap` and `find
/// -exec` are read by the policy itself.
pub(super) const WRAPPERS: &[Grammar] = &[
    Grammar {
        flags: "i0v",
        valued: "uCS",
        long_flags: &["ignore-environment", "null", "debug"],
        long_valued: &["unset", "chdir", "split-string"],
        ..grammar(&["env"])
    },
    Grammar {
        valued: "n",
        long_valued: &["adjustment"],
        numeric: true,
        ..grammar(&["nice"])
    },
    grammar(&["nohup", "builtin"]),
    Grammar {
        flags: "v",
        valued: "sk",
        long_flags: &["preserve-status", "foreground", "verbose"],
        long_valued: &["signal", "kill-after"],
        leading: 1,
        ..grammar(&["timeout"])
    },
    Grammar {
        valued: "ioe",
        long_valued: &["input", "output", "error"],
        ..grammar(&["stdbuf"])
    },
    Grammar {
        flags: "cfw",
        long_flags: &["ctty", "fork", "wait"],
        ..grammar(&["setsid"])
    },
    Grammar {
        flags: "tpPu",
        valued: "cn",
        long_flags: &["ignore", "pid", "pgid", "uid"],
        long_valued: &["class", "classdata"],
        no_run: &["-p", "-P", "-u", "--pid", "--pgid", "--uid"],
        ..grammar(&["ionice"])
    },
    Grammar {
        flags: "abdfiormRpv",
        valued: "TPD",
        long_flags: &[
            "all-tasks",
            "batch",
            "deadline",
            "fifo",
            "idle",
            "other",
            "rr",
            "reset-on-fork",
            "verbose",
            "max",
            "pid",
        ],
        long_valued: &["sched-runtime", "sched-period", "sched-deadline"],
        leading: 1,
        no_run: &["-p", "-m", "--pid", "--max"],
        ..grammar(&["chrt"])
    },
    Grammar {
        flags: "acp",
        long_flags: &["all-tasks", "cpu-list", "pid"],
        leading: 1,
        no_run: &["-p", "--pid"],
        ..grammar(&["taskset"])
    },
    Grammar {
        flags: "sexnouF",
        valued: "wE",
        long_flags: &[
            "shared",
            "exclusive",
            "unlock",
            "nonblock",
            "nb",
            "close",
            "no-fork",
            "verbose",
        ],
        long_valued: &["timeout", "wait", "conflict-exit-code"],
        leading: 1,
        ..grammar(&["flock"])
    },
    Grammar {
        flags: "0oprtx",
        valued: "adEILnPs",
        attached: "eil",
        long_flags: &[
            "null",
            "open-tty",
            "interactive",
            "no-run-if-empty",
            "verbose",
            "exit",
        ],
        long_valued: &[
            "arg-file",
            "delimiter",
            "eof",
            "replace",
            "max-lines",
            "max-args",
            "max-procs",
            "max-chars",
            "process-slot-var",
        ],
        ..grammar(&["xargs"])
    },
    Grammar {
        flags: "bcdeghtxwpq",
        valued: "n",
        long_flags: &[
            "beep",
            "color",
            "no-color",
            "differences",
            "errexit",
            "chgexit",
            "no-title",
            "exec",
            "no-wrap",
            "precise",
        ],
        long_valued: &["interval"],
        ..grammar(&["watch"])
    },
    Grammar {
        flags: "pavq",
        valued: "fo",
        long_flags: &["portability", "append", "verbose", "quiet"],
        long_valued: &["format", "output"],
        ..grammar(&["time"])
    },
    Grammar {
        flags: "cCdDfFhiknqrtTvVwxyzZ",
        valued: "abeIoOpPsSuEXU",
        ..grammar(&["strace"])
    },
    Grammar {
        flags: "p",
        ..grammar(&["unbuffer"])
    },
    Grammar {
        flags: "pvV",
        no_run: &["-v", "-V"],
        ..grammar(&["command"])
    },
    Grammar {
        flags: "cl",
        valued: "a",
        ..grammar(&["exec"])
    },
    grammar(&["busybox"]),
];

/// The grammar of `program`, when it is a wrapper.
pub(super) fn find(program: &str) -> Option<&'static Grammar> {
    WRAPPERS.iter().find(|g| g.names.contains(&program))
}

/// A wrapper's words, read: its options (with their values) and the rest.
pub(super) struct Call<'a> {
    /// Each option as written without its value (`-s`, `--signal`), with the value.
    pub options: Vec<(String, Option<&'a str>)>,
    /// The operands after the leading ones: the program and its arguments.
    pub command: &'a [Option<String>],
    /// An option that runs nothing was given.
    pub runs_nothing: bool,
}

impl Call<'_> {
    /// The value of the first option named `short` or `long`.
    pub fn value(&self, short: &str, long: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(o, _)| o == short || o == long)
            .and_then(|(_, v)| *v)
    }

    /// Whether `short` or `long` was given.
    pub fn has(&self, short: &str, long: &str) -> bool {
        self.options.iter().any(|(o, _)| o == short || o == long)
    }
}

/// Reads a wrapper's words with its grammar, or says why they cannot be read.
pub(super) fn read<'a>(g: &Grammar, args: &'a [Option<String>]) -> Result<Call<'a>, String> {
    let name = g.names[0];
    let mut options = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let Some(arg) = arg.as_deref() else {
            return Err(format!(
                "`{name}` has a computed argument where an option may be"
            ));
        };
        if arg == "--" {
            i += 1;
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (long, inline) = match long.split_once('=') {
                Some((l, v)) => (l, Some(v)),
                None => (long, None),
            };
            if g.long_valued.contains(&long) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        value_at(args, i, name, arg)?
                    }
                };
                options.push((format!("--{long}"), Some(value)));
            } else if g.long_flags.contains(&long) && inline.is_none() {
                options.push((format!("--{long}"), None));
            } else {
                return Err(format!(
                    "`{name}` option `{arg}` is not understood by the policy"
                ));
            }
            i += 1;
            continue;
        }
        let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            break;
        };
        if g.numeric && shorts.bytes().all(|b| b.is_ascii_digit()) {
            options.push((arg.to_owned(), None));
            i += 1;
            continue;
        }
        for (at, c) in shorts.char_indices() {
            let rest = &shorts[at + c.len_utf8()..];
            if g.flags.contains(c) {
                options.push((format!("-{c}"), None));
            } else if g.attached.contains(c) {
                options.push((format!("-{c}"), Some(rest)));
                break;
            } else if g.valued.contains(c) {
                let value = if rest.is_empty() {
                    i += 1;
                    value_at(args, i, name, arg)?
                } else {
                    rest
                };
                options.push((format!("-{c}"), Some(value)));
                break;
            } else {
                return Err(format!(
                    "`{name}` option `-{c}` is not understood by the policy"
                ));
            }
        }
        i += 1;
    }
    let runs_nothing = options.iter().any(|(o, _)| g.no_run.contains(&o.as_str()));
    let rest = args.get(i..).unwrap_or(&[]);
    if !runs_nothing && rest.len() < g.leading {
        return Ok(Call {
            options,
            command: &[],
            runs_nothing: true,
        });
    }
    let command = if runs_nothing {
        &[][..]
    } else {
        &rest[g.leading..]
    };
    if !runs_nothing && rest[..g.leading].iter().any(Option::is_none) {
        return Err(format!("`{name}` has a computed argument"));
    }
    Ok(Call {
        options,
        command,
        runs_nothing,
    })
}

fn value_at<'a>(
    args: &'a [Option<String>],
    i: usize,
    name: &str,
    option: &str,
) -> Result<&'a str, String> {
    match args.get(i) {
        Some(Some(v)) => Ok(v),
        Some(None) => Err(format!("`{name} {option}` has a computed value")),
        None => Err(format!("`{name} {option}` is missing its value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Option<String>> {
        line.split_whitespace()
            .map(|w| Some(w.to_owned()))
            .collect()
    }

    fn program(wrapper: &str, line: &str) -> Result<Option<String>, String> {
        let g = find(wrapper).expect("a wrapper");
        let args = words(line);
        let call = read(g, &args)?;
        Ok(call.command.first().cloned().flatten())
    }

    #[test]
    fn options_with_values_are_not_taken_for_the_program() {
        for (w, line) in [
            ("timeout", "-s KILL 5 rm x"),
            ("timeout", "--signal=KILL -k 1 5 rm x"),
            ("timeout", "5s rm x"),
            ("env", "-u FOO rm x"),
            ("env", "-C . rm x"),
            ("env", "-i -- rm x"),
            ("stdbuf", "-o L rm x"),
            ("stdbuf", "-oL rm x"),
            ("nice", "-n 5 rm x"),
            ("nice", "-5 rm x"),
            ("taskset", "0x1 rm x"),
            ("taskset", "-c 1 rm x"),
            ("flock", "F rm x"),
            ("flock", "-w 3 F rm x"),
            ("xargs", "-I {} rm {}"),
            ("xargs", "-0 -n 1 rm"),
            ("strace", "-o /dev/null rm x"),
            ("strace", "-f -e trace=execve rm x"),
            ("chrt", "-f 10 rm x"),
            ("setsid", "-w rm x"),
            ("command", "-p rm x"),
            ("exec", "-a name rm x"),
            ("busybox", "rm x"),
        ] {
            assert_eq!(program(w, line), Ok(Some("rm".into())), "{w} {line}");
        }
    }

    #[test]
    fn unknown_options_and_computed_words_are_refused() {
        for (w, line) in [
            ("timeout", "--sig KILL 5 rm"),
            ("timeout", "-Z 5 rm"),
            ("env", "--frobnicate rm"),
            ("nice", "-q rm"),
        ] {
            assert!(program(w, line).is_err(), "{w} {line}");
        }
        let g = find("timeout").expect("timeout");
        assert!(read(g, &[None, Some("rm".into())]).is_err());
        assert!(read(g, &[Some("-s".into()), None, Some("5".into())]).is_err());
    }

    #[test]
    fn forms_that_run_nothing() {
        for (w, line) in [
            ("command", "-v rm"),
            ("taskset", "-p 1 42"),
            ("ionice", "-p 42"),
            ("timeout", ""),
        ] {
            let g = find(w).expect("a wrapper");
            let args = words(line);
            let call = read(g, &args).expect(line);
            assert!(call.command.is_empty(), "{w} {line}");
        }
    }
}
