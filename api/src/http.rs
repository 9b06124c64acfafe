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
use futures::StreamExt;
use juniper::{http::GraphQLRequest, DefaultScalarValue, GraphQLError, OperationType, Variables};
use serde_json::{json, Value};

use crate::{auth::authenticate, errors::Code, schema::Context, ApiState};

type State = web::Data<Arc<ApiState>>;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/graphql", web::post().to(graphql_post))
        .route("/graphql", web::get().to(graphql_get))
        .route("/", web::get().to(home))
        .route("/graphiql", web::get().to(graphiql))
        .route("/graphiql/{asset}", web::get().to(graphiql_asset))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/metrics/fleet", web::get().to(fleet_metrics))
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
pub(crate) fn add_codes(errors: &mut Value, code: Code) {
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
    Context { state: state.clone(), principal, auth_error, source: source_address(req).into(), access: None }
}

fn source_address(req: &HttpRequest) -> String {
    req.peer_addr().map_or_else(|| "unknown".into(), |a| a.ip().to_string())
}

/// A GraphQL request as either method carries it.
struct HttpOperation {
    query: String,
    operation_name: Option<String>,
    variables: Variables<DefaultScalarValue>,
}

/// The media type of the answer, by the request's `Accept` (GraphQL over HTTP): the draft's
/// `application/graphql-response+json` when asked for, otherwise `application/json`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseType {
    Json,
    GraphqlResponse,
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

impl ResponseType {
    fn of(req: &HttpRequest) -> ResponseType {
        let accept = req.headers().get_all(header::ACCEPT).filter_map(|v| v.to_str().ok());
        let mut best: Option<(f32, ResponseType)> = None;
        for range in accept.flat_map(|v| v.split(',')) {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            let kind = match media.as_str() {
                GRAPHQL_RESPONSE => ResponseType::GraphqlResponse,
                "application/json" | "application/*" | "*/*" => ResponseType::Json,
                _ => continue,
            };
            // Higher quality wins; at equal quality graphql-response+json, as the draft prefers.
            let better = best.is_none_or(|(q, k)| {
                quality > q || (quality == q && kind == ResponseType::GraphqlResponse && k == ResponseType::Json)
            });
            if quality > 0.0 && better {
                best = Some((quality, kind));
            }
        }
        best.map_or(ResponseType::Json, |(_, kind)| kind)
    }

    fn content_type(self) -> &'static str {
        match self {
            ResponseType::Json => "application/json",
            ResponseType::GraphqlResponse => GRAPHQL_RESPONSE,
        }
    }

    /// The status of a request error (the document did not parse or validate; nothing ran):
    /// 400 under graphql-response+json; under application/json the draft keeps 200 for every
    /// well-formed request.
    fn request_error_status(self) -> StatusCode {
        match self {
            ResponseType::Json => StatusCode::OK,
            ResponseType::GraphqlResponse => StatusCode::BAD_REQUEST,
        }
    }
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
    let operation =
        HttpOperation { variables: request.variables(), query: request.query, operation_name: request.operation_name };
    execute(&state, &req, operation, false).await
}

/// `GET /graphql`: a WebSocket upgrade, or a query in the URL (`query`, `operationName`,
/// `variables` as JSON), as GraphQL over HTTP describes. Mutations are refused with 405.
async fn graphql_get(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, actix_web::Error> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return websocket(req, payload, state);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        query: Option<String>,
        operation_name: Option<String>,
        variables: Option<String>,
    }
    let params = match web::Query::<Params>::from_query(req.query_string()) {
        Ok(params) => params.into_inner(),
        Err(e) => {
            state.metrics.rejected_documents.inc();
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                &format!("the URL's parameters are not a GraphQL request ({e})"),
            ));
        }
    };
    let Some(query) = params.query.filter(|q| !q.trim().is_empty()) else {
        state.metrics.rejected_documents.inc();
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            Code::BadUserInput,
            "give the query as ?query=…, or upgrade to a WebSocket (graphql-transport-ws or graphql-ws) for subscriptions",
        ));
    };
    let variables = match params.variables.as_deref().map(serde_json::from_str::<Option<Variables<DefaultScalarValue>>>)
    {
        None => Variables::default(),
        Some(Ok(variables)) => variables.unwrap_or_default(),
        Some(Err(e)) => {
            state.metrics.rejected_documents.inc();
            let message = format!("`variables` must be a JSON object ({e})");
            return Ok(error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, &message));
        }
    };
    let operation = HttpOperation { query, operation_name: params.operation_name, variables };
    Ok(execute(&state, &req, operation, true).await)
}

/// Validates and runs one operation over HTTP (`get`: only queries may run).
async fn execute(state: &Arc<ApiState>, req: &HttpRequest, request: HttpOperation, get: bool) -> HttpResponse {
    let response_type = ResponseType::of(req);
    let refuse = |status: StatusCode, errors: Value| {
        let mut errors = if errors.is_array() { errors } else { json!([{ "message": "the request was refused" }]) };
        add_codes(&mut errors, Code::BadUserInput);
        let mut response = HttpResponse::build(status);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.insert_header((header::ALLOW, "POST"));
        }
        response.content_type(response_type.content_type()).body(json!({ "errors": errors }).to_string())
    };
    let request_error = |errors: Value| refuse(response_type.request_error_status(), errors);
    let operation = match state.schemas.validate(&request.query, request.operation_name.as_deref()) {
        Ok(operation) => operation,
        Err(e) => {
            if matches!(e, GraphQLError::ParseError(_)) {
                state.metrics.rejected_documents.inc();
            }
            return request_error(serde_json::to_value(&e).unwrap_or_else(|_| json!([])));
        }
    };
    match operation.operation_type() {
        OperationType::Mutation if get => {
            let errors = json!([{ "message": "mutations are sent with POST; GET runs queries only" }]);
            return refuse(StatusCode::METHOD_NOT_ALLOWED, errors);
        }
        OperationType::Subscription => {
            return request_error(
                json!([{ "message": "subscriptions run over a WebSocket on GET /graphql (graphql-transport-ws or graphql-ws)" }]),
            );
        }
        _ => {}
    }
    let context = request_context(state, req).await;
    match operation.execute(&request.variables, &context).await {
        Ok((data, errors)) => {
            let mut body = json!({ "data": data });
            if !errors.is_empty() {
                let mut errors = serde_json::to_value(&errors).unwrap_or_else(|_| json!([]));
                add_codes(&mut errors, Code::Internal);
                body["errors"] = errors;
            }
            HttpResponse::Ok().content_type(response_type.content_type()).body(body.to_string())
        }
        Err(e) => request_error(serde_json::to_value(&e).unwrap_or_else(|_| json!([]))),
    }
}

fn websocket(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, messages) = actix_ws::handle_with_protocols(&req, payload, crate::ws::PROTOCOLS)?;
    let max = state.config.limits.max_ws_message_bytes;
    let messages = messages.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    let protocol = crate::ws::Protocol::negotiated(&response);
    let source: Arc<str> = source_address(&req).into();
    actix_web::rt::spawn(crate::ws::serve(state.get_ref().clone(), session, messages, protocol, source));
    Ok(response)
}

mod graphiql_assets {
    include!(concat!(env!("OUT_DIR"), "/graphiql_assets.rs"));
}

/// GraphiQL, every asset served from the binary (nothing from a CDN: it works offline).
async fn graphiql() -> HttpResponse {
    if !graphiql_assets::PRESENT {
        return HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body(
            "This build of Unity has no GraphiQL assets: run `npm ci --prefix web` (scripts/provision.sh does) and build again.\n",
        );
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("../graphiql/index.html"))
}

async fn graphiql_asset(path: web::Path<String>) -> HttpResponse {
    match graphiql_assets::asset(path.as_str()) {
        Some((body, content_type)) => HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(body),
        None => error_response(StatusCode::NOT_FOUND, Code::NotFound, "no such asset"),
    }
}

/// Until the web console exists, `/` points to what there is.
async fn home() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Unity</title></head><body>",
        "<h1>Unity</h1><p>The web console is not built yet. Meanwhile:</p><ul>",
        "<li><a href=\"/graphiql\">GraphiQL</a>: explore and run the GraphQL API (sign in with the <code>login</code> mutation);</li>",
        "<li><code>POST /graphql</code>, <code>GET /graphql</code> (queries, and WebSocket subscriptions);</li>",
        "<li><a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>, <a href=\"/readyz\">/readyz</a>;</li>",
        "<li>the README, which comes with Unity, for setup, configuration and the CLI.</li></ul></body></html>\n",
    ))
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
    match state.commands.certificates.crl(ca_id, &revoked, chrono::Utc::now()).await {
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

/// Ready means "can serve requests": the database answers and the projections run. NATS and
/// the relay are reported, not required: while NATS is away the API serves and events wait in
/// PostgreSQL for the relay, so taking this instance out of service would help nobody.
async fn readyz(state: State) -> HttpResponse {
    let database = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.store.pool()).await.is_ok();
    let stopped: Vec<String> = match state.engine.status().await {
        Ok(statuses) => statuses.into_iter().filter(|s| s.state != "running").map(|s| s.name).collect(),
        Err(_) => vec![],
    };
    let nats = state.nats.as_ref().map(|client| client.connection_state() == async_nats::connection::State::Connected);
    let relay_lag = relay_lag(&state).await;
    let reactors = reactors(&state).await;
    let ready = database && stopped.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": database,
        "stoppedProjections": stopped,
        "nats": match nats {
            None => json!({ "configured": false }),
            Some(connected) => json!({ "configured": true, "connected": connected }),
        },
        "relayLagEvents": relay_lag,
        // Whether some process carries out server operations and ACME orders (the collectors
        // role): without one, such mutations are refused as UNAVAILABLE.
        "reactors": reactors.iter().map(|(name, held)| (name.to_string(), json!(held))).collect::<serde_json::Map<_, _>>(),
    });
    HttpResponse::build(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }).json(body)
}

/// Whether each reactor of the collectors role runs somewhere (`None`: the database did not say).
async fn reactors(state: &ApiState) -> Vec<(&'static str, Option<bool>)> {
    let mut out = Vec::new();
    for (name, lease) in [("ssh", unity_commands::lease::SSH_REACTOR), ("acme", unity_commands::lease::ACME_REACTOR)] {
        out.push((name, unity_commands::lease::is_held(state.store.pool(), lease).await.ok()));
    }
    out
}

/// Committed events the relay has not yet published (with NATS configured).
async fn relay_lag(state: &ApiState) -> Option<i64> {
    let name = state.relay_checkpoint.as_ref()?;
    let position = sqlx::query("SELECT transaction_id, global_position FROM checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(state.store.pool())
        .await;
    let cursor = match position {
        Ok(Some(row)) => unity_commands::store::Cursor::from_leading_columns(&row),
        Ok(None) => unity_commands::store::Cursor::START,
        Err(_) => return None,
    };
    state.store.count_after(cursor).await.ok()
}

/// The monitored fleet's latest samples (`crate::fleet`), for a bearer token of any role.
async fn fleet_metrics(req: HttpRequest, state: State) -> HttpResponse {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match authenticate(state.store.pool(), header).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .body("send Authorization: Bearer <an API key>\n")
        }
        // Expired, revoked, unknown or a database hiccup: refused, with nothing more said.
        Err(_) => return HttpResponse::Unauthorized().body("the bearer token was refused\n"),
    }
    match crate::fleet::exposition(state.store.pool()).await {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => {
            tracing::warn!(error = %e, "The fleet's metrics could not be read.");
            HttpResponse::ServiceUnavailable().body("Unity's database is unavailable; try again shortly\n")
        }
    }
}

async fn metrics(req: HttpRequest, state: State) -> HttpResponse {
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
    if let Some(lag) = relay_lag(&state).await {
        m.relay_lag.set(lag);
    }
    for (name, held) in reactors(&state).await {
        if let Some(held) = held {
            m.reactor_active
                .get_or_create(&crate::metrics::ReactorLabels { reactor: name.into() })
                .set(i64::from(held));
        }
    }
    if let Some(client) = &state.nats {
        m.nats_connected.set(i64::from(client.connection_state() == async_nats::connection::State::Connected));
    }
    // OpenMetrics for those who ask for it (Prometheus does, first), the classic text format
    // for everyone else (`Accept: text/plain; version=0.0.4`, curl, older scrapers).
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let openmetrics = accept.split(',').any(|range| {
        range.trim().starts_with("application/openmetrics-text")
            && !range.replace(' ', "").contains(";q=0,")
            && !range.replace(' ', "").ends_with(";q=0")
    });
    if openmetrics {
        HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(m.encode())
    } else {
        HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(m.encode_classic())
    }
}
