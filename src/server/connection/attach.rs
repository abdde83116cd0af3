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
//! An `Attach` for a request this server does not hold — gone after the
//! grace, another tenant's, or one that ran on another engine — gets `Error
//! { RequestLost }`: the same answer in every case, so that it tells nobody
//! whether another tenant has such a request.

use super::Connection;
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
        let Some(held) = detached.take(&tenant, attach.connection, request) else {
            self.engine.metrics.reattach(false);
            let message = format!(
                "request {request} of connection {} is not held here: it ended or was killed more than the detach grace ago, or ran on another engine",
                attach.connection
            );
            return self
                .send_error(Some(request), ErrorCode::RequestLost, message)
                .await;
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
            detached
                .put_back(&tenant, attach.connection, request, held)
                .await;
            return self
                .reject(
                    Subject::Request,
                    request,
                    ErrorCode::InvalidArgument,
                    message,
                )
                .await;
        }
        self.engine.metrics.reattach(true);
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
