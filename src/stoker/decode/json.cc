#include "stoker/decode/json.h"

#include <cctype>
#include <string>

#include "stoker/base/utf8.h"

namespace stoker::decode {
namespace {

constexpr int kMaxDepth = 512;

class Checker {
 public:
  explicit Checker(std::string_view s) : s_(s) {}

  Status Run() {
    if (!IsValidUtf8(s_)) return Fail("not valid UTF-8");
    Space();
    if (!Value(0)) return Fail(why_);
    Space();
    if (i_ != s_.size()) return Fail("text after the JSON value");
    return Status::Ok();
  }

 private:
  Status Fail(const std::string& what) const {
    return Status(StatusCode::kCorrupt,
                  "not valid JSON: " + what + " at byte " + std::to_string(i_));
  }
  bool Error(const char* what) {
    why_ = what;
    return false;
  }
  void Space() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return Error("unknown literal");
    i_ += word.size();
    return true;
  }
  bool Digits() {
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }
  bool Number() {
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (!Digits()) {
      return Error("bad number");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!Digits()) return Error("bad number");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!Digits()) return Error("bad number");
    }
    return true;
  }
  bool String() {
    ++i_;  // the opening quote
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return Error("control character in a string");
      if (c != '\\') continue;
      if (i_ >= s_.size()) break;
      const char e = s_[i_++];
      if (e == 'u') {
        for (int k = 0; k < 4; ++k, ++i_) {
          if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_])))
            return Error("bad \\u escape");
        }
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return Error("bad escape");
      }
    }
    return Error("unterminated string");
  }
  bool Value(int depth) {
    if (depth > kMaxDepth) return Error("nested too deep");
    if (i_ >= s_.size()) return Error("missing value");
    const char c = s_[i_];
    if (c == '"') return String();
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++i_;
      Space();
      if (i_ < s_.size() && s_[i_] == close) {
        ++i_;
        return true;
      }
      while (true) {
        Space();
        if (c == '{') {
          if (i_ >= s_.size() || s_[i_] != '"') return Error("expected a key");
          if (!String()) return false;
          Space();
          if (i_ >= s_.size() || s_[i_] != ':') return Error("expected ':'");
          ++i_;
          Space();
        }
        if (!Value(depth + 1)) return false;
        Space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == close) {
          ++i_;
          return true;
        }
        return Error(c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
      }
    }
    if (c == 't') return Literal("true");
    if (c == 'f') return Literal("false");
    if (c == 'n') return Literal("null");
    return Number();
  }

  std::string_view s_;
  size_t i_ = 0;
  const char* why_ = "";
};

}  // namespace

Status ValidateJson(std::string_view text) { return Checker(text).Run(); }

}  // namespace stoker::decode
