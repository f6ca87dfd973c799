//! `POST /api2/json/access/ticket`: login with a password, or renewal with a still valid
//! ticket in the `password` field (protocol.md 1.3). The only endpoint without credentials.

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::protocol::ApiError;
use crate::protocol::backup_params::{MAX_PARAM_BODY, Params};
use crate::protocol::h2::{Reply, parse_query};
use crate::server::http::{Body, Ctx, reply};

/// Answers `{"username", "ticket", "CSRFPreventionToken"}`, all strings (the client unwraps
/// each); wrong credentials are 401 "permission check failed.".
pub async fn login(ctx: Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut params = Params::from_query(parse_query(req.uri().query()));
    let body = Limited::new(req.into_body(), MAX_PARAM_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("Request body too large"))?
        .to_bytes();
    params.merge_body(content_type.as_deref(), &body)?;
    let username = params.str("username")?;
    let password = params.str("password")?;
    let login = ctx.state.auth.login(username, password).await?;
    Ok(reply(Ok(Reply::Data(json!({
        "username": login.username,
        "ticket": login.ticket,
        "CSRFPreventionToken": login.csrf,
    })))))
}
