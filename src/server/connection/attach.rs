//! `Attach`: a new connection takes over a request of one that dropped.
//!
//! The request must be held (`detached`) for this tenant under the connection
//! and id the client names; the session handle the client names must be bound
//! here to the session the request runs in; and `after_seq` must be a place
//! its kept output can resume from. Then this connection gets a `Notice
//! { Reattached }`, the kept `Output`s after `after_seq`, the terminal frame
//! if it already came, and everything after, exactly once; and the request is
//! this connection's (`Cancel`, `Input`, `Resize` reach it by its id).
//!
//! An `Attach` naming a connection of the tenant that is still open here
//! ends that connection as lost first (its client has left it; the server
//! had not noticed yet). One naming a request its connection, dropped within
//! the grace, never received gets `Error { NotReceived }`: it did not run,
//! and the client sends it again. One for a request this server does not
//! hold — gone after the grace, another tenant's, or one that ran on another
//! engine — gets `Error { RequestLost }`: the same answer in every case, so
//! that it tells nobody whether another tenant has such a request
//! (`detached` keeps its records per tenant).

use super::Connection;
use crate::server::detached::Found;
use crate::server::replay::Home;
use voxterm_protocol::{Attach, ErrorCode, Message, Notice, NoticeKind, Subject};

impl Connection {
    /// `Attach`: see the module's documentation.
    pub(super) async fn on_attach(&mut self, attach: Attach) {
        let request = attach.request;
        let Some(acks) = self.shared.acks().cloned() else {
            return self
                .send_error(
                    Some(request),
                    ErrorCode::InvalidArgument,
                    "Attach needs re-attach on this connection: send Configure { reattach: true } first",
                )
                .await;
        };
        let Some(tenant) = self.tenant.clone() else {
            return;
        };
        if self.shared.in_flight().contains_key(&request) {
            let message = format!("request {request} is already in flight on this connection");
            return self
                .reject(
                    Subject::Request,
                    request,
                    ErrorCode::DuplicateRequest,
                    message,
                )
                .await;
        }
        let session = match self.session(attach.session).await {
            Ok(session) => session,
            Err((code, message)) => return self.send_error(Some(request), code, message).await,
        };
        let detached = self.ctx.detached.clone();
        let held = match detached
            .find(&tenant, attach.connection, request, self.id)
            .await
        {
            Found::Held(held) => held,
            refused => {
                let (kind, code, why) = match refused {
                    Found::NotReceived => (
                        "not_received",
                        ErrorCode::NotReceived,
                        "never reached this server before it dropped: it did not run; send it again",
                    ),
                    _ => (
                        "lost",
                        ErrorCode::RequestLost,
                        "is not held here: it ended or was killed more than the detach grace ago, or ran on another engine",
                    ),
                };
                self.engine.metrics.reattach(kind);
                tracing::debug!(conn = self.id, %tenant, connection = attach.connection, request, kind, "attach refused");
                let message = format!(
                    "request {request} of connection {} {why}",
                    attach.connection
                );
                return self.send_error(Some(request), code, message).await;
            }
        };
        // Either refusal leaves the request held for a better Attach.
        let here = (session.tenant().clone(), Box::<str>::from(session.name()));
        let refused = if held.route.session != here {
            Some(format!(
                "session handle {} is bound to session {:?}; request {request} runs in session {:?}",
                attach.session, here.1, held.route.session.1
            ))
        } else {
            held.route
                .check(attach.after_seq)
                .await
                .err()
                .map(|why| why.to_string())
        };
        if let Some(message) = refused {
            detached.put_back(&tenant, held).await;
            return self
                .reject(
                    Subject::Request,
                    request,
                    ErrorCode::InvalidArgument,
                    message,
                )
                .await;
        }
        self.engine.metrics.reattach("attached");
        self.send(Message::Notice(Notice {
            request,
            kind: NoticeKind::Reattached,
            message: "reconnected: the output continues where it stopped".to_owned(),
        }))
        .await;
        acks.adopt(held.route.clone());
        let home = Home {
            shared: self.shared.clone(),
            acks,
        };
        held.route
            .attach(home, attach.after_seq, held.in_flight)
            .await;
    }
}
