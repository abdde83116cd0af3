//! `voxterm exec` as an ssh user runs it (issue 14, item 4): the real binary
//! against a real server, every message and exit status in one table, the
//! timeout and the output cap told apart, a closed pipe ending quietly.

mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// One row: the arguments, stdin, the exit status, stdout, and a piece of the
/// one stderr line ("" for none).
type Row<'a> = (Vec<&'a str>, Option<&'a str>, i32, &'a str, &'a str);

/// What one `voxterm exec` printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn vx(url: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"));
    cmd.arg("exec")
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("VOXTERM_URL")
        .env_remove("VOXTERM_TOKEN")
        .env_remove("VOXTERM_TENANT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("voxterm exec starts");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
    }
    let out = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .expect("voxterm exec ends in time")
        .expect("wait");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ending_has_its_status_and_its_words() {
    let s = TestServer::start_with("cli", |c| {
        c.exec.output_cap = 100_000;
        c.cache.enabled = false;
    })
    .await;
    let script = s.root.join("euro.sh");
    std::fs::write(&script, "printf '\\342\\202\\254 %s\\n' \"a  b\"\n").unwrap();
    let script = display(&script);
    let url = s.url.clone();
    let table: Vec<Row> =
        vec![
        (vec!["--", "echo hi"], None, 0, "hi\n", ""),
        (vec!["echo", "hi"], None, 0, "hi\n", ""),
        (vec!["--", "exit 3"], None, 3, "", ""),
        (vec!["--", "kill -TERM $$"], None, 143, "", ""),
        (
            vec!["--timeout", "300ms", "--", "sleep 5"],
            None,
            124,
            "",
            "voxterm: killed after 300ms (timeout)",
        ),
        (
            vec!["--", "seq 1 100000"],
            None,
            123,
            "",
            "voxterm: output cut at 100000 bytes (the server's output cap)",
        ),
        (
            vec!["--timeout", "0", "--", "sleep 0.2; echo slept"],
            None,
            0,
            "slept\n",
            "",
        ),
        (vec!["-f", &script], None, 0, "€ a  b\n", ""),
        // A piped stdin is forwarded (as ssh does); -n keeps /dev/null.
        (vec!["--", "sort"], Some("b\na\n"), 0, "a\nb\n", ""),
        (vec!["-n", "--", "cat"], Some("ignored\n"), 0, "", ""),
        // -t: a terminal on the server, even from a pipe (as ssh -t).
        (
            vec!["-t", "--", "python3 -c 'import sys; print(sys.stdin.isatty())'"],
            None,
            0,
            "True\r\n",
            "",
        ),
        (
            vec!["--timeout", "20m", "--", "true"],
            None,
            125,
            "",
            "voxterm: a timeout of 20m is above this server's maximum of 10m ([exec] max_timeout)",
        ),
        (
            vec!["--stdin-line"],
            Some("echo 'x  y' | tr x z"),
            0,
            "z  y\n",
            "",
        ),
    ];
    for (args, stdin, code, stdout, said) in table {
        let ran = vx(&url, &args, stdin).await;
        assert_eq!(ran.code, Some(code), "{args:?}: {}", ran.stderr);
        if args.contains(&"seq 1 100000") {
            // Cut at the cap exactly: what came before it arrives whole.
            assert_eq!(ran.stdout.len(), 100_000, "{args:?}");
        } else {
            assert_eq!(ran.stdout, stdout, "{args:?}");
        }
        if said.is_empty() {
            assert_eq!(ran.stderr, "", "{args:?}");
        } else {
            assert!(ran.stderr.contains(said), "{args:?}: {:?}", ran.stderr);
            assert_eq!(ran.stderr.lines().count(), 1, "one line: {:?}", ran.stderr);
        }
    }

    // Connection errors: the URL, the cause once, what to do; status 125.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let refused = format!("ws://127.0.0.1:{port}/ws");
    let http = url.replace("ws://", "http://");
    let wrong_path = url.replace("/ws", "/nope");
    for (url, said) in [
        (
            refused.as_str(),
            "is the server running? start it with: voxterm serve",
        ),
        (http.as_str(), "use ws:// (or wss://), not http://"),
        (wrong_path.as_str(), "the WebSocket endpoint is /ws"),
    ] {
        let ran = vx(url, &["--", "true"], None).await;
        assert_eq!(ran.code, Some(125), "{url}: {}", ran.stderr);
        assert!(ran.stderr.contains(said), "{url}: {:?}", ran.stderr);
        assert!(ran.stderr.contains(url), "names the URL: {:?}", ran.stderr);
        assert_eq!(ran.stderr.lines().count(), 1, "{:?}", ran.stderr);
        let first = ran
            .stderr
            .find("refused")
            .map(|_| ran.stderr.matches("Connection refused").count());
        assert!(first.unwrap_or(1) <= 1, "the cause once: {:?}", ran.stderr);
    }
}

/// `voxterm exec -- seq 1 1000000 | head -2`: the reader goes away; voxterm
/// ends quietly with 141, as a local command would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_quietly_with_141() {
    let s = TestServer::start_with("cli-pipe", |c| c.cache.enabled = false).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args(["exec", "--url", &s.url, "--", "seq 1 1000000"])
        .env_remove("VOXTERM_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines.next_line().await.expect("read").expect("a line");
    assert_eq!(first, "1");
    drop(lines);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("ends in time")
        .expect("wait");
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Programs that would wait for a terminal are told there is none: `git
/// commit` without `-m` fails at once naming the editor instead of hanging
/// until the timeout in an invisible `vi`; pagers print straight through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_that_want_a_terminal_do_not_hang() {
    let s = TestServer::start_with("cli-tty", |c| c.cache.enabled = false).await;
    let started = std::time::Instant::now();
    let ran = vx(
        &s.url,
        &[
            "--timeout",
            "20s",
            "--",
            "git init -q r && cd r && git -c user.email=a@b.c -c user.name=a commit -q --allow-empty",
        ],
        None,
    )
    .await;
    assert_ne!(ran.code, Some(0), "{}", ran.stderr);
    assert_ne!(
        ran.code,
        Some(124),
        "it waited for the timeout: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("editor"), "{:?}", ran.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    let ran = vx(
        &s.url,
        &["--", "echo $PAGER $GIT_PAGER $TERM $GIT_TERMINAL_PROMPT"],
        None,
    )
    .await;
    assert_eq!(ran.stdout, "cat cat dumb 0\n");
    // A session may ask for colour.
    let ran = vx(&s.url, &["--", "export TERM=xterm-256color"], None).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let ran = vx(&s.url, &["--", "echo $TERM"], None).await;
    assert_eq!(ran.stdout, "xterm-256color\n");
}

/// `voxterm completions <shell>` prints a script the shell accepts, naming the
/// subcommands and their flags.
#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_voxterm()"),
        ("zsh", "#compdef voxterm"),
        ("fish", "complete -c voxterm"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
            .args(["completions", shell])
            .output()
            .expect("voxterm completions runs");
        assert!(out.status.success(), "{shell}: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        assert!(
            text.contains("stdin-line"),
            "{shell}: exec's flags are listed"
        );
    }
    // bash itself accepts it.
    let script = std::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args(["completions", "bash"])
        .output()
        .expect("runs");
    let check = std::process::Command::new("bash")
        .args(["-c", "source /dev/stdin && complete -p voxterm"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&script.stdout)?;
            }
            child.wait_with_output()
        })
        .expect("bash runs");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("-F _voxterm voxterm"),
        "{:?}",
        check
    );
}
