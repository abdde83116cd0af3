//! The handshake: a connection's first frame must be `Hello`, and the reader
//! answers nothing else until one is accepted.
//!
//! Accepting a `Hello` means, in order: the protocol version matches; the
//! client's address is not waiting after failed authentications; the token
//! (from the upgrade's headers or `Hello.token`, which must agree) names a
//! tenant; the tenant is under its connection cap. Then `Welcome` announces
//! the limits and the encoding and compression both sides switch to.
//!
//! A connection stays authenticated only while its tokens hold: after a
//! tokens reload they are checked again ([`Connection::on_tokens_reloaded`]).

use super::timers::Timers;
use super::{valid_name, Connection, Ending, Step};
use crate::metrics::Refusal;
use crate::security::{Grant, Revoked, TokenCheck};
use crate::server::auth;
use crate::server::writer::Outbound;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voxterm_protocol::{
    Compression, Encoding, ErrorCode, Hello, Message, Subject, Welcome, PROTOCOL_VERSION,
};

/// The refusal reason of an unknown `Hello.token` (counted by the auth throttle).
const HELLO_UNKNOWN_TOKEN: &str = "invalid token";

impl Connection {
    /// `Hello`: authenticates the connection and answers `Welcome`, or refuses
    /// it (an `Error`, and a close when the refusal is final).
    pub(super) async fn on_hello(&mut self, hello: Hello) {
        if self.tenant.is_some() {
            return self
                .reject(
                    Subject::Frame,
                    u32::from(voxterm_protocol::kind::HELLO),
                    ErrorCode::UnexpectedMessage,
                    "Hello was already received",
                )
                .await;
        }
        if hello.version != PROTOCOL_VERSION {
            return self
                .send_error(
                    None,
                    ErrorCode::UnsupportedVersion,
                    format!("protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}", hello.version),
                )
                .await;
        }
        let ip = self.peer.ip().to_canonical();
        if let Some(wait) = auth::must_wait(&self.ctx, ip) {
            return self.refuse_throttled(ip, wait).await;
        }
        let grant = match self.authenticate(&hello) {
            Ok(g) => g,
            Err((kind, why)) => {
                if why == HELLO_UNKNOWN_TOKEN {
                    auth::failed(&self.ctx, ip);
                }
                return self.refuse_auth(kind, why).await;
            }
        };
        let tenant = grant.tenant.clone();
        if !valid_name(&tenant) {
            return self
                .send_error(
                    None,
                    ErrorCode::Unauthorized,
                    "tenant names are 1-64 characters of [A-Za-z0-9._-], not . or ..",
                )
                .await;
        }
        if !self.take_tenant_slot(&tenant).await {
            return;
        }
        self.tenant_open = self.ctx.security.tenant_open.acquire(&tenant);
        self.grant = Some(grant);
        self.welcome(&hello, tenant).await;
    }

    /// The tenant this `Hello` may act for, and when its token expires. Without
    /// tokens: the one it names (or `default`). With tokens: the token's (from the
    /// headers or `Hello.token`, which must agree); a `Hello.tenant` must then match it.
    fn authenticate(&self, hello: &Hello) -> Result<Grant, (Refusal, &'static str)> {
        let Some(tokens) = &self.ctx.security.tokens else {
            return Ok(Grant::unauthenticated(
                hello.tenant.as_deref().unwrap_or("default").into(),
            ));
        };
        let unauthorized = |why| Err((Refusal::Unauthorized, why));
        let from_hello = match hello.token.as_deref() {
            None => None,
            Some(t) => match tokens.check(t, SystemTime::now()) {
                TokenCheck::Expired(_) => return Err((Refusal::TokenExpired, "token expired")),
                TokenCheck::Unknown => return unauthorized(HELLO_UNKNOWN_TOKEN),
                valid => valid.grant(),
            },
        };
        let grant = match (self.header_tenant.clone(), from_hello) {
            (Some(h), Some(t)) => match h.with(t) {
                Some(both) => both,
                None => {
                    return unauthorized(
                        "the token in Hello is for another tenant than the header token",
                    )
                }
            },
            (Some(found), None) | (None, Some(found)) => found,
            (None, None) => return unauthorized(
                "a token is required (Authorization: Bearer, a `bearer.<token>` subprotocol, or Hello.token)",
            ),
        };
        match hello.tenant.as_deref() {
            Some(named) if *named != *grant.tenant => {
                unauthorized("Hello.tenant does not match the token's tenant")
            }
            _ => Ok(grant),
        }
    }

    /// The tenant's connection slot, unless the upgrade already took it (the
    /// tenant was known from the headers). `false`: the tenant is at its cap;
    /// the connection has been told and is closing.
    async fn take_tenant_slot(&mut self, tenant: &Arc<str>) -> bool {
        if self.tenant_slot.is_some() {
            return true;
        }
        let ctx = self.ctx.clone();
        let Some(slots) = &ctx.security.tenant_connections else {
            return true;
        };
        if let Some(slot) = slots.acquire(tenant) {
            self.tenant_slot = Some(slot);
            return true;
        }
        self.engine.metrics.refused(Refusal::TenantConnections);
        let message = format!(
            "tenant {tenant} already has its maximum of {} connections",
            slots.max()
        );
        self.send_error(None, ErrorCode::QuotaExceeded, message)
            .await;
        self.close(CloseCode::Again, "too many connections").await;
        self.closing = true;
        false
    }

    /// Answers an accepted `Hello`. Both encodings and all compressions are
    /// supported, so the client's first choice of each is taken. `Welcome`
    /// and every frame after it, both ways, use the chosen one.
    async fn welcome(&mut self, hello: &Hello, tenant: Arc<str>) {
        let encoding = hello
            .encodings
            .first()
            .copied()
            .unwrap_or(Encoding::Bincode);
        let compression = hello
            .compression
            .first()
            .copied()
            .unwrap_or(Compression::None);
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            server: concat!("voxterm/", env!("CARGO_PKG_VERSION")).to_owned(),
            encoding,
            compression,
            limits: self.limits.clone(),
            tenant: tenant.to_string(),
            connection: self.id,
        };
        self.tenant = Some(tenant);
        // Switched before `Welcome`, so that `Welcome` itself goes out in the
        // chosen encoding: a client that speaks only JSON can read it (every
        // frame says its own encoding in its flags, so a client that reads
        // both is not disturbed).
        let _ = self
            .shared
            .out
            .send(Outbound::Configure(encoding, compression))
            .await;
        self.codec.set_encoding(encoding);
        self.codec.set_compression(compression);
        self.send(Message::Welcome(Box::new(welcome))).await;
    }

    /// An address still waiting after failed authentications:
    /// `Error{RateLimited}` with the wait, then close with 1008.
    async fn refuse_throttled(&mut self, ip: IpAddr, wait: Duration) {
        self.engine.metrics.refused(Refusal::AuthThrottled);
        let secs = auth::retry_secs(wait);
        let message = format!(
            "too many failed authentications from {ip}: retry in {secs} s (retry_after_ms={})",
            secs * 1000
        );
        self.send_error(None, ErrorCode::RateLimited, message).await;
        self.close(CloseCode::Policy, "too many failed authentications")
            .await;
        self.closing = true;
    }

    /// Failed authentication: `Error{Unauthorized}`, then close with 1008.
    async fn refuse_auth(&mut self, kind: Refusal, why: &'static str) {
        self.engine.metrics.refused(kind);
        tracing::info!(
            conn = self.id,
            reason = why,
            kind = kind.as_str(),
            "Hello refused"
        );
        self.send_error(None, ErrorCode::Unauthorized, why).await;
        self.close(CloseCode::Policy, "unauthorized").await;
        self.closing = true;
    }

    /// The tokens file was reloaded: the connection goes on if its tokens
    /// still hold (its expiry clock is then re-armed from them, as the expiry
    /// may have moved), and ends otherwise.
    pub(super) async fn on_tokens_reloaded(&mut self, timers: &mut Timers) -> Step {
        if !self.recheck_grant().await {
            return Step::Break(Ending::Orderly);
        }
        timers.disarm_expiry();
        Step::Continue(())
    }

    /// After a tokens reload: whether the tokens this connection authenticated
    /// with still hold. `false` when one was removed, moved to another tenant or
    /// expired; the connection has then been told (`Error{Unauthorized}`, 1008).
    async fn recheck_grant(&mut self) -> bool {
        let (Some(store), Some(grant)) = (&self.ctx.security.tokens, &mut self.grant) else {
            return true;
        };
        let (kind, why) = match store.recheck(grant, SystemTime::now()) {
            Ok(expires) => {
                grant.expires = expires;
                return true;
            }
            Err(Revoked::Removed) => (Refusal::TokenRevoked, "token revoked"),
            Err(Revoked::Expired) => (Refusal::TokenExpired, "token expired"),
        };
        self.engine.metrics.refused(kind);
        tracing::info!(conn = self.id, tenant = %grant.tenant, reason = why, "tokens reloaded: closing");
        self.reject(Subject::Connection, 0, ErrorCode::Unauthorized, why)
            .await;
        self.close(CloseCode::Policy, why).await;
        false
    }
}
