//! The authentication exchange after the startup message: trust, cleartext password, md5 and
//! SCRAM-SHA-256 (postgres-protocol's implementation, which applies SASLprep), with
//! `tls-server-end-point` channel binding (SCRAM-SHA-256-PLUS) when the connection is on TLS
//! and the server offers it.
//!
//! The password is fetched lazily, only when the server asks for one, so a trust connection
//! never reads the password file.

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::ReplicationClient;
use super::conninfo::{ChannelBindingMode, Password};
use super::error::{PgConnError, ServerError};
use super::wire::Backend;

/// What authentication needs besides the connection.
pub(crate) struct AuthInput<'a> {
    /// The role name.
    pub user: &'a str,
    /// Supplies the password when the server asks (connection string, environment, .pgpass).
    pub password: &'a (dyn Fn() -> Option<Password> + Sync),
    /// Hash of the server certificate when on TLS (for channel binding).
    pub tls_server_end_point: Option<Vec<u8>>,
    /// Whether channel binding is refused, preferred or required.
    pub channel_binding: ChannelBindingMode,
}

impl ReplicationClient {
    /// Runs the authentication exchange until AuthenticationOk.
    pub(crate) async fn authenticate(&mut self, input: &AuthInput<'_>) -> Result<(), PgConnError> {
        loop {
            let msg = match self.recv().await? {
                Backend::Message(m) => m,
                other => return Err(self.unexpected(&other, "authentication")),
            };
            match msg {
                Message::AuthenticationOk => {
                    if input.channel_binding == ChannelBindingMode::Require && !self.channel_binding
                    {
                        return Err(self.auth_error(
                            input,
                            "channel_binding=require, but the server authenticated without channel binding",
                        ));
                    }
                    return Ok(());
                }
                Message::AuthenticationCleartextPassword => {
                    self.refuse_without_binding(input)?;
                    let password = self.need_password(input)?;
                    frontend::password_message(password.expose().as_bytes(), &mut self.wbuf)
                        .map_err(|e| self.io_error(e))?;
                    self.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    self.refuse_without_binding(input)?;
                    let password = self.need_password(input)?;
                    let hash = md5_hash(
                        input.user.as_bytes(),
                        password.expose().as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf)
                        .map_err(|e| self.io_error(e))?;
                    self.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mechanisms: Vec<String> = body
                        .mechanisms()
                        .map(|m| Ok(m.to_string()))
                        .collect()
                        .map_err(|e| self.io_error(e))?;
                    self.scram(input, &mechanisms).await?;
                }
                Message::ErrorResponse(body) => {
                    return Err(self.server_error(ServerError::from_fields(body.fields())));
                }
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationSspi
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGssContinue(_) => {
                    return Err(self.auth_error(
                        input,
                        "the server asks for GSSAPI/SSPI/Kerberos/SCM \
                        authentication, which walship does not support",
                    ));
                }
                other => return Err(self.unexpected(&Backend::Message(other), "authentication")),
            }
        }
    }

    /// SCRAM-SHA-256 (-PLUS): initial response, continue, final.
    async fn scram(
        &mut self,
        input: &AuthInput<'_>,
        mechanisms: &[String],
    ) -> Result<(), PgConnError> {
        let offers = |m: &str| mechanisms.iter().any(|x| x == m);
        let end_point = match input.channel_binding {
            ChannelBindingMode::Disable => None,
            _ => input.tls_server_end_point.as_ref(),
        };
        let (mechanism, binding) = match end_point {
            Some(hash) if offers(SCRAM_SHA_256_PLUS) => (
                SCRAM_SHA_256_PLUS,
                ChannelBinding::tls_server_end_point(hash.clone()),
            ),
            // On TLS but not offered: "client supports binding, server did not offer it".
            Some(_) if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, ChannelBinding::unrequested()),
            None if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, ChannelBinding::unsupported()),
            _ => {
                return Err(self.auth_error(
                    input,
                    &format!("no supported SASL mechanism among {mechanisms:?}"),
                ));
            }
        };
        if mechanism != SCRAM_SHA_256_PLUS {
            self.refuse_without_binding(input)?;
        }
        let password = self.need_password(input)?;
        let mut scram = ScramSha256::new(password.expose().as_bytes(), binding);
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.wbuf)
            .map_err(|e| self.io_error(e))?;
        self.flush().await?;

        match self.recv_auth_step("SASL continue").await? {
            Message::AuthenticationSaslContinue(body) => {
                scram.update(body.data()).map_err(|e| {
                    self.auth_error(input, &format!("SCRAM server-first-message: {e}"))
                })?;
            }
            other => return Err(self.unexpected(&Backend::Message(other), "SCRAM exchange")),
        }
        frontend::sasl_response(scram.message(), &mut self.wbuf).map_err(|e| self.io_error(e))?;
        self.flush().await?;

        match self.recv_auth_step("SASL final").await? {
            Message::AuthenticationSaslFinal(body) => {
                scram.finish(body.data()).map_err(|e| {
                    self.auth_error(
                        input,
                        &format!("the server's SCRAM signature does not verify: {e}"),
                    )
                })?;
                self.channel_binding = mechanism == SCRAM_SHA_256_PLUS;
                Ok(())
            }
            other => Err(self.unexpected(&Backend::Message(other), "SCRAM exchange")),
        }
    }

    /// The next authentication message; an ErrorResponse (wrong password) becomes the
    /// server's error.
    async fn recv_auth_step(&mut self, during: &str) -> Result<Message, PgConnError> {
        match self.recv().await? {
            Backend::Message(Message::ErrorResponse(body)) => {
                Err(self.server_error(ServerError::from_fields(body.fields())))
            }
            Backend::Message(m) => Ok(m),
            other => Err(self.unexpected(&other, during)),
        }
    }

    /// With channel_binding=require, a password must never be sent in a non-binding method.
    fn refuse_without_binding(&self, input: &AuthInput<'_>) -> Result<(), PgConnError> {
        if input.channel_binding == ChannelBindingMode::Require {
            return Err(self.auth_error(
                input,
                "channel_binding=require, but the server offers no authentication with channel \
                 binding (needs TLS and SCRAM)",
            ));
        }
        Ok(())
    }

    fn need_password(&self, input: &AuthInput<'_>) -> Result<Password, PgConnError> {
        (input.password)().ok_or_else(|| {
            self.auth_error(
                input,
                "the server asks for a password, but none was supplied \
                 (connection string, PGPASSWORD or the password file)",
            )
        })
    }

    fn auth_error(&self, input: &AuthInput<'_>, message: &str) -> PgConnError {
        PgConnError::Auth {
            endpoint: self.endpoint.clone(),
            user: input.user.to_string(),
            message: message.to_string(),
        }
    }
}
