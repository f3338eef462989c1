// Errors as values. Every fallible call in stoker returns a Status or a
// Result<T>; exceptions appear only at the Python edge.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace stoker {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller asked for something that cannot be done
  kNotFound,         // a file, object or key that does not exist
  kPermissionDenied,
  kCorrupt,          // the bytes are not a valid sample (bad or truncated image)
  kUnsupported,      // a valid file in a format or variant stoker does not read
  kResourceExhausted,  // e.g. an image larger than max_pixels
  kIOError,          // storage failed to deliver bytes
  kCancelled,        // the pipeline was stopped
  kInternal,
  // Storage gave no usable answer for a request's whole retry window
  // (LoaderOptions::io.io_timeout_s or its attempts): the server is gone,
  // unreachable or failing every request. Fails the epoch even with
  // OnError::kSkip, which is for bad samples, not for an absent dataset.
  kUnavailable,
};

// Returns a short lower-case name for `code`, e.g. "corrupt".
const char* StatusCodeName(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "corrupt: /data/a.jpg: truncated JPEG data"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` (usually a URI).
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Corrupt(std::string m) { return {StatusCode::kCorrupt, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

// A value or the Status explaining why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace stoker

#define STOKER_CONCAT_INNER_(a, b) a##b
#define STOKER_CONCAT_(a, b) STOKER_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (a Status) is not ok.
#define STOKER_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::stoker::Status _st = (expr);            \
    if (!_st.ok()) return _st;                \
  } while (0)

// `lhs = value of expr` or return its Status.
#define STOKER_ASSIGN_OR_RETURN(lhs, expr) \
  STOKER_ASSIGN_OR_RETURN_IMPL_(STOKER_CONCAT_(_res_, __LINE__), lhs, expr)
#define STOKER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
