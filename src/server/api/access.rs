//! `POST /api2/json/access/ticket`: login with a password, or renewal with a still valid
//! ticket in the `password` field (protocol.md 1.3). The only endpoint without credentials.

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::json;

use crate::http::ApiError;
use crate::http::Reply;
use crate::http::params::MAX_PARAM_BODY;
use crate::server::http::{Body, Ctx, reply};

/// Answers `{"username", "ticket", "CSRFPreventionToken"}`, all strings (the client unwraps
/// each); wrong credentials are 401 "permission check failed.".
pub async fn login(ctx: Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (mut params, content_type, body) = super::read_request(req, MAX_PARAM_BODY).await?;
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
