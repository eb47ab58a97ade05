//! Opening a replication connection: socket (TCP or unix), SSLRequest and TLS per sslmode,
//! the startup message with `replication=true`, authentication, and the wait for
//! ReadyForQuery. Each host in the list is tried in turn within the connect timeout.

use std::path::PathBuf;

use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::auth::AuthInput;
use super::client::ReplicationClient;
use super::conninfo::{ConnParams, Host, Password, SslMode, Target, home_dir};
use super::error::{PgConnError, ServerError};
use super::pgpass;
use super::tls::{self, Verification};
use super::wire::{Backend, PgStream};

impl ReplicationClient {
    /// Opens a physical replication connection (`replication=true`) with `params`, trying each
    /// host in order; the error of the last host is returned when none works.
    pub async fn connect(params: &ConnParams) -> Result<ReplicationClient, PgConnError> {
        Self::connect_as(params, true).await
    }

    /// Opens an ordinary SQL connection (no `replication`) with the same settings, TLS and
    /// authentication, for the few plain queries walship runs (`walship check`:
    /// `pg_switch_wal()`, `pg_stat_archiver`) through [`ReplicationClient::simple_query`].
    pub async fn connect_sql(params: &ConnParams) -> Result<ReplicationClient, PgConnError> {
        Self::connect_as(params, false).await
    }

    async fn connect_as(
        params: &ConnParams,
        replication: bool,
    ) -> Result<ReplicationClient, PgConnError> {
        let mut last_error = None;
        for target in &params.targets {
            let endpoint = target.endpoint();
            let attempt = tokio::time::timeout(
                params.connect_timeout,
                connect_target(params, target, replication),
            );
            match attempt.await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => {
                    tracing::debug!(%endpoint, error = %e, "connection attempt failed");
                    last_error = Some(e);
                }
                Err(_) => {
                    last_error = Some(PgConnError::Timeout {
                        endpoint,
                        during: "connecting",
                        timeout: params.connect_timeout,
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| PgConnError::Connect {
            endpoint: "(no host)".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host to connect to"),
        }))
    }
}

async fn connect_target(
    params: &ConnParams,
    target: &Target,
    replication: bool,
) -> Result<ReplicationClient, PgConnError> {
    let endpoint = target.endpoint();
    let tls_error = |message: String| PgConnError::Tls {
        endpoint: endpoint.clone(),
        message,
    };
    match &target.host {
        Host::Unix(dir) => {
            // libpq never uses TLS on unix sockets, whatever the sslmode.
            let path = dir.join(format!(".s.PGSQL.{}", target.port));
            let socket =
                UnixStream::connect(&path)
                    .await
                    .map_err(|source| PgConnError::Connect {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
            startup(params, target, PgStream::Unix(socket), None, replication).await
        }
        Host::Tcp(host) => {
            let verification = tls::verification(params.sslmode, params.sslrootcert.as_deref())
                .map_err(tls_error)?;
            let tcp = open_tcp(host, target.port, &endpoint).await?;
            if params.sslmode == SslMode::Disable {
                return startup(params, target, PgStream::Tcp(tcp), None, replication).await;
            }
            match negotiate_tls(tcp, host, &endpoint, params.sslmode, &verification).await {
                Ok((stream, end_point)) => {
                    startup(params, target, stream, end_point, replication).await
                }
                // libpq's `prefer` retries without TLS when the handshake fails.
                Err(PgConnError::Tls { message, .. }) if params.sslmode == SslMode::Prefer => {
                    tracing::debug!(%endpoint, %message, "TLS failed under sslmode=prefer; retrying without");
                    let tcp = open_tcp(host, target.port, &endpoint).await?;
                    startup(params, target, PgStream::Tcp(tcp), None, replication).await
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Connects to the first address of `host` that answers.
async fn open_tcp(host: &str, port: u16, endpoint: &str) -> Result<TcpStream, PgConnError> {
    let connect_error = |source| PgConnError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(connect_error)?;
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "host name resolved to no address",
    );
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_error(last))
}

/// SSLRequest; on `S` the TLS handshake. Returns the stream and the channel-binding hash.
async fn negotiate_tls(
    mut tcp: TcpStream,
    host: &str,
    endpoint: &str,
    mode: SslMode,
    verification: &Verification,
) -> Result<(PgStream, Option<Vec<u8>>), PgConnError> {
    let io_error = |source| PgConnError::Io {
        endpoint: endpoint.to_string(),
        source,
    };
    let tls_error = |message: String| PgConnError::Tls {
        endpoint: endpoint.to_string(),
        message,
    };
    let mut request = bytes::BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(io_error)?;
    let answer = tcp.read_u8().await.map_err(io_error)?;
    match answer {
        b'S' => {
            let config = tls::client_config(verification).map_err(tls_error)?;
            let stream = tls::handshake(tcp, host, config).await.map_err(tls_error)?;
            let end_point = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| tls::server_end_point(cert.as_ref()));
            Ok((PgStream::Tls(Box::new(stream)), end_point))
        }
        b'N' if mode == SslMode::Prefer => Ok((PgStream::Tcp(tcp), None)),
        b'N' => Err(tls_error(format!(
            "server does not support SSL, but sslmode={mode} requires it"
        ))),
        other => Err(PgConnError::Protocol {
            endpoint: endpoint.to_string(),
            message: format!("unexpected answer {other:#04x} to SSLRequest"),
        }),
    }
}

/// Startup message, authentication, then BackendKeyData/ParameterStatus up to ReadyForQuery.
async fn startup(
    params: &ConnParams,
    target: &Target,
    stream: PgStream,
    tls_server_end_point: Option<Vec<u8>>,
    replication: bool,
) -> Result<ReplicationClient, PgConnError> {
    let mut client = ReplicationClient::new(stream, target.endpoint(), params.read_timeout);
    let mut startup_params: Vec<(&str, &str)> = vec![("user", &params.user)];
    if replication {
        startup_params.push(("replication", "true"));
    }
    if let Some(db) = &params.dbname {
        startup_params.push(("database", db));
    }
    if let Some(app) = &params.application_name {
        startup_params.push(("application_name", app));
    }
    frontend::startup_message(startup_params, &mut client.wbuf).map_err(|e| client.io_error(e))?;
    client.flush().await?;

    let password = || password_for(params, target, replication);
    let input = AuthInput {
        user: &params.user,
        password: &password,
        tls_server_end_point,
        channel_binding: params.channel_binding,
    };
    client.authenticate(&input).await?;
    loop {
        match client.recv().await? {
            Backend::Message(Message::BackendKeyData(body)) => {
                client.backend_pid = Some(body.process_id())
            }
            Backend::Message(Message::ReadyForQuery(_)) => return Ok(client),
            Backend::Message(Message::ErrorResponse(body)) => {
                return Err(client.server_error(ServerError::from_fields(body.fields())));
            }
            other => return Err(client.unexpected(&other, "startup")),
        }
    }
}

/// The password: given explicitly, else from the password file for this host and port.
fn password_for(params: &ConnParams, target: &Target, replication: bool) -> Option<Password> {
    if let Some(p) = &params.password {
        return Some(p.clone());
    }
    let file: PathBuf = params
        .passfile
        .clone()
        .or_else(|| home_dir().map(|h| h.join(".pgpass")))?;
    // A replication connection matches the database field `replication`; an ordinary one
    // its database, which defaults to the user name.
    let database = match (&params.dbname, replication) {
        (Some(db), _) => db.as_str(),
        (None, true) => "replication",
        (None, false) => params.user.as_str(),
    };
    pgpass::lookup_file(&file, &target.host, target.port, database, &params.user)
}
