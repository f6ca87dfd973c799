//! PLACEHOLDER written by the transport helper until the pipeline helper's backup session
//! lands (contract-session.md): it answers only `POST /speedtest`, so benchmark upgrades can
//! be tested end to end. The pipeline helper owns this file and replaces it.

use crate::actors::Pipeline;
use crate::config::LimitsConfig;
use crate::format::Authid;
use crate::protocol::ApiError;
use crate::protocol::h2::{Reply, read_body, serve};
use crate::store::BackupTxn;

pub struct BackupSessionStart {
    pub txn: BackupTxn,
    pub auth: Authid,
    pub benchmark: bool,
    pub debug: bool,
}

/// Largest speedtest body accepted (the client sends 4 MiB).
const MAX_SPEEDTEST_BODY: usize = 16 * 1024 * 1024;

/// Runs a backup session on the upgraded connection. This placeholder never commits: the
/// transaction is dropped at the end, which removes the snapshot.
pub async fn serve_session<IO>(
    io: IO,
    start: BackupSessionStart,
    pipeline: Pipeline,
    limits: LimitsConfig,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let _ = pipeline;
    let result = serve(
        io,
        &limits,
        |mut req: http::Request<h2::RecvStream>| async move {
            let path = req.uri().path().to_string();
            match (req.method().as_str(), path.as_str()) {
                ("POST", "/speedtest") => {
                    read_body(req.body_mut(), MAX_SPEEDTEST_BODY).await?;
                    Ok(Reply::Data(serde_json::Value::Null))
                }
                _ => Err(ApiError::no_such_path(&path)),
            }
        },
    )
    .await;
    if let Err(e) = result {
        tracing::debug!("backup session connection ended: {e}");
    }
    drop(start);
}
