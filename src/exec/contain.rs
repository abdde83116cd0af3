//! What confines every child of one engine: rlimits, and a per-command cgroup
//! when the machine allows it. Built once per engine from `[exec]`, shared by
//! every [`Job`](super::Job).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use nix::unistd::Pid;
use serde::Serialize;

use super::cgroup::{Cell, CgroupMode, Cgroups};
use super::error::ContainError;
use super::limits::Rlimits;
use crate::config::ExecConfig;

/// The containment of one engine's children. Cheap to share (`Arc`); dropping
/// the last reference removes the engine's cgroups.
pub struct Containment {
    rlimits: Rlimits,
    cgroups: Option<Arc<Cgroups>>,
    /// `cgroup = "required"` but setup failed: every command is refused with this.
    refuse: Option<String>,
    /// With `run_as` and rlimits: `prlimit <limits>`, run in front of the
    /// user switch (see [`Containment::chain`]).
    chain: Vec<std::ffi::OsString>,
    summary: String,
    status: ContainmentStatus,
}

/// Where util-linux installs `prlimit`.
const PRLIMIT: [&str; 2] = ["/usr/bin/prlimit", "/bin/prlimit"];

/// What confines children, as `/healthz` shows it: an operator checking a
/// deployment should see at a glance whether commands are capped and contained,
/// without reading the startup log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainmentStatus {
    /// True when at least one rlimit is set on every child.
    pub rlimits_active: bool,
    /// The configured rlimits (name → value; CPU in seconds, the rest in bytes
    /// or counts), off ones left out. Values above the server's own hard limit
    /// are clamped when applied (see `summary`).
    pub rlimits: BTreeMap<&'static str, u64>,
    /// The per-command cgroup.
    pub cgroup: CgroupStatus,
    /// `cgroup = "required"` but unavailable: every command is refused.
    pub refusing_commands: bool,
    /// The one-line description also logged at start.
    pub summary: String,
}

/// The cgroup part of [`ContainmentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupStatus {
    /// `off`, `auto` or `required`, as configured.
    pub mode: CgroupMode,
    /// True when every command gets its own cgroup.
    pub active: bool,
    /// The hierarchy and caps in use, or why there is no cgroup.
    pub detail: String,
}

impl fmt::Debug for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Containment")
            .field("summary", &self.summary)
            .finish()
    }
}

impl Containment {
    /// Sets containment up as `cfg` asks and logs once what is active. Never
    /// fails: with `cgroup = "auto"` a machine without writable cgroups falls back
    /// to rlimits and process groups; with `"required"` the engine starts but
    /// refuses every command (use [`Containment::check`] at start to fail early).
    pub fn new(cfg: &ExecConfig) -> Containment {
        // Before the engine has connections: the spawner's table starts as a
        // copy of the server's.
        super::spawner::start();
        let rlimits = Rlimits::from_config(cfg);
        let (cgroups, refuse, why_not) = match cfg.cgroup {
            CgroupMode::Off => (None, None, Some("off in config".to_owned())),
            mode => match Cgroups::setup(cfg.cgroup_pids_max, cfg.cgroup_memory_max_bytes) {
                Ok(set) => (Some(set), None, None),
                Err(e) if mode == CgroupMode::Required => {
                    tracing::error!(error = %e, "exec.cgroup = required but cgroups are unavailable: every command will be refused");
                    (None, Some(e.to_string()), Some(e.to_string()))
                }
                Err(e) => (None, None, Some(e.to_string())),
            },
        };
        let cg = match (&cgroups, &why_not) {
            (Some(set), _) => set.describe(),
            (None, Some(why)) => format!(
                "no cgroup ({why}): daemonized descendants can escape the kill, no fork cap"
            ),
            (None, None) => "no cgroup".to_owned(),
        };
        // As another user, the rlimits are set by the child on itself, before
        // it switches: a server lacking CAP_SYS_RESOURCE (root in many
        // containers) may not prlimit another user's process, and limits in
        // place before the command's first instruction leave no window.
        let mut refuse = refuse;
        let mut chain = Vec::new();
        if !cfg.run_as.is_empty() && !rlimits.is_empty() {
            match PRLIMIT.iter().find(|p| std::path::Path::new(p).is_file()) {
                Some(prlimit) => {
                    chain.push((*prlimit).into());
                    chain.extend(rlimits.as_options());
                }
                None => {
                    let why = "exec.run_as with rlimits needs util-linux's prlimit (/usr/bin/prlimit), which is not installed";
                    tracing::error!("{why}: every command will be refused");
                    refuse = Some(why.to_owned());
                }
            }
        }
        let summary = format!("{cg}; rlimits {}; process groups", rlimits.describe());
        let configured = [
            ("cpu", cfg.rlimit_cpu),
            ("as", cfg.rlimit_as_bytes),
            ("fsize", cfg.rlimit_fsize_bytes),
            ("nofile", cfg.rlimit_nofile),
            ("nproc", cfg.rlimit_nproc),
        ];
        let status = ContainmentStatus {
            rlimits_active: !rlimits.is_empty(),
            rlimits: configured.into_iter().filter(|(_, v)| *v > 0).collect(),
            cgroup: CgroupStatus {
                mode: cfg.cgroup,
                active: cgroups.is_some(),
                detail: cg.clone(),
            },
            refusing_commands: refuse.is_some(),
            summary: summary.clone(),
        };
        tracing::info!(containment = %summary, "children are contained");
        if rlimits.has_nproc() && super::limits::is_root() && cfg.run_as.is_empty() {
            tracing::warn!(
                "exec.rlimit_nproc has no effect: the server runs as root and so do its commands (set exec.run_as, or use the pids cgroup)"
            );
        }
        Containment {
            rlimits,
            cgroups,
            refuse,
            chain,
            summary,
            status,
        }
    }

    /// No limits and no cgroup: for benchmarks and tests of the bare exec path.
    pub fn none() -> Containment {
        Containment {
            rlimits: Rlimits::default(),
            cgroups: None,
            refuse: None,
            chain: Vec::new(),
            summary: "none".to_owned(),
            status: ContainmentStatus {
                rlimits_active: false,
                rlimits: BTreeMap::new(),
                cgroup: CgroupStatus {
                    mode: CgroupMode::Off,
                    active: false,
                    detail: "none".to_owned(),
                },
                refusing_commands: false,
                summary: "none".to_owned(),
            },
        }
    }

    /// The structured form of [`Containment::summary`].
    pub fn status(&self) -> &ContainmentStatus {
        &self.status
    }

    /// Fails when `cfg` requires cgroups that this machine cannot provide, so a
    /// server refuses to start rather than refusing every command later.
    pub fn check(cfg: &ExecConfig) -> Result<(), ContainError> {
        if !cfg.run_as.is_empty()
            && !Rlimits::from_config(cfg).is_empty()
            && !PRLIMIT.iter().any(|p| std::path::Path::new(p).is_file())
        {
            return Err(ContainError::Required(
                "exec.run_as with rlimits needs util-linux's prlimit (/usr/bin/prlimit)".into(),
            ));
        }
        if cfg.cgroup != CgroupMode::Required {
            return Ok(());
        }
        Cgroups::probe(cfg.cgroup_memory_max_bytes > 0)
            .map_err(|e| ContainError::Required(e.to_string()))
    }

    /// What a child that switches users (`run_as`) runs in front of the
    /// switch: `prlimit` with the rlimits, or nothing. Such a child is not
    /// limited after spawn ([`Containment::limit`]): it already is.
    pub(crate) fn chain(&self) -> &[std::ffi::OsString] {
        &self.chain
    }

    /// One line for logs and health output: what confines children.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// True when every command gets its own cgroup.
    pub fn cgroups_active(&self) -> bool {
        self.cgroups.is_some()
    }

    /// The cell for the next command (None without cgroups). One handed
    /// back earlier is taken here; a new one is made on tokio's blocking
    /// pool, not on the runtime thread that asked: making its directories
    /// takes milliseconds, and every cached answer queued on that thread
    /// would wait for them.
    pub(crate) async fn cell(&self) -> Result<Option<Cell>, ContainError> {
        if let Some(why) = &self.refuse {
            return Err(ContainError::Required(why.clone()));
        }
        let Some(set) = &self.cgroups else {
            return Ok(None);
        };
        if let Some(cell) = set.reuse()? {
            return Ok(Some(cell));
        }
        let set = Arc::clone(set);
        match tokio::task::spawn_blocking(move || set.make()).await {
            Ok(made) => made.map(Some),
            Err(e) => Err(ContainError::Io {
                path: "(a new cell)".into(),
                source: std::io::Error::other(e),
            }),
        }
    }

    /// Applies the rlimits to a freshly spawned child and, with a cell, to every
    /// process in it: `prlimit` lands after the child started (see [`limits`]), and
    /// anything it forked meanwhile did not inherit them. Once a process is
    /// limited its later children inherit the limits, so sweeping until a pass
    /// finds no new pid reaches every process of the command.
    ///
    /// [`limits`]: super::limits
    pub(crate) fn limit(&self, pid: Pid, cell: Option<&Cell>) -> Result<(), ContainError> {
        if self.rlimits.is_empty() {
            return Ok(());
        }
        self.rlimits.apply(pid).map_err(ContainError::Rlimit)?;
        let Some(cell) = cell else { return Ok(()) };
        let mut done = vec![pid.as_raw()];
        // Bounded: each pass limits at least one new process, and a cell holds at
        // most pids.max of them; the bound only guards against a pid-recycling loop.
        for _ in 0..64 {
            let fresh: Vec<i32> = cell
                .members()
                .into_iter()
                .filter(|p| !done.contains(p))
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            for p in fresh {
                self.rlimits
                    .apply(Pid::from_raw(p))
                    .map_err(ContainError::Rlimit)?;
                done.push(p);
            }
        }
        Ok(())
    }
}
