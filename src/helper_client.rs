//! Talking to the privileged helper on the system bus. The helper asks polkit for every
//! change; errors come back as translated sentences, never raw D-Bus names.

use futures_util::StreamExt;
use gtk::glib;
use passthrough_core::dbus::{user_message, Helper1Proxy};

async fn proxy() -> Result<Helper1Proxy<'static>, String> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| user_message(&e))?;
    Helper1Proxy::new(&connection)
        .await
        .map_err(|e| user_message(&e))
}

/// Applies a plan (JSON); `progress` gets each step and output line as the helper reports
/// them. Returns the transaction's ID.
pub async fn apply(
    plan_json: &str,
    progress: impl Fn(&str, &str) + 'static,
) -> Result<String, String> {
    let proxy = proxy().await?;
    let mut signals = proxy
        .receive_progress()
        .await
        .map_err(|e| user_message(&e))?;
    let listener = glib::spawn_future_local(async move {
        while let Some(signal) = signals.next().await {
            if let Ok(args) = signal.args() {
                progress(args.step(), args.line());
            }
        }
    });
    let result = proxy.apply(plan_json).await.map_err(|e| user_message(&e));
    listener.abort();
    result
}

pub async fn rollback(id: &str) -> Result<(), String> {
    proxy()
        .await?
        .rollback(id)
        .await
        .map_err(|e| user_message(&e))
}

/// Asks logind to restart the computer (it asks for authentication when it must).
pub async fn reboot() -> Result<(), String> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| user_message(&e))?;
    connection
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Reboot",
            &(true,),
        )
        .await
        .map(|_| ())
        .map_err(|e| user_message(&e))
}
