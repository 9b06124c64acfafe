//! The HTTP surface: /graphql (POST, and GET upgrading to graphql-transport-ws), /graphiql,
//! /healthz, /readyz, /metrics; one log line and one metrics sample per request.

use std::{sync::Arc, time::Instant};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::Next,
    web, HttpRequest, HttpResponse,
};
use futures::{SinkExt, StreamExt};
use juniper::{http::GraphQLRequest, DefaultScalarValue, GraphQLError, InputValue, ScalarValue, Variables};
use juniper_graphql_ws::{
    graphql_transport_ws::{ClientMessage, Connection, Input, Output, ServerMessage},
    ArcSchema, ConnectionConfig,
};
use serde_json::{json, Value};

use crate::{
    auth::authenticate,
    errors::{ApiError, Code},
    schema::Context,
    ApiState,
};

type State = web::Data<Arc<ApiState>>;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/graphql", web::post().to(graphql_post))
        .route("/graphql", web::get().to(graphql_get))
        .route("/graphiql", web::get().to(graphiql))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/ca/{id}/crl", web::get().to(crl))
        .route("/.well-known/acme-challenge/{token}", web::get().to(acme_challenge))
        .default_service(web::to(|| async {
            error_response(StatusCode::NOT_FOUND, Code::NotFound, "no such endpoint")
        }));
}

/// One log line and one metrics sample per request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<State>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state.metrics.observe_request(&method, &route, status, elapsed.as_secs_f64());
    }
    tracing::info!(
        target: "unity::http",
        method = %method,
        path = %response.request().path(),
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "Request served."
    );
    Ok(response)
}

fn error_response(status: StatusCode, code: Code, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] }))
}

/// Gives every error without a code one: requests refused before execution (parse and validation
/// errors) are the caller's; anything else without a code is ours.
fn add_codes(errors: &mut Value, code: Code) {
    if let Value::Array(errors) = errors {
        for error in errors {
            if let Value::Object(fields) = error {
                let extensions = fields.entry("extensions").or_insert_with(|| json!({}));
                if let Value::Object(ext) = extensions {
                    ext.entry("code").or_insert_with(|| code.as_str().into());
                }
            }
        }
    }
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BadUserInput,
            &format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, &e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn request_context(state: &Arc<ApiState>, req: &HttpRequest) -> Context {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let (principal, auth_error) = match authenticate(state.store.pool(), header).await {
        Ok(principal) => (principal, None),
        Err(e) => (None, Some(e)),
    };
    Context { state: state.clone(), principal, auth_error, source: source_address(req).into() }
}

fn source_address(req: &HttpRequest) -> String {
    req.peer_addr().map_or_else(|| "unknown".into(), |a| a.ip().to_string())
}

async fn graphql_post(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let limit = state.config.limits.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let body = match declared {
        Some(n) if n > limit => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BadUserInput,
            &format!("the request body exceeds the limit of {limit} bytes"),
        )),
        _ => read_body(payload, limit).await,
    };
    let body = match body {
        Ok(body) => body,
        Err(response) => {
            state.metrics.rejected_documents.inc();
            return response;
        }
    };
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            state.metrics.rejected_documents.inc();
            let message =
                format!("the body is not a GraphQL request: expected JSON {{\"query\": …, \"variables\": …}} ({e})");
            return error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, &message);
        }
    };
    let context = request_context(&state, &req).await;
    let operation = request.operation_name.clone();
    let response =
        juniper::execute(&request.query, operation.as_deref(), &state.schema, &request.variables(), &context).await;
    let (status, mut body) = match response {
        Ok((data, errors)) => {
            let mut body = json!({ "data": data });
            if !errors.is_empty() {
                let mut errors = serde_json::to_value(&errors).unwrap_or_else(|_| json!([]));
                add_codes(&mut errors, Code::Internal);
                body["errors"] = errors;
            }
            (StatusCode::OK, body)
        }
        Err(e) => {
            if matches!(e, GraphQLError::ParseError(_)) {
                state.metrics.rejected_documents.inc();
            }
            (StatusCode::BAD_REQUEST, json!({ "errors": serde_json::to_value(&e).unwrap_or_else(|_| json!([])) }))
        }
    };
    if status != StatusCode::OK {
        let errors = &mut body["errors"];
        if !errors.is_array() {
            *errors = json!([{ "message": "the request was refused" }]);
        }
        add_codes(errors, Code::BadUserInput);
    }
    HttpResponse::build(status).json(body)
}

async fn graphql_get(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, actix_web::Error> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            Code::BadUserInput,
            "send queries with POST; GET /graphql upgrades to a WebSocket (graphql-transport-ws) for subscriptions",
        ));
    }
    let (response, session, messages) = actix_ws::handle_with_protocols(&req, payload, &["graphql-transport-ws"])?;
    let max = state.config.limits.max_ws_message_bytes;
    let messages = messages.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    let source: Arc<str> = source_address(&req).into();
    let schema = ArcSchema(state.schema.clone());
    let state = state.get_ref().clone();
    let init = {
        let state = state.clone();
        move |params: Variables<DefaultScalarValue>| async move {
            // {"Authorization": "Bearer …"} or {"token": "…"}; no token is allowed, and every
            // field that needs one will say UNAUTHENTICATED.
            let text = |key: &str| {
                params.get(key).and_then(InputValue::as_scalar).and_then(|s| s.try_as_str()).map(str::to_owned)
            };
            let token = text("Authorization").or_else(|| text("authorization")).or_else(|| text("token"));
            let principal = authenticate(state.store.pool(), token.as_deref()).await?;
            let context = Context { state, principal, auth_error: None, source };
            Ok::<_, ApiError>(
                ConnectionConfig::new(context)
                    .with_max_in_flight_operations(16)
                    .with_keep_alive_interval(std::time::Duration::from_secs(15)),
            )
        }
    };
    let (mut to_connection, mut from_connection) = Connection::new(schema, init).split();
    actix_web::rt::spawn(async move {
        let closer = session.clone();
        let mut pong = session.clone();
        let mut messages = messages;
        let input = async move {
            while let Some(message) = messages.next().await {
                let text = match message {
                    Ok(actix_ws::AggregatedMessage::Text(text)) => text.to_string(),
                    Ok(actix_ws::AggregatedMessage::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                    Ok(actix_ws::AggregatedMessage::Ping(bytes)) => {
                        let _ = pong.pong(&bytes).await;
                        continue;
                    }
                    Ok(actix_ws::AggregatedMessage::Pong(_)) => continue,
                    Ok(actix_ws::AggregatedMessage::Close(_)) => {
                        let _ = to_connection.send(Input::Close).await;
                        return;
                    }
                    Err(actix_ws::ProtocolError::Overflow) => {
                        state.metrics.rejected_documents.inc();
                        let reason = format!("a message exceeds the limit of {max} bytes");
                        let _ = closer
                            .close(Some(actix_ws::CloseReason {
                                code: actix_ws::CloseCode::Size,
                                description: Some(reason),
                            }))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                match serde_json::from_str::<ClientMessage<DefaultScalarValue>>(&text) {
                    Ok(message) => {
                        if to_connection.send(Input::Message(message)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let reason = format!("invalid message: {e}");
                        let _ = closer
                            .close(Some(actix_ws::CloseReason {
                                code: actix_ws::CloseCode::Other(4400),
                                description: Some(reason),
                            }))
                            .await;
                        return;
                    }
                }
            }
        };
        let mut session = session;
        let output = async move {
            while let Some(output) = from_connection.next().await {
                match output {
                    Output::Message(message) => {
                        if session.text(server_message_json(&message)).await.is_err() {
                            return;
                        }
                    }
                    Output::Close { code, message } => {
                        let reason = actix_ws::CloseReason { code: code.into(), description: Some(message) };
                        let _ = session.close(Some(reason)).await;
                        return;
                    }
                }
            }
        };
        futures::future::select(Box::pin(input), Box::pin(output)).await;
    });
    Ok(response)
}

/// A server message as JSON, its errors carrying `extensions.code` like HTTP responses' do.
fn server_message_json<S: ScalarValue>(message: &ServerMessage<S>) -> String {
    let needs_codes = match message {
        ServerMessage::Error { .. } => true,
        ServerMessage::Next { payload, .. } => !payload.errors.is_empty(),
        _ => false,
    };
    if !needs_codes {
        return serde_json::to_string(message).unwrap_or_default();
    }
    let mut value = serde_json::to_value(message).unwrap_or_default();
    match message {
        ServerMessage::Error { .. } => add_codes(&mut value["payload"], Code::BadUserInput),
        _ => add_codes(&mut value["payload"]["errors"], Code::Internal),
    }
    value.to_string()
}

async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(juniper::http::graphiql::graphiql_source("/graphql", Some("/graphql")))
}

/// An internal CA's certificate revocation list, DER (`openssl crl -inform DER`), signed afresh
/// on each request and valid for a week. Public, as CRLs are.
async fn crl(state: State, path: web::Path<String>) -> HttpResponse {
    let Ok(ca_id) = path.into_inner().parse::<uuid::Uuid>() else {
        return HttpResponse::NotFound().body("no such certificate authority\n");
    };
    match unity_projections::certificates::x509_ca(state.store.pool(), ca_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return HttpResponse::NotFound().body("no such certificate authority\n"),
        Err(e) => return HttpResponse::ServiceUnavailable().body(format!("{}\n", crate::errors::ApiError::from(e))),
    }
    let revoked = match unity_projections::certificates::revoked_by(state.store.pool(), ca_id).await {
        Ok(rows) => rows
            .into_iter()
            .map(|(serial, at, reason)| (serial, at, crate::schema::certificates::stored_reason(&reason)))
            .collect::<Vec<_>>(),
        Err(e) => return HttpResponse::ServiceUnavailable().body(format!("{}\n", crate::errors::ApiError::from(e))),
    };
    match state.x509.crl(ca_id, &revoked, chrono::Utc::now()).await {
        Ok(der) => HttpResponse::Ok().content_type("application/pkix-crl").body(der),
        Err(e) => HttpResponse::InternalServerError().body(format!("{}\n", crate::errors::ApiError::from(e))),
    }
}

/// The HTTP-01 responder: a running order's key authorization for `token`, as RFC 8555 §8.3 asks
/// (no authentication: the directory fetches it; the value is public by design).
async fn acme_challenge(state: State, path: web::Path<String>) -> HttpResponse {
    let token = path.into_inner();
    // Tokens are base64url; anything else is not one of ours.
    if token.is_empty()
        || token.len() > 256
        || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return HttpResponse::NotFound().body("no such challenge\n");
    }
    match unity_projections::acme::http_challenge(state.store.pool(), &token).await {
        Ok(Some(key_authorization)) => HttpResponse::Ok().content_type("text/plain").body(key_authorization),
        Ok(None) => HttpResponse::NotFound().body("no such challenge\n"),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{}\n", crate::errors::ApiError::from(e))),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the database answers, the projections are running, and NATS (if configured) is
/// connected. Each check is reported.
async fn readyz(state: State) -> HttpResponse {
    let database = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.store.pool()).await.is_ok();
    let stopped: Vec<String> = match state.engine.status().await {
        Ok(statuses) => statuses.into_iter().filter(|s| s.state != "running").map(|s| s.name).collect(),
        Err(_) => vec![],
    };
    let nats = state.nats.as_ref().map(|client| client.connection_state() == async_nats::connection::State::Connected);
    let ready = database && stopped.is_empty() && nats != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": database,
        "stoppedProjections": stopped,
        "nats": nats,
    });
    HttpResponse::build(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }).json(body)
}

async fn metrics(state: State) -> HttpResponse {
    let m = &state.metrics;
    m.set_events_appended(state.store.appended_total());
    if let Ok(head) = state.store.last_committed().await {
        m.head_position.set(head.global_position);
    }
    if let Ok(statuses) = state.engine.status().await {
        for s in statuses {
            m.set_projection(&s.name, s.position, s.lag, s.state != "running");
        }
    }
    if let Ok(counts) = unity_projections::credentials::counts(state.store.pool()).await {
        m.set_credentials(&counts);
    }
    let expiring = state.config.expiring_days as i32;
    if let Ok((by_status, soonest)) =
        unity_projections::certificates::certificate_counts(state.store.pool(), chrono::Utc::now(), expiring).await
    {
        m.set_certificates(&by_status, soonest);
    }
    if let Ok((succeeded, failed)) = unity_projections::certificates::renewal_counts(state.store.pool()).await {
        m.set_renewals(succeeded, failed);
    }
    if let Ok(by_status) = unity_projections::acme::order_counts(state.store.pool()).await {
        m.set_acme_orders(&by_status);
    }
    if let Some(name) = &state.relay_checkpoint {
        let position = sqlx::query("SELECT transaction_id, global_position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(state.store.pool())
            .await;
        let cursor = match position {
            Ok(Some(row)) => Some(unity_commands::store::Cursor::from_leading_columns(&row)),
            Ok(None) => Some(unity_commands::store::Cursor::START),
            Err(_) => None,
        };
        if let Some(cursor) = cursor {
            if let Ok(lag) = state.store.count_after(cursor).await {
                m.relay_lag.set(lag);
            }
        }
    }
    HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(m.encode())
}
