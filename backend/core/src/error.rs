//! The one error type that crosses ringchat's boundaries.
//!
//! Every failure a caller can act on carries an [`ErrorCode`] from the client API contract
//! (`AUTH_FAILED`, `CONVERSATION_NOT_FOUND`, ...). This module is the single place that maps
//! a code to a gRPC status (and back, so a remote im-repo/im-logic error arrives with the
//! same code) and to an HTTP status.

use std::fmt;

/// Client API error codes (docs/client-api.md), plus a few HTTP-side ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bad, expired, revoked or missing credentials.
    AuthFailed,
    /// A request body or argument is malformed or out of range.
    InvalidArgument,
    /// A client frame or message is not acceptable (bad JSON, unknown type, empty content).
    InvalidMessage,
    ConversationNotFound,
    UserNotFound,
    GroupNotFound,
    NotFound,
    Forbidden,
    UsernameTaken,
    Conflict,
    MessageTooLarge,
    RateLimited,
    /// A dependency (store, cache, bus) is unreachable; retrying may help.
    Unavailable,
    Internal,
    /// The path exists, the HTTP method does not.
    MethodNotAllowed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::AuthFailed,
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidMessage,
        ErrorCode::ConversationNotFound,
        ErrorCode::UserNotFound,
        ErrorCode::GroupNotFound,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::UsernameTaken,
        ErrorCode::Conflict,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::MethodNotAllowed,
    ];

    /// The wire name used in error envelopes and `error` frames.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::ConversationNotFound => "CONVERSATION_NOT_FOUND",
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
            ErrorCode::GroupNotFound => "GROUP_NOT_FOUND",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::UsernameTaken => "USERNAME_TAKEN",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    /// The code an `error` WebSocket frame carries. The contract's frames know a short
    /// list (`AUTH_FAILED`, `INVALID_MESSAGE`, `CONVERSATION_NOT_FOUND`, `FORBIDDEN`,
    /// `MESSAGE_TOO_LARGE`, `RATE_LIMITED`, `INTERNAL`); the richer codes of the HTTP API
    /// fold into the closest of them.
    pub fn ws_code(self) -> ErrorCode {
        use ErrorCode::*;
        match self {
            AuthFailed | InvalidMessage | ConversationNotFound | Forbidden | MessageTooLarge
            | RateLimited | Internal => self,
            InvalidArgument | UserNotFound | GroupNotFound | NotFound | UsernameTaken
            | Conflict | MethodNotAllowed => InvalidMessage,
            Unavailable => Internal,
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The gRPC status code a service returns for this error.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorCode::AuthFailed => Code::Unauthenticated,
            ErrorCode::InvalidArgument | ErrorCode::InvalidMessage => Code::InvalidArgument,
            ErrorCode::ConversationNotFound
            | ErrorCode::UserNotFound
            | ErrorCode::GroupNotFound
            | ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Forbidden => Code::PermissionDenied,
            ErrorCode::UsernameTaken | ErrorCode::Conflict => Code::AlreadyExists,
            ErrorCode::MessageTooLarge => Code::OutOfRange,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
            ErrorCode::MethodNotAllowed => Code::Unimplemented,
        }
    }

    /// The HTTP status the gateway answers with for this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::AuthFailed => 401,
            ErrorCode::InvalidArgument | ErrorCode::InvalidMessage => 400,
            ErrorCode::ConversationNotFound
            | ErrorCode::UserNotFound
            | ErrorCode::GroupNotFound
            | ErrorCode::NotFound => 404,
            ErrorCode::Forbidden => 403,
            ErrorCode::UsernameTaken | ErrorCode::Conflict => 409,
            ErrorCode::MessageTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::MethodNotAllowed => 405,
        }
    }

    /// Best guess for a status that came without our code attached (a foreign server).
    fn from_grpc(code: tonic::Code) -> ErrorCode {
        use tonic::Code;
        match code {
            Code::Unauthenticated => ErrorCode::AuthFailed,
            Code::InvalidArgument | Code::FailedPrecondition => ErrorCode::InvalidArgument,
            Code::NotFound => ErrorCode::NotFound,
            Code::PermissionDenied => ErrorCode::Forbidden,
            Code::AlreadyExists | Code::Aborted => ErrorCode::Conflict,
            Code::OutOfRange => ErrorCode::MessageTooLarge,
            Code::ResourceExhausted => ErrorCode::RateLimited,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure with the code a caller acts on and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// For `RATE_LIMITED`: seconds until a retry can succeed (HTTP `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const CODE_METADATA: &str = "x-ringchat-code";
const RETRY_AFTER_METADATA: &str = "x-ringchat-retry-after";

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// `RATE_LIMITED`, retry after `wait` (rounded up to whole seconds).
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        let mut e = Self::new(ErrorCode::RateLimited, message);
        e.retry_after_secs = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        e
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn invalid_message(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthFailed, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn conversation_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ConversationNotFound,
            format!("conversation {id} not found"),
        )
    }
    pub fn user_not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::UserNotFound, format!("user {what} not found"))
    }
    pub fn group_not_found(id: i64) -> Self {
        Self::new(ErrorCode::GroupNotFound, format!("group {id} not found"))
    }

    /// Is a retry of the same call likely to succeed?
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, ErrorCode::Unavailable)
    }

    /// Converts to a gRPC status carrying the code in metadata.
    pub fn to_status(&self) -> tonic::Status {
        let mut status = tonic::Status::new(self.code.grpc_code(), self.message.clone());
        status.metadata_mut().insert(
            CODE_METADATA,
            tonic::metadata::MetadataValue::from_static(self.code.as_str()),
        );
        if let Some(secs) = self.retry_after_secs {
            status
                .metadata_mut()
                .insert(RETRY_AFTER_METADATA, secs.into());
        }
        status
    }

    /// Rebuilds the error a remote ringchat service returned.
    pub fn from_status(status: &tonic::Status) -> Self {
        let code = status
            .metadata()
            .get(CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::parse)
            .unwrap_or_else(|| ErrorCode::from_grpc(status.code()));
        let mut e = Error::new(code, status.message().to_string());
        e.retry_after_secs = status
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        e
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::from_status(&s)
    }
}

/// Database errors a retry can cure: SQLite's BUSY (5), LOCKED (6), IOERR (10) and FULL
/// (13) (primary codes, the low byte of the extended code sqlx reports). Other databases
/// report a SQLSTATE: serialization failures and deadlocks (class 40) are transient. The
/// MySQL adapter classifies its own errors by number (1205, 1213) before they get here.
#[cfg(feature = "sqlx")]
fn is_transient_db_error(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    let Some(code) = e.code() else {
        return false;
    };
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
    } else {
        code.starts_with("40")
    }
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Error::unavailable(format!("store: {e}"))
            }
            sqlx::Error::Database(d) if is_transient_db_error(d.as_ref()) => {
                Error::unavailable(format!("store: {e}"))
            }
            _ => Error::internal(format!("store: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_grpc() {
        for code in ErrorCode::ALL {
            let e = Error::new(code, "boom");
            let back = Error::from_status(&e.to_status());
            assert_eq!(back, e);
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn retry_after_survives_grpc() {
        let e = Error::rate_limited("slow down", std::time::Duration::from_millis(1500));
        assert_eq!(e.retry_after_secs, Some(2));
        assert_eq!(Error::from_status(&e.to_status()), e);
    }

    #[test]
    fn websocket_codes_are_the_contracts_short_list() {
        let short = [
            ErrorCode::AuthFailed,
            ErrorCode::InvalidMessage,
            ErrorCode::ConversationNotFound,
            ErrorCode::Forbidden,
            ErrorCode::MessageTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ];
        for code in ErrorCode::ALL {
            let ws = code.ws_code();
            assert!(short.contains(&ws), "{code} folds into {ws}");
            assert_eq!(ws.ws_code(), ws, "folding is idempotent");
            if short.contains(&code) {
                assert_eq!(ws, code);
            }
        }
        assert_eq!(
            serde_json::to_string(&ErrorCode::UserNotFound).unwrap(),
            "\"USER_NOT_FOUND\""
        );
    }

    #[test]
    fn foreign_status_maps_by_grpc_code() {
        let e = Error::from_status(&tonic::Status::unavailable("down"));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.is_retryable());
    }
}
