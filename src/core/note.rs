//! Notes: a translated sentence with a stable code and a severity.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Something the user should know about a device, a group or the host.
///
/// `code` is stable (tests and scripts match on it); `text` is already translated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub severity: Severity,
    pub code: &'static str,
    pub text: String,
}

impl Note {
    pub fn info(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Info,
            code,
            text: text.into(),
        }
    }
    pub fn warning(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            code,
            text: text.into(),
        }
    }
    pub fn error(code: &'static str, text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            text: text.into(),
        }
    }
}
