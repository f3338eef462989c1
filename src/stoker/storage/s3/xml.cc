#include "stoker/storage/s3/xml.h"

#include "stoker/base/utf8.h"

#include <charconv>

#include "stoker/storage/http/url.h"

namespace stoker::storage::s3 {
namespace {

constexpr size_t kMaxDepth = 32;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool IsNameChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.' || c == ':';
}

std::string_view LocalName(std::string_view qname) {
  const auto colon = qname.rfind(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

// Appends `raw` character data to `out`, decoding entity references.
Status AppendText(std::string_view raw, std::string& out) {
  size_t i = 0;
  while (i < raw.size()) {
    const auto amp = raw.find('&', i);
    out.append(raw.substr(i, amp == std::string_view::npos ? std::string_view::npos : amp - i));
    if (amp == std::string_view::npos) break;
    const auto semi = raw.find(';', amp);
    if (semi == std::string_view::npos || semi - amp > 12) {
      return Corrupt("XML: unterminated entity reference");
    }
    const std::string_view ent = raw.substr(amp + 1, semi - amp - 1);
    if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "amp") {
      out += '&';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() >= 2 && ent[0] == '#') {
      const bool hex = ent[1] == 'x';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || cp == 0 ||
          cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return Corrupt("XML: bad character reference");
      }
      AppendUtf8(out, cp);
    } else {
      return Corrupt("XML: unknown entity reference");
    }
    i = semi + 1;
  }
  return Status::Ok();
}

bool StartsWith(std::string_view s, size_t i, std::string_view p) {
  return s.size() - i >= p.size() && s.compare(i, p.size(), p) == 0;
}

Result<int64_t> ParseSize(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < 0) {
    return Corrupt("ListObjectsV2 reply: bad <Size>");
  }
  return v;
}

}  // namespace

Status ParseXml(std::string_view s,
                const std::function<Status(const XmlPath& path, std::string& text)>& on_end) {
  XmlPath path;
  std::vector<std::string> text;
  bool seen_root = false;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '<') {
      const auto lt = s.find('<', i);
      const std::string_view raw = s.substr(i, lt == std::string_view::npos ? s.size() - i : lt - i);
      if (path.empty()) {
        for (char c : raw) {
          if (!IsSpace(c)) return Corrupt("XML: text outside the root element");
        }
      } else {
        STOKER_RETURN_IF_ERROR(AppendText(raw, text.back()));
      }
      i += raw.size();
      continue;
    }
    if (StartsWith(s, i, "<?")) {
      const auto end = s.find("?>", i + 2);
      if (end == std::string_view::npos) return Corrupt("XML: unterminated processing instruction");
      i = end + 2;
    } else if (StartsWith(s, i, "<!--")) {
      const auto end = s.find("-->", i + 4);
      if (end == std::string_view::npos) return Corrupt("XML: unterminated comment");
      i = end + 3;
    } else if (StartsWith(s, i, "<![CDATA[")) {
      const auto end = s.find("]]>", i + 9);
      if (end == std::string_view::npos) return Corrupt("XML: unterminated CDATA section");
      if (path.empty()) return Corrupt("XML: CDATA outside the root element");
      text.back().append(s.substr(i + 9, end - i - 9));
      i = end + 3;
    } else if (StartsWith(s, i, "<!")) {
      return Corrupt("XML: DOCTYPE and declarations are not accepted");
    } else if (StartsWith(s, i, "</")) {
      size_t j = i + 2;
      const size_t name_start = j;
      while (j < s.size() && IsNameChar(s[j])) ++j;
      const std::string_view name = s.substr(name_start, j - name_start);
      while (j < s.size() && IsSpace(s[j])) ++j;
      if (j >= s.size() || s[j] != '>') return Corrupt("XML: malformed end tag");
      if (path.empty() || LocalName(name) != path.back()) {
        return Corrupt("XML: end tag does not match its start tag");
      }
      STOKER_RETURN_IF_ERROR(on_end(path, text.back()));
      path.pop_back();
      text.pop_back();
      i = j + 1;
    } else {
      size_t j = i + 1;
      const size_t name_start = j;
      while (j < s.size() && IsNameChar(s[j])) ++j;
      const std::string_view name = s.substr(name_start, j - name_start);
      // "<a:>" has a prefix but no name (found by xml_fuzz).
      if (LocalName(name).empty()) return Corrupt("XML: malformed start tag");
      if (path.empty() && seen_root) return Corrupt("XML: more than one root element");
      // Attributes: skipped, but their quoted values may hold '>' or '/'.
      bool self_closing = false;
      while (true) {
        while (j < s.size() && IsSpace(s[j])) ++j;
        if (j >= s.size()) return Corrupt("XML: unterminated start tag");
        if (s[j] == '>') {
          ++j;
          break;
        }
        if (s[j] == '/') {
          if (j + 1 >= s.size() || s[j + 1] != '>') return Corrupt("XML: malformed start tag");
          self_closing = true;
          j += 2;
          break;
        }
        const size_t attr_start = j;
        while (j < s.size() && IsNameChar(s[j])) ++j;
        if (j == attr_start) return Corrupt("XML: malformed attribute");
        while (j < s.size() && IsSpace(s[j])) ++j;
        if (j >= s.size() || s[j] != '=') return Corrupt("XML: malformed attribute");
        ++j;
        while (j < s.size() && IsSpace(s[j])) ++j;
        if (j >= s.size() || (s[j] != '"' && s[j] != '\'')) return Corrupt("XML: malformed attribute");
        const auto close = s.find(s[j], j + 1);
        if (close == std::string_view::npos) return Corrupt("XML: unterminated attribute value");
        j = close + 1;
      }
      if (path.size() >= kMaxDepth) return Corrupt("XML: nested too deeply");
      seen_root = true;
      path.push_back(LocalName(name));
      text.emplace_back();
      if (self_closing) {
        STOKER_RETURN_IF_ERROR(on_end(path, text.back()));
        path.pop_back();
        text.pop_back();
      }
      i = j;
    }
  }
  if (!path.empty()) return Corrupt("XML: document ends inside <" + std::string(path.back().substr(0, 64)) + ">");
  if (!seen_root) return Corrupt("XML: no root element");
  return Status::Ok();
}

Result<ListPage> ParseListObjectsV2(std::string_view xml) {
  ListPage page;
  ListedObject current;
  bool have_key = false, url_encoded = false, root_ok = false;
  Status st = ParseXml(xml, [&](const XmlPath& p, std::string& text) -> Status {
    if (p.size() == 1) {
      if (p[0] != "ListBucketResult") return Corrupt("expected a <ListBucketResult> reply");
      root_ok = true;
      return Status::Ok();
    }
    if (p[0] != "ListBucketResult") return Corrupt("expected a <ListBucketResult> reply");
    if (p.size() == 2) {
      if (p[1] == "IsTruncated") {
        if (text != "true" && text != "false") return Corrupt("ListObjectsV2 reply: bad <IsTruncated>");
        page.truncated = text == "true";
      } else if (p[1] == "NextContinuationToken") {
        page.next_token = std::move(text);
      } else if (p[1] == "EncodingType") {
        url_encoded = text == "url";
      } else if (p[1] == "Contents") {
        if (!have_key) return Corrupt("ListObjectsV2 reply: <Contents> without <Key>");
        page.objects.push_back(std::move(current));
        current = ListedObject{};
        have_key = false;
      }
      return Status::Ok();
    }
    if (p.size() == 3 && p[1] == "Contents") {
      if (p[2] == "Key") {
        current.key = std::move(text);
        have_key = true;
      } else if (p[2] == "Size") {
        STOKER_ASSIGN_OR_RETURN(current.size, ParseSize(text));
      }
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  if (!root_ok) return Corrupt("expected a <ListBucketResult> reply");
  if (url_encoded) {
    for (auto& o : page.objects) {
      auto k = http::UriDecode(o.key, /*plus_is_space=*/true);
      if (!k) return Corrupt("ListObjectsV2 reply: badly URL-encoded key");
      o.key = std::move(*k);
    }
  }
  if (page.truncated && page.next_token.empty()) {
    return Corrupt("ListObjectsV2 reply: truncated but no <NextContinuationToken>");
  }
  return page;
}

std::optional<S3Error> ParseS3Error(std::string_view xml) {
  S3Error e;
  bool is_error = false;
  Status st = ParseXml(xml, [&](const XmlPath& p, std::string& text) -> Status {
    if (p[0] != "Error") return Corrupt("not an <Error>");
    if (p.size() == 1) is_error = true;
    if (p.size() != 2) return Status::Ok();
    if (p[1] == "Code") e.code = std::move(text);
    else if (p[1] == "Message") e.message = std::move(text);
    else if (p[1] == "RequestId") e.request_id = std::move(text);
    else if (p[1] == "Region") e.region = std::move(text);
    else if (p[1] == "Endpoint") e.endpoint = std::move(text);
    return Status::Ok();
  });
  if (!st.ok() || !is_error) return std::nullopt;
  return e;
}

Result<std::string> ParseUploadId(std::string_view xml) {
  std::string id;
  bool root_ok = false;
  Status st = ParseXml(xml, [&](const XmlPath& p, std::string& text) -> Status {
    if (p[0] != "InitiateMultipartUploadResult") {
      return Corrupt("expected an <InitiateMultipartUploadResult> reply");
    }
    if (p.size() == 1) root_ok = true;
    if (p.size() == 2 && p[1] == "UploadId") id = std::move(text);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  if (!root_ok || id.empty()) return Corrupt("CreateMultipartUpload reply without an <UploadId>");
  return id;
}

std::string CompleteMultipartUploadXml(const std::vector<std::string>& etags) {
  std::string out =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
      "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (size_t i = 0; i < etags.size(); ++i) {
    out += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>";
    for (char c : etags[i]) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
      }
    }
    out += "</ETag></Part>";
  }
  out += "</CompleteMultipartUpload>";
  return out;
}

}  // namespace stoker::storage::s3
