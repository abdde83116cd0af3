//! Isolation between tenants, the command policy and the per-tenant limits, over
//! real sockets and real processes.

mod common;

use common::*;
use voxterm::client::Client;
use voxterm_protocol::{ErrorCode, Message, OpenSession, SessionOpened};

async fn open(c: &mut Client, session: u32, name: &str) -> Result<SessionOpened, ErrorCode> {
    c.send(&Message::OpenSession(OpenSession {
        session,
        name: name.into(),
    }))
    .await
    .unwrap();
    match recv(c).await {
        Message::SessionOpened(s) => Ok(s),
        Message::Error(e) => Err(e.code),
        other => panic!("expected SessionOpened, got {other:?}"),
    }
}

fn stdout(done: &voxterm::client::Completed) -> String {
    String::from_utf8_lossy(&done.stdout).trim().to_owned()
}

fn error_of(done: &voxterm::client::Completed) -> (ErrorCode, String) {
    let e = done
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected an Error, got {:?}", done.exit));
    (e.code, e.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_their_own_sessions_and_roots() {
    let s = TestServer::start_with("iso", |c| {
        c.session.tenant_roots = format!("{}/tenants/{{tenant}}", c.session.root.display());
        c.cache.enabled = false;
    })
    .await;
    let (alice_root, bob_root) = (s.root.join("tenants/alice"), s.root.join("tenants/bob"));
    let mut a = s.client("alice").await;
    let mut b = s.client("bob").await;

    // Same session name, different sessions: cwd and env do not cross.
    assert_eq!(stdout(&run(&mut a, 0, "pwd").await), display(&alice_root));
    assert_eq!(stdout(&run(&mut b, 0, "pwd").await), display(&bob_root));
    assert_eq!(
        exit_of(&run(&mut a, 0, "export SECRET=alice-only").await).code,
        Some(0)
    );
    assert_eq!(stdout(&run(&mut b, 0, "echo \"[$SECRET]\"").await), "[]");
    assert_eq!(
        stdout(&run(&mut a, 0, "echo \"[$SECRET]\"").await),
        "[alice-only]"
    );
    assert_eq!(
        stdout(&run(&mut a, 0, "echo $HOME").await),
        display(&alice_root)
    );
    let opened_a = open(&mut a, 1, "main").await.unwrap();
    let opened_b = open(&mut b, 1, "main").await.unwrap();
    assert!(!opened_b.resumed, "bob's main is not alice's");
    assert_eq!(opened_a.cwd, display(&alice_root));
    assert_eq!(opened_b.cwd, display(&bob_root));

    // Files land in the tenant's root.
    assert_eq!(
        exit_of(&run(&mut a, 0, "touch mine && mkdir sub").await).code,
        Some(0)
    );
    assert!(alice_root.join("mine").exists());
    assert!(!bob_root.join("mine").exists());

    // `cd` cannot leave the root, by any route.
    for out in [
        "cd ../bob".to_owned(),
        format!("cd {}", display(&bob_root)),
        "cd /".to_owned(),
        "cd ..".to_owned(),
        "cd sub/../..".to_owned(),
    ] {
        let done = run(&mut a, 0, &out).await;
        assert_eq!(exit_of(&done).code, Some(1), "{out}");
        assert!(
            String::from_utf8_lossy(&done.stderr).contains("outside"),
            "{out}"
        );
        assert_eq!(stdout(&run(&mut a, 0, "pwd").await), display(&alice_root));
    }
    assert_eq!(exit_of(&run(&mut a, 0, "cd sub").await).code, Some(0));
    assert_eq!(
        stdout(&run(&mut a, 0, "pwd").await),
        display(&alice_root.join("sub"))
    );
    assert_eq!(exit_of(&run(&mut a, 0, "cd").await).code, Some(0));
    assert_eq!(stdout(&run(&mut a, 0, "pwd").await), display(&alice_root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_command_anywhere_in_a_line_is_refused_and_nothing_runs() {
    let s = TestServer::start_with("policy", |c| {
        c.policy.deny = vec!["rm".into(), "git push".into()];
    })
    .await;
    let mut c = s.client("t").await;
    std::fs::write(s.root.join("z"), "keep").unwrap();
    std::fs::write(s.root.join("y"), "keep").unwrap();
    for (line, created) in [
        ("touch made1 | rm -rf y", "made1"),
        ("touch made2 && $(rm z)", "made2"),
        ("touch made3; (echo ok && rm z)", "made3"),
        ("touch made4; echo `rm -f z`", "made4"),
        ("touch made5; sh -c 'rm z'", "made5"),
        ("touch made6; git push origin main", "made6"),
    ] {
        let done = run(&mut c, 0, line).await;
        let (code, message) = error_of(&done);
        assert_eq!(code, ErrorCode::PolicyDenied, "{line}");
        assert!(
            message.contains("`rm`") || message.contains("`git push`"),
            "{line}: {message}"
        );
        assert!(done.stdout.is_empty(), "{line}");
        assert!(!s.root.join(created).exists(), "{line}: part of it ran");
    }
    assert!(s.root.join("z").exists() && s.root.join("y").exists());
    // Allowed lines still run, and the connection is fine.
    let done = run(&mut c, 0, "echo rm | cat").await;
    assert_eq!(stdout(&done), "rm");
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"policy_denied\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("voxterm_errors_total{code=\"PolicyDenied\"} 6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_admits_only_listed_programs() {
    let s = TestServer::start_with("allow", |c| {
        c.policy.allow = vec!["echo".into(), "ls".into()];
    })
    .await;
    let mut c = s.client("t").await;
    assert_eq!(stdout(&run(&mut c, 0, "echo ok").await), "ok");
    assert_eq!(exit_of(&run(&mut c, 0, "cd .").await).code, Some(0));
    let done = run(&mut c, 0, "echo $(touch nope)").await;
    assert_eq!(error_of(&done).0, ErrorCode::PolicyDenied);
    assert!(error_of(&done).1.contains("`touch`"));
    assert!(!s.root.join("nope").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_rate_limited() {
    let s = TestServer::start_with("rate", |c| {
        c.limits.commands_per_second = 0.5;
        c.limits.burst = 2;
    })
    .await;
    let mut a = s.client("a").await;
    assert_eq!(exit_of(&run(&mut a, 0, "true").await).code, Some(0));
    assert_eq!(exit_of(&run(&mut a, 0, "pwd").await).code, Some(0));
    let done = run(&mut a, 0, "touch late").await;
    let (code, message) = error_of(&done);
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(message.contains("retry after"), "{message}");
    assert!(!s.root.join("late").exists());
    // The bucket is per tenant, shared by the tenant's connections.
    let mut a2 = s.client("a").await;
    assert_eq!(
        error_of(&run(&mut a2, 0, "true").await).0,
        ErrorCode::RateLimited
    );
    let mut b = s.client("b").await;
    assert_eq!(exit_of(&run(&mut b, 0, "true").await).code, Some(0));
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"rate_limited\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_tenant_are_capped() {
    let s = TestServer::start_with("quota", |c| c.limits.max_sessions_per_tenant = 2).await;
    let mut a = s.client("a").await;
    open(&mut a, 1, "one").await.unwrap();
    open(&mut a, 2, "two").await.unwrap();
    assert_eq!(
        open(&mut a, 3, "three").await.unwrap_err(),
        ErrorCode::QuotaExceeded
    );
    // The implicit default session counts too.
    assert_eq!(
        error_of(&run(&mut a, 0, "true").await).0,
        ErrorCode::QuotaExceeded
    );
    // Resuming an existing session is always possible, from any connection.
    let mut a2 = s.client("a").await;
    assert!(open(&mut a2, 1, "one").await.unwrap().resumed);
    // Other tenants have their own quota.
    let mut b = s.client("b").await;
    assert_eq!(exit_of(&run(&mut b, 0, "true").await).code, Some(0));
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"quota_exceeded\"} 2"),
        "{metrics}"
    );
}
