//! Commands as another user (issue 19 item 7, `[exec] run_as`): the server
//! keeps its own user (root here) and its secrets, the commands run as an
//! unprivileged one, through `setpriv`, still children of the server, so the
//! process group, the timeout, the cancel and the rlimits still reach them.
//!
//! These tests need a root server (switching users needs it): run as another
//! user they fail with a message saying so, never pass without the switch.
//! They use users every Debian system has (`nobody`, `daemon`, `games`), so
//! nothing is added to the machine's user database.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;
use voxterm::config::Config;
use voxterm_protocol::{ErrorCode, KillReason};

const NOBODY: u32 = 65534;

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { nix::libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests start a server that switches users for its commands: run them as root"
    );
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .expect("user database")
        .unwrap_or_else(|| panic!("this test needs the system user {name:?}"))
        .uid
        .as_raw()
}

fn stdout(done: &voxterm::client::Completed) -> String {
    String::from_utf8_lossy(&done.stdout).trim().to_owned()
}

fn stderr(done: &voxterm::client::Completed) -> String {
    String::from_utf8_lossy(&done.stderr).trim().to_owned()
}

/// A server whose commands run as `nobody`, in a root `nobody` may use, with
/// the cache off so every line really runs.
async fn as_nobody(name: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    require_root();
    TestServer::start_with(name, |c| {
        c.exec.run_as = "nobody".into();
        c.cache.enabled = false;
        std::os::unix::fs::chown(&c.session.root, Some(NOBODY), Some(NOBODY))
            .expect("chown the session root");
        tweak(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_the_configured_user_and_cannot_read_the_servers_secrets() {
    // A secret of the server's user, mode 600: the tokens file's situation.
    let vault = temp_root("run-as-vault");
    let secret = vault.join("tokens.toml");
    std::fs::write(&secret, "[tokens]\n\"t0ken\" = \"alice\"\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = as_nobody("run-as", |_| {}).await;
    let mut c = s.client("alice").await;

    // Both plans: a direct exec and a /bin/sh line.
    for line in ["id -u", "id -u; true"] {
        let done = run(&mut c, 0, line).await;
        assert_eq!(exit_of(&done).code, Some(0), "{line}: {}", stderr(&done));
        assert_eq!(stdout(&done), NOBODY.to_string(), "{line}");
    }
    // No supplementary groups of the server's, no capabilities, no way back up.
    let done = run(
        &mut c,
        0,
        "grep -E '^(Groups|CapEff|CapPrm|NoNewPrivs):' /proc/self/status",
    )
    .await;
    let status = stdout(&done);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapPrm:\t0000000000000000"), "{status}");
    assert!(!status.contains("Groups:\t0"), "root's group: {status}");

    // The server's secret file and its /proc entries are out of reach; the
    // server is still the command's parent.
    let done = run(&mut c, 0, &format!("cat {}", display(&secret))).await;
    assert_ne!(
        exit_of(&done).code,
        Some(0),
        "read the secret: {}",
        stdout(&done)
    );
    assert!(
        stderr(&done).contains("Permission denied"),
        "{}",
        stderr(&done)
    );
    assert!(!stdout(&done).contains("t0ken"));
    let done = run(&mut c, 0, "echo $PPID; cat /proc/$PPID/environ").await;
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).lines().next(),
        Some(std::process::id().to_string().as_str()),
        "the server is the command's parent"
    );
    assert!(
        stderr(&done).contains("Permission denied"),
        "{}",
        stderr(&done)
    );

    // argv[0] is what a shell would give, and a missing program reads as one.
    let done = run(&mut c, 0, "ls /no/such/dir").await;
    assert!(stderr(&done).starts_with("ls: "), "{}", stderr(&done));
    let done = run(&mut c, 0, "no-such-program-xyz").await;
    assert_eq!(exit_of(&done).code, Some(127), "{}", stderr(&done));

    // Files it makes belong to that user.
    let done = run(&mut c, 0, "touch made-by-me && stat -c %u made-by-me").await;
    assert_eq!(stdout(&done), NOBODY.to_string(), "{}", stderr(&done));
    assert_eq!(
        std::fs::metadata(s.root.join("made-by-me")).unwrap().uid(),
        NOBODY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_still_times_out_cancels_and_limits_another_users_commands() {
    let s = as_nobody("run-as-kill", |c| {
        c.exec.rlimit_nofile = 64;
        c.exec.rlimit_nproc = 4096;
        c.exec.kill_grace = Duration::from_millis(50);
    })
    .await;
    let mut c = s.client("alice").await;
    // Rlimits set by the (root) server on a process of another user.
    let done = run(&mut c, 0, "ulimit -n; ulimit -p").await;
    assert_eq!(stdout(&done), "64\n4096", "{}", stderr(&done));

    // The timeout kills the whole group, background child included.
    let done = run_t(&mut c, 0, "sleep 30 & echo $!; wait", 300).await;
    let exit = exit_of(&done);
    assert_eq!(exit.killed, KillReason::Timeout, "{exit:?}");
    let bg = parse_pid(&done.stdout);
    assert_dies(bg, STEP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_per_tenant_owns_its_root_and_cannot_read_another_tenants_files() {
    require_root();
    let s = TestServer::start_with("run-as-tenants", |c| {
        // Tenants named after system users, so the template needs no new users.
        c.exec.run_as = "{tenant}".into();
        c.cache.enabled = false;
        c.session.tenant_roots = format!("{}/tenants/{{tenant}}", c.session.root.display());
    })
    .await;
    let mut daemon = s.client("daemon").await;
    let mut games = s.client("games").await;
    let daemon_root = s.root.join("tenants/daemon");

    let done = run(
        &mut daemon,
        0,
        "id -un && echo diary > secret.txt && cat secret.txt",
    )
    .await;
    assert_eq!(stdout(&done), "daemon\ndiary", "{}", stderr(&done));
    let meta = std::fs::metadata(&daemon_root).unwrap();
    assert_eq!(
        meta.uid(),
        uid_of("daemon"),
        "the root belongs to its tenant's user"
    );
    assert_eq!(meta.mode() & 0o777, 0o700);

    let done = run(&mut games, 0, "id -un").await;
    assert_eq!(stdout(&done), "games");
    for line in [
        format!("cat {}/secret.txt", display(&daemon_root)),
        format!("ls {}", display(&daemon_root)),
    ] {
        let done = run(&mut games, 0, &line).await;
        assert_ne!(exit_of(&done).code, Some(0), "{line}: {}", stdout(&done));
        assert!(!stdout(&done).contains("diary"));
        assert!(
            stderr(&done).contains("Permission denied"),
            "{line}: {}",
            stderr(&done)
        );
    }

    // A tenant without a user of that name gets a clear refusal, not a root shell.
    let mut nobody_here = s.client("no-such-user-xyz").await;
    let done = run(&mut nobody_here, 0, "id -u").await;
    let err = done
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("ran: {:?}", done.exit));
    assert_eq!(err.code, ErrorCode::Internal, "{err:?}");
    assert!(
        err.message.contains("no user \"no-such-user-xyz\""),
        "{err:?}"
    );
}

#[test]
fn a_server_refuses_to_start_when_commands_cannot_run_as_the_user() {
    let mut cfg = voxterm::config::Preset::Development.config();
    cfg.exec.run_as = "no-such-user-xyz".into();
    let e = voxterm::server::check(&cfg)
        .expect_err("no such user")
        .to_string();
    assert!(e.contains("there is no user \"no-such-user-xyz\""), "{e}");
    cfg.exec.run_as = "root".into();
    let e = voxterm::server::check(&cfg).expect_err("root").to_string();
    assert!(e.contains("is root"), "{e}");
}
