//! Session state (cwd, env) persists across reconnects, per tenant.

mod common;

use common::*;
use voxterm::client::Client;
use voxterm_protocol::{ErrorCode, Message, OpenSession, ServedFrom, SessionOpened};

async fn open(c: &mut Client, session: u32, name: &str) -> SessionOpened {
    c.send(&Message::OpenSession(OpenSession {
        session,
        name: name.into(),
    }))
    .await
    .unwrap();
    match recv(c).await {
        Message::SessionOpened(s) => {
            assert_eq!(s.session, session);
            s
        }
        other => panic!("expected SessionOpened, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cd_and_export_persist_across_reconnects_per_tenant() {
    let server = TestServer::start("sessions").await;
    std::fs::create_dir(server.root.join("sub")).unwrap();
    let root = display(&server.root);
    let sub = display(&server.root.join("sub"));

    let mut c = server.client("t1").await;
    let s = open(&mut c, 5, "work").await;
    assert!(!s.resumed);
    assert_eq!(s.cwd, root);

    let done = run(&mut c, 5, "cd sub").await;
    let exit = exit_of(&done);
    assert_eq!(exit.code, Some(0));
    assert_eq!(exit.served_from, ServedFrom::Builtin);
    assert!(done.stdout.is_empty() && done.stderr.is_empty());
    // A child started before the export does not see it; the next one must.
    assert_eq!(run(&mut c, 5, "printenv A").await.stdout, b"");
    let done = run(&mut c, 5, "export A=1").await;
    assert_eq!(exit_of(&done).code, Some(0));
    // A child sees both.
    let done = run(&mut c, 5, "sh -c 'pwd; echo A=$A'").await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("{sub}\nA=1\n")
    );
    // The default session (handle 0) is another session: untouched.
    let done = run(&mut c, 0, "pwd").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{root}\n"));
    assert_eq!(run(&mut c, 0, "printenv A").await.stdout, b"");
    drop(c);

    // Same tenant, new connection: resumed where it was.
    let mut c = server.client("t1").await;
    let s = open(&mut c, 7, "work").await;
    assert!(s.resumed);
    assert!(s.cwd.ends_with("/sub"), "{}", s.cwd);
    assert_eq!(s.cwd, sub);
    let done = run(&mut c, 7, "pwd").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{sub}\n"));
    let done = run(&mut c, 7, "printenv A").await;
    assert_eq!(done.stdout, b"1\n");
    assert_eq!(exit_of(&done).code, Some(0));
    // `/bin/pwd` (a real child) runs in the session's cwd too.
    let done = run(&mut c, 7, "/bin/pwd").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{sub}\n"));

    // unset removes it.
    run(&mut c, 7, "unset A").await;
    let done = run(&mut c, 7, "printenv A").await;
    assert_eq!(exit_of(&done).code, Some(1));
    assert!(done.stdout.is_empty());

    // Another tenant's "work" is a different session.
    let mut other = server.client("t2").await;
    let s = open(&mut other, 5, "work").await;
    assert!(!s.resumed);
    assert_eq!(s.cwd, root);
    let done = run(&mut other, 5, "pwd").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{root}\n"));
    run(&mut c, 7, "export B=2").await;
    let done = run(&mut other, 5, "printenv B").await;
    assert!(done.stdout.is_empty(), "tenant t2 saw t1's env");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cd_to_a_missing_directory_fails_like_a_shell() {
    let server = TestServer::start("cd-missing").await;
    let mut c = server.client("t1").await;
    let done = run(&mut c, 0, "cd /nonexistent").await;
    let exit = exit_of(&done);
    assert_eq!(exit.code, Some(1));
    assert_eq!(exit.served_from, ServedFrom::Builtin);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("No such file or directory"),
        "stderr: {stderr:?}"
    );
    // The cwd did not move.
    let done = run(&mut c, 0, "pwd").await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("{}\n", display(&server.root))
    );

    // A file is not a directory.
    std::fs::write(server.root.join("f"), b"x").unwrap();
    let done = run(&mut c, 0, "cd f").await;
    assert_eq!(exit_of(&done).code, Some(1));
    assert!(String::from_utf8_lossy(&done.stderr).contains("Not a directory"));

    // `cd` inside a shell line does not persist (documented behaviour).
    std::fs::create_dir(server.root.join("d")).unwrap();
    let done = run(&mut c, 0, "cd d && pwd").await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("{}\n", display(&server.root.join("d")))
    );
    let done = run(&mut c, 0, "pwd").await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("{}\n", display(&server.root))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_names_and_limits_are_checked() {
    let server = TestServer::start_with("session-limits", |c| c.server.max_sessions = 2).await;
    let mut c = server.client("t1").await;
    c.send(&Message::OpenSession(OpenSession {
        session: 1,
        name: "bad name/..".into(),
    }))
    .await
    .unwrap();
    match recv(&mut c).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::InvalidCommand),
        other => panic!("{other:?}"),
    }
    open(&mut c, 1, "a").await;
    open(&mut c, 2, "b").await;
    // Rebinding an open handle is not a new session.
    open(&mut c, 2, "b").await;
    c.send(&Message::OpenSession(OpenSession {
        session: 3,
        name: "c".into(),
    }))
    .await
    .unwrap();
    match recv(&mut c).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::TooManySessions),
        other => panic!("{other:?}"),
    }
    assert_eq!(run(&mut c, 1, "echo a").await.stdout, b"a\n");
}

/// Issue 19, finding 6: a session `cd d`; another session of the tenant
/// replaces `d` with a symlink to `/`; the first session's commands must not
/// run in `/`. The cwd is re-checked at every command and the child started in
/// the directory that was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cwd_swapped_for_a_symlink_out_of_the_root_refuses_commands() {
    let server = TestServer::start_with("cd-swap", |c| {
        c.session.tenant_roots = format!("{}/tenants/{{tenant}}", c.session.root.display());
        c.cache.enabled = false;
    })
    .await;
    let root = server.root.join("tenants/alice");
    let mut c = server.client("alice").await;
    assert_eq!(exit_of(&run(&mut c, 0, "mkdir d").await).code, Some(0));
    assert_eq!(exit_of(&run(&mut c, 0, "cd d").await).code, Some(0));
    let done = run(
        &mut c,
        0,
        "printf '#!/bin/sh\\necho script\\n' > x.sh; chmod +x x.sh; /bin/pwd; ./x.sh",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("{}\nscript\n", display(&root.join("d")))
    );

    // Another session of the tenant swaps d for a symlink to /.
    let mut other = server.client("alice").await;
    open(&mut other, 1, "other").await;
    let done = run(&mut other, 1, "mv d d.old && ln -s / d && ls -ld d").await;
    assert_eq!(exit_of(&done).code, Some(0), "{:?}", done);

    for line in ["/bin/pwd", "ls", "echo hi"] {
        let done = run(&mut c, 0, line).await;
        let e = done
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("`{line}` ran: {:?}", String::from_utf8_lossy(&done.stdout)));
        assert_eq!(e.code, ErrorCode::PolicyDenied, "{e:?}");
        assert!(
            e.message.contains("now resolves to /,")
                && e.message.contains("outside this tenant's root"),
            "{e:?}"
        );
        assert!(done.stdout.is_empty());
    }
    // `cd` back into the root makes the session usable again.
    assert_eq!(exit_of(&run(&mut c, 0, "cd ~").await).code, Some(0));
    let done = run(&mut c, 0, "/bin/pwd").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), display(&root));
    // And a cwd that is still inside (swapped for a symlink within the root) is fine.
    assert_eq!(
        exit_of(&run(&mut c, 0, "rm d && ln -s d.old d && cd d").await).code,
        Some(0)
    );
    let done = run(&mut c, 0, "cd d").await;
    assert_eq!(exit_of(&done).code, Some(0));
    let done = run(&mut c, 0, "./x.sh").await;
    assert_eq!(done.stdout, b"script\n");
}
