//! Widgets the pages are built from.

mod code43_group;
mod gpu_card;
mod group_row;
mod preferences_window;
mod status_row;
pub mod vm_panel;
pub mod vm_wizard;

pub use code43_group::PtCode43Group;
pub use gpu_card::PtGpuCard;
pub use group_row::PtGroupRow;
pub use group_row::{device_row, matches_haystack};
pub use preferences_window::PtPreferencesWindow;
pub use status_row::PtStatusRow;
pub use vm_panel::PtVmPanel;
pub use vm_wizard::PtVmWizard;

use gettextrs::gettext;
use passthrough_core::checks::Status;
use passthrough_core::gpu::Verdict;
use passthrough_core::Severity;

/// How good or bad something is: picks the icon and the colour of a row or a badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tone {
    Ok,
    Info,
    Warning,
    Error,
}

impl Tone {
    pub fn icon_name(self) -> &'static str {
        match self {
            Tone::Ok => "emblem-ok-symbolic",
            Tone::Info => "dialog-information-symbolic",
            Tone::Warning => "dialog-warning-symbolic",
            Tone::Error => "dialog-error-symbolic",
        }
    }

    /// The libadwaita style class that colours it.
    pub fn css_class(self) -> &'static str {
        match self {
            Tone::Ok => "success",
            Tone::Info => "accent",
            Tone::Warning => "warning",
            Tone::Error => "error",
        }
    }

    /// What the icon means, for screen readers and tooltips.
    pub fn label(self) -> String {
        match self {
            Tone::Ok => gettext("OK"),
            Tone::Info => gettext("Information"),
            Tone::Warning => gettext("Warning"),
            Tone::Error => gettext("Error"),
        }
    }
}

impl From<Status> for Tone {
    fn from(s: Status) -> Self {
        match s {
            Status::Ok => Tone::Ok,
            Status::Info => Tone::Info,
            Status::Warning => Tone::Warning,
            Status::Error => Tone::Error,
        }
    }
}

impl From<Severity> for Tone {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => Tone::Info,
            Severity::Warning => Tone::Warning,
            Severity::Error => Tone::Error,
        }
    }
}

impl From<Verdict> for Tone {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Isolated => Tone::Ok,
            Verdict::Shared => Tone::Warning,
            Verdict::NoIommu => Tone::Error,
        }
    }
}

/// Shows `icon` in the colour and with the meaning of `tone`.
pub fn set_tone_icon(icon: &gtk::Image, tone: Option<Tone>) {
    use gtk::prelude::*;
    for t in [Tone::Ok, Tone::Info, Tone::Warning, Tone::Error] {
        icon.remove_css_class(t.css_class());
    }
    match tone {
        Some(t) => {
            icon.set_icon_name(Some(t.icon_name()));
            icon.add_css_class(t.css_class());
            icon.set_tooltip_text(Some(&t.label()));
            icon.set_visible(true);
        }
        None => icon.set_visible(false),
    }
}

/// Presents a dialog and waits for its response (libadwaita 1.2 has no `choose`).
pub async fn dialog_response(dialog: &adw::MessageDialog) -> String {
    use adw::prelude::*;
    let (sender, receiver) = futures_channel::oneshot::channel::<String>();
    let sender = std::cell::Cell::new(Some(sender));
    dialog.connect_response(None, move |_, response| {
        if let Some(sender) = sender.take() {
            let _ = sender.send(response.to_owned());
        }
    });
    dialog.present();
    receiver.await.unwrap_or_default()
}
