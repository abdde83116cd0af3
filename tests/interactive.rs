//! Commands with live input and terminals (issue 14, items 1–3), over a real
//! WebSocket to a real server, with real children and real pseudo-terminals:
//! stdin streamed byte-exact under credit flow control, a terminal that
//! programs recognise and that follows a resize, the notice for programs that
//! wait for a terminal, `Classify`, and every bad input answered with a typed
//! error while the request it named goes on undisturbed.

mod common;

use common::*;
use std::time::{Duration, Instant};
use voxterm::client::Client;
use voxterm_protocol::{
    Classify, ErrorCode, Exit, Input, LineClass, Message, NoticeKind, Pty, RequestId, Resize, Spawn,
};

/// The server's initial input window (PROTOCOL.md §7).
const WINDOW: u64 = 256 * 1024;

fn spawn(request: RequestId, command: &str, pty: Option<(u16, u16)>) -> Message {
    Message::Spawn(Box::new(Spawn {
        request,
        session: 0,
        command: command.to_owned(),
        timeout_ms: 0,
        pty: pty.map(|(rows, cols)| Pty {
            rows,
            cols,
            term: String::new(),
        }),
    }))
}

fn input(request: RequestId, data: &[u8], end: bool) -> Message {
    Message::Input(Input {
        request,
        data: data.to_vec(),
        end,
    })
}

/// Feeds `data` to a `Spawn`ed request within its credit, then ends it, and
/// gathers its output. Returns the output, its end, and the most input the
/// client ever had outstanding (sent, not yet credited back).
async fn feed(client: &mut Client, request: RequestId, data: &[u8]) -> (Vec<u8>, Exit, u64) {
    let (mut credit, mut sent, mut out) = (0u64, 0usize, Vec::new());
    let mut ended = false;
    let mut credited_back = 0u64;
    let mut most_outstanding = 0u64;
    loop {
        while !ended && credit > 0 {
            let n = (credit as usize).min(data.len() - sent).min(64 * 1024);
            let end = sent + n == data.len();
            client
                .send(&input(request, &data[sent..sent + n], end))
                .await
                .expect("send input");
            sent += n;
            credit -= n as u64;
            ended = end;
            most_outstanding = most_outstanding.max(sent as u64 - credited_back);
        }
        match recv(client).await {
            Message::InputCredit(c) if c.request == request => {
                credit += u64::from(c.bytes);
                if sent > 0 || ended {
                    credited_back += u64::from(c.bytes);
                }
            }
            Message::Output(o) if o.request == request => out.extend_from_slice(&o.data),
            Message::Exit(e) if e.request == request => return (out, e, most_outstanding),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_streams_byte_exact_within_the_window() {
    let s = TestServer::start_with("stdin", |c| c.cache.enabled = false).await;
    let mut client = s.client("default").await;

    client.send(&spawn(1, "sort", None)).await.unwrap();
    let (out, exit, _) = feed(&mut client, 1, b"pear\napple\nfig\n").await;
    assert_eq!(String::from_utf8_lossy(&out), "apple\nfig\npear\n");
    assert_eq!(exit.code, Some(0));

    // 50 MB of incompressible bytes: every byte arrives (wc -c and a digest),
    // and the client never has more than the window outstanding.
    let data: Vec<u8> = (0..50_000_000u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    client.send(&spawn(2, "wc -c", None)).await.unwrap();
    let (out, exit, most) = feed(&mut client, 2, &data).await;
    assert_eq!(String::from_utf8_lossy(&out).trim(), "50000000");
    assert_eq!(exit.code, Some(0));
    assert!(most <= WINDOW, "{most} bytes outstanding");

    client.send(&spawn(3, "md5sum", None)).await.unwrap();
    let (out, _, _) = feed(&mut client, 3, &data).await;
    let local = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&data)?;
            c.wait_with_output()
        })
        .expect("local md5sum");
    assert_eq!(out, local.stdout, "the same digest on both sides");
}

/// A command that does not read yet holds its client back: the server grants
/// no more than the window plus what the pipe took, so its buffer is bounded
/// however fast the client writes; a client that sends past its credit is
/// refused and its request cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_client_back() {
    let s = TestServer::start_with("stdin-slow", |c| c.cache.enabled = false).await;
    let mut client = s.client("default").await;
    client
        .send(&spawn(1, "sleep 1.5; wc -c", None))
        .await
        .unwrap();
    let first = recv(&mut client).await;
    let Message::InputCredit(c) = first else {
        panic!("the first answer is the credit: {first:?}")
    };
    assert_eq!(u64::from(c.bytes), WINDOW);
    // Spend the whole window at once, then watch what comes back while the
    // command sleeps: at most what its pipe holds (64 KiB on Linux).
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..(WINDOW / chunk.len() as u64) {
        client.send(&input(1, &chunk, false)).await.unwrap();
    }
    let mut regranted = 0u64;
    let until = Instant::now() + Duration::from_millis(900);
    while let Ok(m) = tokio::time::timeout_at(until.into(), client.recv()).await {
        match m.expect("recv") {
            Message::InputCredit(c) => regranted += u64::from(c.bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        regranted <= 64 * 1024 + chunk.len() as u64,
        "{regranted} bytes re-granted while the command did not read"
    );
    // One byte past the credit: refused, and the request is cancelled.
    let over = vec![b'y'; (regranted + 1) as usize];
    client.send(&input(1, &over, false)).await.unwrap();
    let mut refused = false;
    loop {
        match recv(&mut client).await {
            Message::Error(e) if e.request.is_none() => {
                assert_eq!(e.code, ErrorCode::InputRefused, "{}", e.message);
                assert!(e.message.contains("request 1"), "{}", e.message);
                refused = true;
            }
            Message::Exit(e) if e.request == 1 => {
                assert!(refused);
                assert_eq!(e.killed, voxterm_protocol::KillReason::Cancelled);
                break;
            }
            Message::InputCredit(_) | Message::Output(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_is_a_terminal_and_follows_a_resize() {
    let s = TestServer::start_with("pty", |c| c.cache.enabled = false).await;
    let mut client = s.client("default").await;
    let probe = "python3 -c 'import os,sys; print(sys.stdin.isatty(), sys.stdout.isatty(), os.environ[\"TERM\"], os.getsid(0) == os.getpid())'";
    client.send(&spawn(1, probe, Some((24, 80)))).await.unwrap();
    client.send(&input(1, b"", true)).await.unwrap();
    let g = gather(&mut client, 1).await;
    assert_eq!(
        String::from_utf8_lossy(&g.stdout),
        "True True xterm-256color True\r\n",
        "a terminal, its TERM, and the command leads its own session"
    );
    assert!(g.stderr.is_empty(), "one stream on a terminal");

    // The size it was opened with, then the size after a Resize.
    client
        .send(&spawn(2, "stty size; read x; stty size", Some((30, 100))))
        .await
        .unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("30 100") {
        match recv(&mut client).await {
            Message::Output(o) => out.extend_from_slice(&o.data),
            Message::InputCredit(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client
        .send(&Message::Resize(Resize {
            request: 2,
            rows: 40,
            cols: 120,
        }))
        .await
        .unwrap();
    client.send(&input(2, b"\n", false)).await.unwrap();
    let g = gather(&mut client, 2).await;
    assert!(
        String::from_utf8_lossy(&g.stdout).contains("40 120"),
        "{:?}",
        String::from_utf8_lossy(&g.stdout)
    );

    // Ctrl-C typed on the terminal interrupts the command, as at a keyboard.
    // Typed once the command runs on the terminal (it said so): before its
    // session owns the terminal there is no foreground group to signal, and
    // the terminal discards a Ctrl-C, as a real one would.
    client
        .send(&spawn(3, "echo ready; exec sleep 30", Some((24, 80))))
        .await
        .unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("ready") {
        match recv(&mut client).await {
            Message::Output(o) => out.extend_from_slice(&o.data),
            Message::InputCredit(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.send(&input(3, b"\x03", false)).await.unwrap();
    let started = Instant::now();
    let g = gather(&mut client, 3).await;
    let Some(Message::Exit(exit)) = g.end else {
        panic!("{:?}", g.end)
    };
    assert_eq!(exit.signal, Some(2), "SIGINT from the terminal");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `vi` driven through tmux as a person would: keys in, a file out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vi_runs_on_a_terminal_through_voxterm_exec_t() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing: .ci/run installs it (apt-get install tmux)"
        );
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let s = TestServer::start_with("pty-vi", |c| c.cache.enabled = false).await;
    let file = s.root.join("from-vi.txt");
    let socket = s.root.join("tmux.sock");
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .output()
            .expect("tmux runs")
    };
    let line = format!(
        "{} exec --url {} -t -- vi {}; echo voxterm-exit=$?; sleep 60",
        env!("CARGO_BIN_EXE_voxterm"),
        s.url,
        display(&file)
    );
    let out = tmux(&["new-session", "-d", "-x", "100", "-y", "30", &line]);
    assert!(out.status.success(), "{out:?}");
    let pane = |tmux: &dyn Fn(&[&str]) -> std::process::Output| {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned()
    };
    let deadline = Instant::now() + STEP;
    while !pane(&tmux).contains('~') {
        assert!(Instant::now() < deadline, "vi never drew: {}", pane(&tmux));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux(&["send-keys", "ihello from vi", "Escape", ":wq", "Enter"]);
    while !pane(&tmux).contains("voxterm-exit=") {
        assert!(Instant::now() < deadline, "vi never ended: {}", pane(&tmux));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let screen = pane(&tmux);
    tmux(&["kill-server"]);
    assert!(screen.contains("voxterm-exit=0"), "{screen}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("vi wrote the file"),
        "hello from vi\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_that_wait_for_a_terminal_are_named_at_once() {
    let s = TestServer::start_with("notice", |c| c.cache.enabled = false).await;
    let mut client = s.client("default").await;
    client
        .send(&exec_msg(1, 0, "vi notes.txt", 300))
        .await
        .unwrap();
    let started = Instant::now();
    match recv(&mut client).await {
        Message::Notice(n) => {
            assert_eq!(n.request, 1);
            assert_eq!(n.kind, NoticeKind::NeedsTerminal);
            assert_eq!(
                n.message,
                "vi needs a terminal: run it with -t (voxterm exec -t), or in the page's terminal"
            );
        }
        other => panic!("the notice comes first: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "before the timeout"
    );
    let g = gather(&mut client, 1).await;
    assert!(matches!(g.end, Some(Message::Exit(_))));
    // A line that is not one of them gets none.
    client.send(&exec_msg(2, 0, "echo vi", 0)).await.unwrap();
    let g = gather(&mut client, 2).await;
    assert!(g.others.is_empty(), "{:?}", g.others);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_says_what_a_line_would_do() {
    let s = TestServer::start_with("classify", |c| {
        c.policy.deny = vec!["shutdown".into()];
    })
    .await;
    let mut client = s.client("default").await;
    let cases = [
        ("ls -la", LineClass::ReadOnly),
        ("git status", LineClass::ReadOnly),
        ("cd /tmp", LineClass::Session),
        ("export A=1", LineClass::Session),
        ("rm -rf build", LineClass::Mutating),
        ("echo hi > notes.txt", LineClass::Mutating),
        ("git push", LineClass::Mutating),
        ("frobnicate --all", LineClass::Unknown),
        ("shutdown -h now", LineClass::Denied),
    ];
    for (i, (line, class)) in cases.iter().enumerate() {
        let request = i as u32 + 1;
        client
            .send(&Message::Classify(Classify {
                request,
                session: 0,
                command: (*line).to_owned(),
            }))
            .await
            .unwrap();
        match recv(&mut client).await {
            Message::Classified(c) => {
                assert_eq!(c.request, request);
                assert_eq!(c.class, *class, "{line}: {}", c.detail);
                assert!(!c.detail.is_empty(), "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    // Nothing ran: notes.txt does not exist.
    assert!(!s.root.join("notes.txt").exists());
    client
        .send(&Message::Classify(Classify {
            request: 99,
            session: 7,
            command: "ls".into(),
        }))
        .await
        .unwrap();
    match recv(&mut client).await {
        Message::Error(e) => {
            assert_eq!(e.request, Some(99));
            assert_eq!(e.code, ErrorCode::UnknownSession);
        }
        other => panic!("{other:?}"),
    }
}

/// Bad input gets a typed error and disturbs nothing: the request it named
/// (or another one) still ends normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_typed_errors() {
    let s = TestServer::start_with("bad-input", |c| c.cache.enabled = false).await;
    let mut client = s.client("default").await;

    let refused = |m: Message, code: ErrorCode| match m {
        Message::Error(e) => {
            assert_eq!(e.code, code, "{}", e.message);
            e
        }
        other => panic!("expected {code:?}: {other:?}"),
    };

    // Input and Resize for a request that is not in flight.
    client.send(&input(42, b"x", false)).await.unwrap();
    let e = refused(recv(&mut client).await, ErrorCode::UnknownRequest);
    assert_eq!(e.request, None, "not terminal: it names no request it ends");
    client
        .send(&Message::Resize(Resize {
            request: 42,
            rows: 10,
            cols: 10,
        }))
        .await
        .unwrap();
    refused(recv(&mut client).await, ErrorCode::UnknownRequest);

    // A Spawn with an absurd terminal, and one with a bad TERM: refused, terminal.
    client.send(&spawn(5, "true", Some((0, 80)))).await.unwrap();
    let e = refused(recv(&mut client).await, ErrorCode::InvalidArgument);
    assert_eq!(e.request, Some(5));
    client
        .send(&Message::Spawn(Box::new(Spawn {
            request: 6,
            session: 0,
            command: "true".into(),
            timeout_ms: 0,
            pty: Some(Pty {
                rows: 24,
                cols: 80,
                term: "xterm; rm -rf /".into(),
            }),
        })))
        .await
        .unwrap();
    let e = refused(recv(&mut client).await, ErrorCode::InvalidArgument);
    assert_eq!(e.request, Some(6));

    // A timeout above the server's cap: refused, saying both.
    client
        .send(&exec_msg(7, 0, "true", 3_600_000))
        .await
        .unwrap();
    let e = refused(recv(&mut client).await, ErrorCode::InvalidArgument);
    assert!(
        e.message.contains("1h") && e.message.contains("max_timeout"),
        "{}",
        e.message
    );

    // A running Exec: input for it is refused (its stdin is /dev/null), and so
    // is a resize; it still ends normally.
    client
        .send(&exec_msg(8, 0, "sleep 0.3; echo done", 0))
        .await
        .unwrap();
    client.send(&input(8, b"x", false)).await.unwrap();
    refused(recv(&mut client).await, ErrorCode::InputRefused);
    client
        .send(&Message::Resize(Resize {
            request: 8,
            rows: 10,
            cols: 10,
        }))
        .await
        .unwrap();
    refused(recv(&mut client).await, ErrorCode::NotATerminal);
    let g = gather(&mut client, 8).await;
    assert_eq!(g.stdout, b"done\n");

    // A Spawn without a terminal: no resize, no absurd size, no input after its end.
    // (It lingers after its input ends, so the late input finds it running.)
    client
        .send(&spawn(9, "cat; sleep 0.5", None))
        .await
        .unwrap();
    assert!(matches!(recv(&mut client).await, Message::InputCredit(_)));
    client
        .send(&Message::Resize(Resize {
            request: 9,
            rows: 10,
            cols: 10,
        }))
        .await
        .unwrap();
    refused(recv(&mut client).await, ErrorCode::NotATerminal);
    client
        .send(&Message::Resize(Resize {
            request: 9,
            rows: 5000,
            cols: 10,
        }))
        .await
        .unwrap();
    refused(recv(&mut client).await, ErrorCode::InvalidArgument);
    client.send(&input(9, b"kept\n", true)).await.unwrap();
    client.send(&input(9, b"late\n", false)).await.unwrap();
    let mut out = Vec::new();
    let mut saw_refusal = false;
    loop {
        match recv(&mut client).await {
            Message::Error(e) => {
                assert_eq!(e.code, ErrorCode::InputRefused, "{}", e.message);
                assert!(e.message.contains("already ended"), "{}", e.message);
                saw_refusal = true;
            }
            Message::Output(o) => out.extend_from_slice(&o.data),
            Message::InputCredit(_) => {}
            Message::Exit(e) => {
                assert_eq!(e.code, Some(0));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_refusal);
    assert_eq!(out, b"kept\n");
}

/// `Cancel` during a flood: output the server had queued for the request and
/// not yet sent is dropped, so its `Exit` is not stuck behind megabytes the
/// client no longer wants (a slow link would take seconds to carry them).
/// With a deep write queue (64 MiB of frames) and a client that stopped
/// reading, only what already left the server (the kernel's socket buffers)
/// still arrives before the `Exit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_the_output_still_queued() {
    let s = TestServer::start_with("cancel-flood", |c| {
        c.cache.enabled = false;
        c.server.write_queue = 4096;
        c.exec.output_cap = 1 << 30;
    })
    .await;
    let mut client = s.client("default").await;
    client.send(&exec_msg(1, 0, "yes", 0)).await.unwrap();
    first_output(&mut client, 1).await;
    // Stop reading: the socket buffers fill, then the server's queue.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .send(&Message::Cancel(voxterm_protocol::Cancel { request: 1 }))
        .await
        .unwrap();
    let mut after = 0usize;
    let mut seqs = Vec::new();
    let exit = loop {
        match recv(&mut client).await {
            Message::Output(o) => {
                after += o.data.len();
                seqs.push(o.seq);
            }
            Message::Exit(e) => break e,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(exit.killed, voxterm_protocol::KillReason::Cancelled);
    assert!(
        after < 16 << 20,
        "{} MiB still arrived after the cancel",
        after >> 20
    );
    // What did arrive is in order; the dropped frames leave a gap at the end.
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}
