//! Faults for the `chaos` scenario, on connections of their own so that the
//! measured users see only the side effects (which is the point): abrupt
//! disconnects in the middle of commands, malformed frames, slow readers that stop
//! reading, and reconnect storms.

use crate::conn::{connect_ws, handshake, Target};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use voxterm_protocol::{CacheMode, Exec, Message, OpenSession, Priority};

/// What the chaos agent did and saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosSummary {
    /// Connections dropped with commands in flight.
    pub abrupt_disconnects: u64,
    /// Malformed messages sent.
    pub malformed_sent: u64,
    /// … answered with an `Error` frame or a close code (not silence).
    pub malformed_answered: u64,
    /// Slow-reader connections (stopped reading with output pending).
    pub slow_readers: u64,
    /// Reconnect storms.
    pub reconnect_storms: u64,
    /// Connections opened by storms.
    pub storm_connections: u64,
    /// Storm connections that failed.
    pub storm_failures: u64,
    /// Faults that could not be injected, and why.
    pub skipped: Vec<String>,
}

fn exec(request: u32, session: u32, command: &str) -> Message {
    Message::Exec(Exec {
        request,
        session,
        command: command.to_owned(),
        priority: Priority::Normal,
        timeout_ms: 0,
        cache: CacheMode::Default,
    })
}

/// Injects faults in a loop until `until` or `stop`.
pub async fn run(t: Target, root: String, until: Instant, stop: Arc<AtomicBool>) -> ChaosSummary {
    let mut s = ChaosSummary {
        skipped: vec![
            "Redis restart: this load tester did not start a Redis (the engine under test has no L3 switch for it), so there is none to restart".into(),
        ],
        ..ChaosSummary::default()
    };
    let mut round = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        match round % 4 {
            0 => abrupt(&t, &root, &mut s).await,
            1 => malformed(&t, &mut s).await,
            2 => slow_reader(&t, &root, &mut s).await,
            _ => storm(&t, &mut s).await,
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    s
}

async fn abrupt(t: &Target, root: &str, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    let Ok(mut codec) = handshake(&mut ws, t, "lt-chaos").await else {
        return;
    };
    let mut buf = Vec::new();
    let cd = format!("cd {}", crate::profile::shell_quote(root));
    for (i, m) in [
        exec(1, 0, &cd),
        exec(2, 0, "sleep 5"),
        exec(3, 0, "cat logs/app.log"),
        exec(4, 0, "sleep 3; echo late"),
    ]
    .iter()
    .enumerate()
    {
        let _ = i;
        let _ = codec.encode(m, &mut buf);
    }
    let _ = ws.send(WsMessage::Binary(buf.into())).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Dropped without a close frame: the TCP connection just goes away.
    drop(ws);
    s.abrupt_disconnects += 1;
}

async fn malformed(t: &Target, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    if handshake(&mut ws, t, "lt-chaos").await.is_err() {
        return;
    }
    let garbage: [&[u8]; 3] = [
        &[0xff, 0x10, 0x00, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5],
        &[0x01, 0x10, 0x00, 0x00, 0x00, 0x40, 0xde, 0xad],
        &[0x01, 0x7e, 0x00, 0x00, 0x00, 0x01, 0x00],
    ];
    let pick = fastrand::usize(0..garbage.len());
    s.malformed_sent += 1;
    if ws
        .send(WsMessage::Binary(garbage[pick].to_vec().into()))
        .await
        .is_err()
    {
        return;
    }
    let answered = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    if matches!(
        answered,
        Ok(Some(Ok(WsMessage::Binary(_) | WsMessage::Close(_)))) | Ok(None)
    ) {
        s.malformed_answered += 1;
    }
}

async fn slow_reader(t: &Target, root: &str, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    let Ok(mut codec) = handshake(&mut ws, t, "lt-chaos-slow").await else {
        return;
    };
    let mut buf = Vec::new();
    let cd = format!("cd {}", crate::profile::shell_quote(root));
    let _ = codec.encode(&exec(1, 0, &cd), &mut buf);
    for i in 0..20 {
        let _ = codec.encode(&exec(2 + i, 0, "cat logs/app.log"), &mut buf);
    }
    let _ = ws.send(WsMessage::Binary(buf.into())).await;
    s.slow_readers += 1;
    // Never read: the server's writer for this connection must back off alone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(ws);
}

async fn storm(t: &Target, s: &mut ChaosSummary) {
    s.reconnect_storms += 1;
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect_ws(&t, None).await.ok()?;
            let mut codec = handshake(&mut ws, &t, "lt-storm").await.ok()?;
            let mut buf = Vec::new();
            let open = Message::OpenSession(OpenSession {
                session: 1,
                name: format!("storm{i}"),
            });
            codec.encode(&open, &mut buf).ok()?;
            codec.encode(&exec(1, 1, "echo back"), &mut buf).ok()?;
            ws.send(WsMessage::Binary(buf.into())).await.ok()?;
            tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(m)) = ws.next().await {
                    if let WsMessage::Binary(b) = m {
                        if codec
                            .decode(&b)
                            .any(|f| matches!(f, Ok(Message::Exit(_)) | Ok(Message::Error(_))))
                        {
                            return Some(());
                        }
                    }
                }
                None
            })
            .await
            .ok()??;
            let _ = ws.close(None).await;
            Some(())
        }));
    }
    for task in tasks {
        s.storm_connections += 1;
        if !matches!(task.await, Ok(Some(()))) {
            s.storm_failures += 1;
        }
    }
}
