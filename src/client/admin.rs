//! Management calls of the real CLI (protocol.md 6) on the kept-alive HTTP/1.1 connection:
//! a generic JSON call (token auth, or a login ticket with its CSRF token), login, and typed
//! helpers for the datastore endpoints the tests and the load tester use.

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::client::{ClientError, HttpClient, Response, encode_query};

/// A login: ticket and CSRF token, sent as `PBSAuthCookie` + `CSRFPreventionToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub username: String,
    pub ticket: String,
    pub csrf: String,
}

/// Credentials of one management call.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// The client's API token.
    Token,
    Ticket(&'a Ticket),
    /// A ticket without its CSRF token (for refusal tests).
    TicketNoCsrf(&'a Ticket),
    None,
}

impl HttpClient {
    /// One call as the real client sends it: GET/PUT/DELETE with the query, POST with a JSON
    /// body. Returns the raw response.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        json: Option<Value>,
        auth: Auth<'_>,
    ) -> Result<Response, ClientError> {
        let mut target = format!("/api2/json/{path}");
        let body = match (&method, json) {
            (&Method::POST, Some(v)) => Bytes::from(serde_json::to_vec(&v)?),
            _ => {
                if !params.is_empty() {
                    target.push('?');
                    target.push_str(&encode_query(params));
                }
                Bytes::new()
            }
        };
        let cookie;
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        match auth {
            Auth::Ticket(t) | Auth::TicketNoCsrf(t) => {
                cookie = format!(
                    "PBSAuthCookie={}",
                    percent_encoding::utf8_percent_encode(&t.ticket, percent_encoding::NON_ALPHANUMERIC)
                );
                headers.push(("cookie", &cookie));
                if let Auth::Ticket(t) = auth {
                    headers.push(("csrfpreventiontoken", &t.csrf));
                }
            }
            Auth::Token | Auth::None => {}
        }
        self.raw(method, &target, &headers, body, matches!(auth, Auth::Token)).await
    }

    /// [`call_raw`](Self::call_raw) with the token; the `data` of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        json: Option<Value>,
    ) -> Result<Value, ClientError> {
        self.call_raw(method, path, params, json, Auth::Token).await?.data()
    }

    /// `POST //api2/json/access/ticket` with a password (or a ticket, to renew it).
    pub async fn login(&self, username: &str, password: &str) -> Result<Ticket, ClientError> {
        let body = serde_json::json!({ "username": username, "password": password });
        let r = self
            .raw(
                Method::POST,
                "//api2/json/access/ticket",
                &[("content-type", "application/json")],
                Bytes::from(serde_json::to_vec(&body)?),
                false,
            )
            .await?
            .data()?;
        let field = |k: &str| {
            r[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Protocol(format!("login answer without string '{k}'")))
        };
        Ok(Ticket { username: field("username")?, ticket: field("ticket")?, csrf: field("CSRFPreventionToken")? })
    }

    fn store_path(store: &str, what: &str) -> String {
        format!("admin/datastore/{store}/{what}")
    }

    pub async fn groups(&self, store: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, &Self::store_path(store, "groups"), &[], None).await
    }

    pub async fn snapshots(&self, store: &str, group: Option<(&str, &str)>) -> Result<Value, ClientError> {
        let q: Vec<(&str, String)> = group
            .map(|(t, id)| vec![("backup-type", t.to_string()), ("backup-id", id.to_string())])
            .unwrap_or_default();
        self.call(Method::GET, &Self::store_path(store, "snapshots"), &q, None).await
    }

    pub async fn status(&self, store: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, &Self::store_path(store, "status"), &[], None).await
    }
}

/// Query pairs naming a snapshot.
pub fn snapshot_params(ty: &str, id: &str, time: i64) -> Vec<(&'static str, String)> {
    vec![("backup-type", ty.to_string()), ("backup-id", id.to_string()), ("backup-time", time.to_string())]
}
