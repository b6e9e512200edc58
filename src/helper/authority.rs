//! polkit: is the caller of a method allowed to do it?
//!
//! The subject is always the D-Bus sender of the method call (a `system-bus-name` subject
//! built from the message header), never the helper's own process: polkitd then looks up the
//! sender's uid and process itself, from the bus. A failure to ask is a refusal (`Failed`).

use std::collections::HashMap;

use passthrough_core::dbus::HelperError;
use passthrough_core::i18n::gettext_f;
use zbus::message::Header;
use zbus::proxy::CacheProperties;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// The system's polkit authority, on the helper's own bus connection.
#[derive(Clone, Debug)]
pub struct Authority {
    proxy: AuthorityProxy<'static>,
}

impl Authority {
    pub async fn new(conn: &zbus::Connection) -> zbus::Result<Self> {
        // No property cache: it would subscribe to polkit's signals, which the helper never
        // needs, and whose traffic would count as activity against the idle timeout.
        let proxy = AuthorityProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Self { proxy })
    }

    /// Succeeds when polkit authorizes the sender of the call `header` belongs to for `action`,
    /// asking the user to authenticate if the action's policy says so.
    pub async fn check(&self, header: &Header<'_>, action: &str) -> Result<(), HelperError> {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let subject = Subject::new_for_message_header(header).map_err(|e| {
            tracing::warn!(%action, error = %e, "no subject for the caller");
            not_authorized()
        })?;
        let result = self
            .proxy
            .check_authorization(
                &subject,
                action,
                &HashMap::new(),
                CheckAuthorizationFlags::ALLOW_USER_INTERACTION,
                "",
            )
            .await
            .map_err(|e| {
                tracing::warn!(%sender, %action, error = %e, "polkit check failed");
                HelperError::Failed(gettext_f(
                    "Cannot ask the system's authorization service (polkit), so nothing was changed: {error}",
                    &[("error", &e.to_string())],
                ))
            })?;
        if result.is_authorized {
            tracing::info!(%sender, %action, "authorized");
            return Ok(());
        }
        tracing::info!(
            %sender,
            %action,
            challenge = result.is_challenge,
            dismissed = result.details.contains_key("polkit.dismissed"),
            "not authorized"
        );
        Err(if result.details.contains_key("polkit.dismissed") {
            HelperError::NotAuthorized(gettext_f("Authentication was cancelled.", &[]))
        } else if result.is_challenge {
            HelperError::NotAuthorized(gettext_f(
                "Authentication is required, but no authentication agent is running for this session.",
                &[],
            ))
        } else {
            not_authorized()
        })
    }
}

fn not_authorized() -> HelperError {
    HelperError::NotAuthorized(gettext_f(
        "You are not allowed to change the system configuration.",
        &[],
    ))
}
