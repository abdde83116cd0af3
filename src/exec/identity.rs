//! Running commands as another user (`[exec] run_as`): the server keeps its own
//! user and its secrets (the tokens file, its `/proc` entries, the Redis
//! password), the commands get a user that cannot read them.
//!
//! How: every child is spawned as any other (the spawner's `posix_spawn`, own
//! process group, cgroup cell, prlimit), but the program spawned is util-linux's
//! `setpriv`, which switches to the command user's uid, gid and groups, sets
//! `no_new_privs` and then `exec`s the command. So:
//!
//! - the server stays the parent: it waits for the child, signals its process
//!   group and sweeps its cgroup exactly as before (the server needs root, or
//!   `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` passed on as ambient
//!   capabilities, so `setpriv` may switch users and the server may still
//!   signal what runs as that user); rlimits are set by the child itself,
//!   before the switch (`prlimit` in front, see `Containment::chain`);
//! - spawning stays a `posix_spawn` (vfork-like, cost independent of the
//!   server's size): a uid switch in the child before `exec` is not something
//!   `posix_spawn` can do, and fork+exec costs tens of milliseconds from a
//!   large server. The price is one extra small `execve`
//!   per command, two with rlimits (measured in `benches/spawn`, `run_as` rows);
//! - `no_new_privs` means a setuid program (`sudo`, `su`, `passwd`) cannot give
//!   the command back what `run_as` took away;
//! - argv[0] stays what a shell would give: a bare program name is handed to
//!   `setpriv` bare (its `execvp` searches the child's `PATH` from the child's
//!   cwd, as `sh` does), a name with a `/` as typed.
//!
//! `run_as` may name one user for every tenant or a template with `{tenant}`
//! (`vt-{tenant}`), a user per tenant: with tenant roots, each root is then
//! created owned by its tenant's user, mode 0700, and tenants cannot read each
//! other's files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::unistd::{getgrouplist, Gid, User};

use super::error::IdentityError;

/// Where util-linux installs `setpriv` (Debian's `util-linux`, an essential package).
const SETPRIV: [&str; 3] = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"];

/// One resolved command user: its ids and the `setpriv` arguments that switch
/// to it, built once and reused by every command it runs.
pub struct Identity {
    name: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// `setpriv` and its options, up to and including `--`.
    prefix: Arc<[OsString]>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

impl Identity {
    /// Looks `name` up in the user database and prepares its `setpriv` line.
    /// Root is refused: a `run_as` that runs commands as root contains nothing.
    pub fn resolve(name: &str, setpriv: &Path) -> Result<Identity, IdentityError> {
        let user = User::from_name(name)
            .map_err(|e| IdentityError::Lookup(name.to_owned(), e.to_string()))?
            .ok_or_else(|| IdentityError::NoSuchUser(name.to_owned()))?;
        if user.uid.is_root() {
            return Err(IdentityError::Root(name.to_owned()));
        }
        let cname =
            std::ffi::CString::new(name).map_err(|_| IdentityError::NoSuchUser(name.to_owned()))?;
        let groups: Vec<u32> = getgrouplist(&cname, user.gid)
            .map_err(|e| IdentityError::Lookup(name.to_owned(), e.to_string()))?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let mut prefix: Vec<OsString> = vec![
            setpriv.into(),
            format!("--reuid={uid}").into(),
            format!("--regid={gid}").into(),
        ];
        prefix.push(if groups.is_empty() {
            "--clear-groups".into()
        } else {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            format!("--groups={}", list.join(",")).into()
        });
        prefix.extend(["--nnp".into(), "--inh-caps=-all".into(), "--".into()]);
        Ok(Identity {
            name: name.to_owned(),
            uid,
            gid,
            groups,
            prefix: prefix.into(),
        })
    }

    /// The user's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The numeric user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The primary group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// `setpriv` and its options, up to and including `--`: the program to
    /// spawn is `prefix[0]`, the command's own argv follows the rest.
    pub(crate) fn prefix(&self) -> &[OsString] {
        &self.prefix
    }

    /// Whether this user may read (`want` = 4), write (2) or search (1) a
    /// file with these permissions, by the mode bits (no ACLs): for startup
    /// warnings, not for access decisions (the kernel makes those).
    pub fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }
}

/// The configured `run_as`: one user for all tenants, or a user per tenant from
/// a `{tenant}` template (resolved on first use and remembered).
pub struct RunAs {
    template: String,
    setpriv: PathBuf,
    /// The one user, resolved at start, when the template has no `{tenant}`.
    fixed: Option<Arc<Identity>>,
    /// Per tenant (keyed by tenant name, so a hit allocates nothing).
    resolved: Mutex<HashMap<String, Arc<Identity>>>,
}

impl fmt::Debug for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run_as {}", self.template)
    }
}

impl RunAs {
    /// `None` when `run_as` is empty (commands run as the server's user).
    /// Fails when `setpriv` is missing or a fixed user does not exist.
    pub fn new(run_as: &str) -> Result<Option<RunAs>, IdentityError> {
        if run_as.is_empty() {
            return Ok(None);
        }
        let setpriv = SETPRIV
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(IdentityError::NoSetpriv)?;
        let fixed = match run_as.contains("{tenant}") {
            true => None,
            false => Some(Arc::new(Identity::resolve(run_as, &setpriv)?)),
        };
        Ok(Some(RunAs {
            template: run_as.to_owned(),
            setpriv,
            fixed,
            resolved: Mutex::new(HashMap::new()),
        }))
    }

    /// True when the template has `{tenant}`: a user per tenant.
    pub fn per_tenant(&self) -> bool {
        self.fixed.is_none()
    }

    /// The user `tenant`'s commands run as (asked once per command).
    pub fn for_tenant(&self, tenant: &str) -> Result<Arc<Identity>, IdentityError> {
        if let Some(id) = &self.fixed {
            return Ok(Arc::clone(id));
        }
        let mut resolved = crate::sync::lock(&self.resolved);
        if let Some(id) = resolved.get(tenant) {
            return Ok(Arc::clone(id));
        }
        let name = self.template.replace("{tenant}", tenant);
        let id = Arc::new(Identity::resolve(&name, &self.setpriv)?);
        resolved.insert(tenant.to_owned(), Arc::clone(&id));
        Ok(id)
    }

    /// Checks at start that commands can really run as the (fixed) user: spawns
    /// `setpriv … -- /bin/sh -c 'exit 0'` once, and refuses to start with
    /// `setpriv`'s own words when it cannot switch (the server is neither root
    /// nor holds the capabilities). A per-tenant template is checked with the
    /// user of the first session that opens.
    pub fn check(run_as: &str) -> Result<(), IdentityError> {
        let Some(me) = RunAs::new(run_as)? else {
            return Ok(());
        };
        if me.per_tenant() {
            return Ok(());
        }
        let id = me.for_tenant("")?;
        let (prog, rest) = id
            .prefix()
            .split_first()
            .ok_or_else(|| IdentityError::Probe(id.name.clone(), "empty setpriv line".into()))?;
        let out = std::process::Command::new(prog)
            .args(rest)
            .args(["/bin/sh", "-c", "exit 0"])
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| IdentityError::Probe(id.name.clone(), e.to_string()))?;
        if !out.status.success() {
            return Err(IdentityError::Probe(
                id.name.clone(),
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }
}
