//! GraphQL over WebSocket on `GET /graphql`: `graphql-transport-ws` (the graphql-ws library's
//! protocol) and the legacy `graphql-ws` (subscriptions-transport-ws, older Apollo clients).
//!
//! Access is decided per operation at the time it starts, exactly as the same request over HTTP
//! would be: the connection keeps the token it was initialised with, never the principal, and
//! resolves it again for every `subscribe`/`start`. While the connection lasts, its token is
//! watched: the log (through the subscription stream, in log order) and the read model (woken
//! by the projections, polled twice a second, and at the credential's expiry) end the
//! connection with 4403 once the token stops being valid, and a lowered role narrows running
//! subscriptions at once.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use futures::StreamExt;
use juniper::{DefaultScalarValue, ExecutionOutput, InputValue, OperationType, ScalarValue as _, Variables};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use unity_projections::identity::TokenRefusal;

use crate::{
    auth::{authenticate, refusal, LiveAccess},
    errors::Code,
    http::add_codes,
    schema::Context,
    ApiState,
};

/// The subprotocols offered, in order of preference.
pub const PROTOCOLS: &[&str] = &[TRANSPORT_WS, LEGACY_WS];
const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";

/// Operations one connection may run at once.
const MAX_OPERATIONS: usize = 16;
/// How often a connection's token is checked against the read model when nothing wakes it.
const ACCESS_POLL: Duration = Duration::from_millis(500);
/// Keep-alive: WebSocket pings (graphql-transport-ws) or `ka` messages (legacy).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    TransportWs,
    Legacy,
}

impl Protocol {
    /// The protocol the handshake agreed on. A client that names none gets graphql-transport-ws.
    pub fn negotiated(response: &actix_web::HttpResponse) -> Protocol {
        let chosen = response.headers().get(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL);
        match chosen.and_then(|v| v.to_str().ok()) {
            Some(LEGACY_WS) => Protocol::Legacy,
            _ => Protocol::TransportWs,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationPayload {
    query: String,
    #[serde(default)]
    variables: Option<Variables<DefaultScalarValue>>,
    #[serde(default)]
    operation_name: Option<String>,
}

/// A client message of either protocol (`subscribe`/`start` and `complete`/`stop` are the same
/// request under two names; graphql-transport-ws' ping and pong have no legacy equivalent).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Variables<DefaultScalarValue>>,
    },
    Ping {},
    Pong {},
    #[serde(alias = "start")]
    Subscribe {
        id: String,
        payload: OperationPayload,
    },
    #[serde(alias = "stop")]
    Complete {
        id: String,
    },
    ConnectionTerminate {},
}

/// What an operation reports back to its connection.
enum Reply {
    Output(String, ExecutionOutput<DefaultScalarValue>),
    Error(String, Value),
    Done(String),
}

/// Serves one upgraded connection until either side closes it.
pub async fn serve(
    state: Arc<ApiState>,
    mut session: Session,
    mut messages: AggregatedMessageStream,
    protocol: Protocol,
    source: Arc<str>,
) {
    let mut connection = Connection {
        state,
        protocol,
        source,
        token: None,
        access: None,
        initialised: false,
        operations: HashMap::new(),
        replies: mpsc::channel(64),
        watch: None,
    };
    let init_deadline = tokio::time::Instant::now() + connection.state.config.ws_init_timeout;
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let close = loop {
        let access = connection.access.clone();
        let access_ended = async move {
            match access {
                Some(access) => access.ended().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = messages.next() => match connection.receive(message, &mut session).await {
                Step::Continue => {}
                Step::Close(code, reason) => break Some((code, reason)),
                Step::Gone => break None,
            },
            Some(reply) = connection.replies.1.recv() => {
                if connection.access.as_ref().is_some_and(|a| a.role().is_none()) {
                    // The access ended while this reply was on its way: nothing more goes out
                    // (the close follows from `access_ended`).
                    continue;
                }
                if session.text(connection.encode(reply)).await.is_err() {
                    break None;
                }
            }
            reason = access_ended => break Some((4403, format!("Forbidden: {reason}"))),
            _ = tokio::time::sleep_until(init_deadline), if !connection.initialised => {
                break Some((4408, "Connection initialisation timeout".into()));
            }
            _ = keep_alive.tick() => {
                let sent = match protocol {
                    Protocol::TransportWs => session.ping(b"").await,
                    Protocol::Legacy if connection.initialised => session.text(r#"{"type":"ka"}"#).await,
                    Protocol::Legacy => Ok(()),
                };
                if sent.is_err() {
                    break None;
                }
            }
        }
    };
    for (_, operation) in connection.operations.drain() {
        operation.abort();
    }
    if let Some(watch) = connection.watch.take() {
        watch.abort();
    }
    if let Some((code, reason)) = close {
        let reason = CloseReason { code: CloseCode::Other(code), description: Some(reason) };
        let _ = session.close(Some(reason)).await;
    }
}

enum Step {
    Continue,
    Close(u16, String),
    /// The peer went away or the transport failed: nothing left to tell it.
    Gone,
}

struct Connection {
    state: Arc<ApiState>,
    protocol: Protocol,
    source: Arc<str>,
    /// The token from `connection_init`, resolved again for every operation.
    token: Option<String>,
    access: Option<Arc<LiveAccess>>,
    initialised: bool,
    operations: HashMap<String, tokio::task::JoinHandle<()>>,
    replies: (mpsc::Sender<Reply>, mpsc::Receiver<Reply>),
    watch: Option<tokio::task::JoinHandle<()>>,
}

impl Connection {
    async fn receive(
        &mut self,
        message: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
        session: &mut Session,
    ) -> Step {
        let text = match message {
            None | Some(Ok(AggregatedMessage::Close(_))) => return Step::Gone,
            Some(Ok(AggregatedMessage::Text(text))) => text.to_string(),
            Some(Ok(AggregatedMessage::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                return if session.pong(&bytes).await.is_ok() { Step::Continue } else { Step::Gone };
            }
            Some(Ok(AggregatedMessage::Pong(_))) => return Step::Continue,
            Some(Err(actix_ws::ProtocolError::Overflow)) => {
                self.state.metrics.rejected_documents.inc();
                let max = self.state.config.limits.max_ws_message_bytes;
                return Step::Close(1009, format!("a message exceeds the limit of {max} bytes"));
            }
            Some(Err(_)) => return Step::Gone,
        };
        let message = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(message) => message,
            Err(e) => return Step::Close(4400, format!("Invalid message: {e}")),
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.initialised {
                    return Step::Close(4429, "Too many initialisation requests".into());
                }
                self.initialise(payload.unwrap_or_default(), session).await
            }
            ClientMessage::Ping {} if self.protocol == Protocol::TransportWs => {
                if session.text(r#"{"type":"pong"}"#).await.is_err() {
                    return Step::Gone;
                }
                Step::Continue
            }
            ClientMessage::Pong {} if self.protocol == Protocol::TransportWs => Step::Continue,
            ClientMessage::Subscribe { id, payload } => {
                if !self.initialised {
                    return Step::Close(4401, "Unauthorized".into());
                }
                self.start(id, payload).await
            }
            ClientMessage::Complete { id } => {
                if let Some(operation) = self.operations.remove(&id) {
                    operation.abort();
                    if self.protocol == Protocol::Legacy {
                        let _ = session.text(json!({ "type": "complete", "id": id }).to_string()).await;
                    }
                }
                Step::Continue
            }
            ClientMessage::ConnectionTerminate {} => Step::Close(1000, "Normal closure".into()),
            ClientMessage::Ping {} | ClientMessage::Pong {} => {
                Step::Close(4400, "Invalid message: ping and pong belong to graphql-transport-ws".into())
            }
        }
    }

    async fn initialise(&mut self, params: Variables<DefaultScalarValue>, session: &mut Session) -> Step {
        // {"Authorization": "Bearer …"} or {"token": "…"}; no token is allowed (login is public),
        // and every field that needs one will say UNAUTHENTICATED.
        let text =
            |key: &str| params.get(key).and_then(InputValue::as_scalar).and_then(|s| s.try_as_str()).map(str::to_owned);
        let token = text("Authorization").or_else(|| text("authorization")).or_else(|| text("token"));
        match authenticate(self.state.store.pool(), token.as_deref()).await {
            Ok(Some(principal)) => {
                let access = Arc::new(LiveAccess::new(principal));
                self.watch = Some(tokio::spawn(watch_access(
                    self.state.clone(),
                    token.clone().unwrap_or_default(),
                    access.clone(),
                )));
                self.access = Some(access);
            }
            Ok(None) => {}
            Err(e) => {
                if self.protocol == Protocol::Legacy {
                    let error = json!({ "type": "connection_error", "payload": { "message": e.to_string() } });
                    let _ = session.text(error.to_string()).await;
                }
                return Step::Close(4403, format!("Forbidden: {e}"));
            }
        }
        self.token = token;
        self.initialised = true;
        if session.text(r#"{"type":"connection_ack"}"#).await.is_err() {
            return Step::Gone;
        }
        if self.protocol == Protocol::Legacy && session.text(r#"{"type":"ka"}"#).await.is_err() {
            return Step::Gone;
        }
        Step::Continue
    }

    /// Starts one operation, authorised against the token's state now.
    async fn start(&mut self, id: String, payload: OperationPayload) -> Step {
        self.operations.retain(|_, operation| !operation.is_finished());
        if self.operations.contains_key(&id) {
            return Step::Close(4409, format!("Subscriber for {id} already exists"));
        }
        if self.operations.len() >= MAX_OPERATIONS {
            let error = json!([{ "message": format!("at most {MAX_OPERATIONS} operations may run at once on one connection"),
                                 "extensions": { "code": Code::BadUserInput.as_str() } }]);
            let _ = self.replies.0.send(Reply::Error(id, error)).await;
            return Step::Continue;
        }
        let principal = match authenticate(self.state.store.pool(), self.token.as_deref()).await {
            Ok(principal) => principal,
            Err(e) if e.code == Code::Unauthenticated => {
                let Some(access) = &self.access else { return Step::Close(4403, format!("Forbidden: {e}")) };
                // The close follows from the access ending, with its reason.
                match refusal(self.state.store.pool(), self.token.as_deref()).await {
                    Some(why) => access.refuse(why),
                    None => access.end("the token is no longer valid"),
                }
                return Step::Continue;
            }
            Err(e) => {
                let error = json!([{ "message": e.to_string(), "extensions": { "code": e.code.as_str() } }]);
                let _ = self.replies.0.send(Reply::Error(id, error)).await;
                return Step::Continue;
            }
        };
        if let (Some(access), Some(now)) = (&self.access, &principal) {
            access.narrow(now.role);
        }
        let context = Context {
            state: self.state.clone(),
            principal,
            auth_error: None,
            source: self.source.clone(),
            access: self.access.clone(),
        };
        let replies = self.replies.0.clone();
        let task = tokio::spawn(run_operation(id.clone(), payload, context, replies));
        self.operations.insert(id, task);
        Step::Continue
    }

    fn encode(&mut self, reply: Reply) -> String {
        let (next, error) = match self.protocol {
            Protocol::TransportWs => ("next", "error"),
            Protocol::Legacy => ("data", "error"),
        };
        match reply {
            Reply::Output(id, output) => {
                let mut payload = serde_json::to_value(&output).unwrap_or_else(|_| json!({ "data": null }));
                if output.errors.is_empty() {
                    if let Value::Object(fields) = &mut payload {
                        fields.remove("errors");
                    }
                } else {
                    add_codes(&mut payload["errors"], Code::Internal);
                }
                json!({ "type": next, "id": id, "payload": payload }).to_string()
            }
            Reply::Error(id, mut errors) => {
                self.operations.remove(&id);
                add_codes(&mut errors, Code::BadUserInput);
                // graphql-transport-ws sends the list; the legacy protocol sent one error object.
                let payload = match self.protocol {
                    Protocol::TransportWs => errors,
                    Protocol::Legacy => errors.get(0).cloned().unwrap_or(Value::Null),
                };
                json!({ "type": error, "id": id, "payload": payload }).to_string()
            }
            Reply::Done(id) => {
                self.operations.remove(&id);
                json!({ "type": "complete", "id": id }).to_string()
            }
        }
    }
}

/// Executes one operation to its end: a query or mutation answers once, a subscription for
/// every event until its stream ends.
async fn run_operation(id: String, payload: OperationPayload, context: Context, replies: mpsc::Sender<Reply>) {
    let state = context.state.clone();
    let variables = payload.variables.unwrap_or_default();
    let operation = match state.schemas.validate(&payload.query, payload.operation_name.as_deref()) {
        Ok(operation) => operation,
        Err(e) => {
            state.metrics.rejected_documents.inc();
            let _ = replies.send(Reply::Error(id, serde_json::to_value(&e).unwrap_or_else(|_| json!([])))).await;
            return;
        }
    };
    if operation.operation_type() != OperationType::Subscription {
        let reply = match operation.execute(&variables, &context).await {
            Ok((data, errors)) => Reply::Output(id.clone(), ExecutionOutput { data, errors }),
            Err(e) => Reply::Error(id.clone(), serde_json::to_value(&e).unwrap_or_else(|_| json!([]))),
        };
        let failed = matches!(reply, Reply::Error(..));
        if replies.send(reply).await.is_ok() && !failed {
            let _ = replies.send(Reply::Done(id)).await;
        }
        return;
    }
    let (stream, errors) = match operation.resolve_into_stream(&variables, &context).await {
        Ok(resolved) => resolved,
        Err(e) => {
            let _ = replies.send(Reply::Error(id, serde_json::to_value(&e).unwrap_or_else(|_| json!([])))).await;
            return;
        }
    };
    let mut outputs = juniper_subscriptions::Connection::from_stream(stream, errors);
    while let Some(output) = outputs.next().await {
        if replies.send(Reply::Output(id.clone(), output)).await.is_err() {
            return;
        }
    }
    let _ = replies.send(Reply::Done(id)).await;
}

/// Watches a connection's token in the read model: ends `access` once the token is no longer
/// valid (checked when the projections move, every [`ACCESS_POLL`] and at the credential's
/// expiry), and applies role changes to it.
async fn watch_access(state: Arc<ApiState>, token: String, access: Arc<LiveAccess>) {
    let mut progress = state.store.wakeup().subscribe_progress();
    loop {
        let expiry = access.principal().expires_at.map(|at| {
            let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let expired = async move {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = progress.changed() => {}
            _ = tokio::time::sleep(ACCESS_POLL) => {}
            _ = expired => {
                access.refuse(TokenRefusal::Expired);
                return;
            }
        }
        match authenticate(state.store.pool(), Some(&token)).await {
            Ok(Some(principal)) => access.narrow(principal.role),
            Ok(None) => {}
            Err(e) if e.code == Code::Unauthenticated => {
                // Say why, in the words the log's event would have used.
                match refusal(state.store.pool(), Some(&token)).await {
                    Some(why) => access.refuse(why),
                    None => access.end("the token is no longer valid"),
                }
                return;
            }
            // The read model is unreachable: keep the access as it was and look again.
            Err(e) => tracing::warn!(error = %e, "Cannot check a WebSocket connection's token; keeping it open."),
        }
        if access.role().is_none() {
            return;
        }
        // Under a stream of writes the projections move constantly: one check per tenth of a
        // second per connection is enough.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
