package protocol

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes cmpool itself reports.
const (
	CodeTooManyConnections         = "53300" // too_many_connections
	CodeProtocolViolation          = "08P01" // protocol_violation
	CodeConnectionFailure          = "08006" // connection_failure
	CodeCannotConnectNow           = "57P03" // cannot_connect_now
	CodeAdminShutdown              = "57P01" // admin_shutdown
	CodeQueryCanceled              = "57014" // query_canceled
	CodeFeatureNotSupported        = "0A000" // feature_not_supported
	CodeInvalidAuthorization       = "28000" // invalid_authorization_specification
	CodeInvalidPassword            = "28P01" // invalid_password
	CodeInvalidCatalogName         = "3D000" // invalid_catalog_name: database does not exist
	CodeActiveSQLTransaction       = "25001" // active_sql_transaction
	CodeInternalError              = "XX000" // internal_error
	CodeConfigurationLimitExceeded = "53400" // configuration_limit_exceeded
	CodeIdleSessionTimeout         = "57P05" // idle_session_timeout
	CodeIdleInTransactionTimeout   = "25P03" // idle_in_transaction_session_timeout
	CodeInsufficientPrivilege      = "42501" // insufficient_privilege
	CodeSyntaxError                = "42601" // syntax_error
	CodeObjectNotInState           = "55000" // object_not_in_prerequisite_state
	CodeInvalidParameterValue      = "22023" // invalid_parameter_value
)

// Severities.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
)

// Error is an error that carries a SQLSTATE and a severity, to be sent to a client as an
// ErrorResponse.
type Error struct {
	Severity string // "ERROR" or "FATAL"
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

func (e *Error) Error() string { return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")" }

// Fatal reports whether the connection must be closed after sending e.
func (e *Error) Fatal() bool { return e.Severity == SeverityFatal }

// NewError returns an ERROR-severity Error.
func NewError(code, msg string) *Error {
	return &Error{Severity: SeverityError, Code: code, Message: msg}
}

// NewFatal returns a FATAL-severity Error.
func NewFatal(code, msg string) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Message: msg}
}

// AppendErrorResponse appends e encoded as an ErrorResponse message to dst.
func AppendErrorResponse(dst []byte, e *Error) []byte {
	msg := pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	out, err := msg.Encode(dst)
	if err != nil {
		// Encode fails only for messages over 1 GiB, which cmpool never builds.
		panic(err)
	}
	return out
}

// AppendReadyForQuery appends a ReadyForQuery with the given transaction status.
func AppendReadyForQuery(dst []byte, txStatus byte) []byte {
	return append(dst, 'Z', 0, 0, 0, 5, txStatus)
}

// ErrorCode returns the SQLSTATE (field 'C') of an ErrorResponse or NoticeResponse body,
// or "" when it has none or the body is malformed.
func ErrorCode(body []byte) string {
	for len(body) > 0 && body[0] != 0 {
		typ := body[0]
		body = body[1:]
		end := 0
		for end < len(body) && body[end] != 0 {
			end++
		}
		if end == len(body) {
			return ""
		}
		if typ == 'C' {
			return string(body[:end])
		}
		body = body[end+1:]
	}
	return ""
}
