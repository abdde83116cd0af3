//! A connection's sessions: the handles it opened (`OpenSession`), closes
//! (`CloseSession`) and names in each `Exec`.
//!
//! A session belongs to the tenant, not the connection: the handle number is
//! the connection's own, the session behind it (its cwd, environment and
//! history) is the tenant's session of that name, which another connection of
//! the tenant may hold too, and which outlives the connection until the
//! reaper takes it.

use super::{valid_name, Connection};
use crate::metrics::Refusal;
use crate::session::{Builtin, SessionHandle};
use std::sync::Arc;
use voxterm_protocol::{
    CloseSession, ErrorCode, Message, OpenSession, SessionClosed, SessionId, SessionOpened, Subject,
};

impl Connection {
    /// `OpenSession`: attaches the handle to the tenant's session of that name
    /// (created, or resumed as it was left).
    pub(super) async fn on_open(&mut self, open: OpenSession) {
        if !valid_name(&open.name) {
            return self
                .reject(
                    Subject::Session,
                    open.session,
                    ErrorCode::InvalidCommand,
                    "session names are 1-64 characters of [A-Za-z0-9._-]",
                )
                .await;
        }
        if !self.sessions.contains_key(&open.session)
            && self.sessions.len() >= self.limits.max_sessions as usize
        {
            return self
                .reject(
                    Subject::Session,
                    open.session,
                    ErrorCode::TooManySessions,
                    format!(
                        "at most {} sessions per connection",
                        self.limits.max_sessions
                    ),
                )
                .await;
        }
        let (handle, resumed) = match self.attach(&open.name).await {
            Ok(opened) => opened,
            Err((code, message)) => {
                return self
                    .reject(Subject::Session, open.session, code, message)
                    .await
            }
        };
        let cwd = handle.cwd().display().to_string();
        self.sessions.insert(open.session, Arc::new(handle));
        self.send(Message::SessionOpened(SessionOpened {
            session: open.session,
            cwd,
            resumed,
        }))
        .await;
    }

    /// `CloseSession`: lets go of the handle. The tenant's session itself
    /// stays (for another connection, or a later resume).
    pub(super) async fn on_close_session(&mut self, close: CloseSession) {
        if self.sessions.remove(&close.session).is_some() {
            self.send(Message::SessionClosed(SessionClosed {
                session: close.session,
            }))
            .await;
        } else {
            self.reject(
                Subject::Session,
                close.session,
                ErrorCode::UnknownSession,
                format!("session {} is not open", close.session),
            )
            .await;
        }
    }

    /// Attaches to the tenant's session `name`, within the tenant's session quota
    /// and confined to its root when `tenant_roots` is on.
    async fn attach(&self, name: &str) -> Result<(SessionHandle, bool), (ErrorCode, String)> {
        let Some(tenant) = self.tenant.clone() else {
            return Err((ErrorCode::HelloRequired, "send Hello first".into()));
        };
        let cfg = self.engine.config();
        let max = match cfg.limits.max_sessions_per_tenant {
            0 => usize::MAX,
            n => n as usize,
        };
        let opened = self.engine.sessions.open_within(&tenant, name, max).await;
        let Some((handle, resumed)) = opened else {
            self.engine.metrics.refused(Refusal::Quota);
            return Err((
                ErrorCode::QuotaExceeded,
                format!("tenant {tenant} already has its maximum of {max} sessions"),
            ));
        };
        let owner = match self.engine.user_for(&tenant) {
            Ok(user) => user.map(|u| (u.uid(), u.gid())),
            Err(e) => return Err((ErrorCode::Internal, e.to_string())),
        };
        match crate::security::tenant_root(&cfg.session, &tenant, owner) {
            Ok(Some(root)) => Builtin::confine(&handle, &root),
            Ok(None) => {}
            Err(e) => {
                return Err((
                    ErrorCode::Internal,
                    format!("cannot prepare the tenant's root: {e}"),
                ))
            }
        }
        if !resumed {
            // Warm the tenant's likely first commands (prediction, when on).
            self.engine.session_opened(&handle);
        }
        Ok((handle, resumed))
    }

    /// The session an `Exec` names; handle 0 opens `default` on first use.
    pub(super) async fn session(
        &mut self,
        id: SessionId,
    ) -> Result<Arc<SessionHandle>, (ErrorCode, String)> {
        if let Some(s) = self.sessions.get(&id) {
            return Ok(s.clone());
        }
        if id != 0 {
            return Err((
                ErrorCode::UnknownSession,
                format!("session {id} is not open"),
            ));
        }
        // Boxed: attaching (~830 bytes of state) happens once per connection,
        // and inline it would size every `Exec`'s handler (`dispatch`).
        let (handle, _) = Box::pin(self.attach("default")).await?;
        let handle = Arc::new(handle);
        self.sessions.insert(0, handle.clone());
        Ok(handle)
    }
}
