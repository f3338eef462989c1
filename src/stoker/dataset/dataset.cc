#include "stoker/dataset/dataset.h"

#include "stoker/base/utf8.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>

namespace stoker::dataset {
namespace {

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
}

std::string ParentUri(const std::string& uri) {
  auto slash = uri.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return uri.substr(0, slash);
}

bool IsAbsoluteUri(std::string_view p) {
  return !p.empty() && (p.front() == '/' || p.find("://") != std::string_view::npos);
}

std::string LineRef(const std::string& name, size_t line) {
  return name + ":" + std::to_string(line);
}

Result<int64_t> ParseLabel(std::string_view s, const std::string& where) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v < 0) {
    return InvalidArgument(where + ": label '" + std::string(s) +
                           "' is not a non-negative integer");
  }
  return v;
}

// Splits one CSV record starting at `pos`; advances `pos` past its line end.
// Quoted fields may contain commas, doubled quotes and newlines.
Result<std::vector<std::string>> ReadCsvRecord(std::string_view text, size_t& pos,
                                               const std::string& where) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  while (pos < text.size()) {
    char c = text[pos++];
    if (quoted) {
      if (c == '"') {
        if (pos < text.size() && text[pos] == '"') {
          fields.back() += '"';
          ++pos;
        } else {
          quoted = false;
        }
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      break;
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  if (quoted) return InvalidArgument(where + ": unterminated quoted field");
  return fields;
}

void SkipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
}

// Parses a JSON string starting at s[i] == '"'.
Result<std::string> ParseJsonString(std::string_view s, size_t& i, const std::string& where) {
  std::string out;
  ++i;
  while (i < s.size()) {
    char c = s[i++];
    if (c == '"') return out;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i >= s.size()) break;
    char e = s[i++];
    switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        if (i + 4 > s.size()) return InvalidArgument(where + ": bad \\u escape");
        unsigned cp = 0;
        auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 4, cp, 16);
        if (ec != std::errc() || p != s.data() + i + 4)
          return InvalidArgument(where + ": bad \\u escape");
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
          unsigned lo = 0;
          auto [p2, ec2] = std::from_chars(s.data() + i + 2, s.data() + i + 6, lo, 16);
          if (ec2 == std::errc() && p2 == s.data() + i + 6 && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        AppendUtf8(out, cp);
        break;
      }
      default: return InvalidArgument(where + ": bad escape in string");
    }
  }
  return InvalidArgument(where + ": unterminated string");
}

// Skips any JSON value (for keys other than path/label).
Status SkipJsonValue(std::string_view s, size_t& i, const std::string& where) {
  SkipSpace(s, i);
  if (i >= s.size()) return InvalidArgument(where + ": missing value");
  if (s[i] == '"') return ParseJsonString(s, i, where).status();
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        STOKER_RETURN_IF_ERROR(ParseJsonString(s, i, where).status());
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++i;
          return Status::Ok();
        }
      }
      ++i;
    }
    return InvalidArgument(where + ": unterminated value");
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}') ++i;
  return Status::Ok();
}


// A manifest's value of a field on one line, before the field's kind is
// known.
struct RawValue {
  enum class Type { kMissing, kString, kNumber, kOther };
  Type type = Type::kMissing;
  std::string text;  // a string's characters; a number's or other value's JSON text
  std::string json;  // JSON Lines: the value as written
};

std::string Trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool ParsesAsInt(std::string_view s) {
  const std::string t = Trimmed(s);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  return !t.empty() && ec == std::errc() && ptr == t.data() + t.size();
}

bool ParsesAsNumber(std::string_view s) {
  const std::string t = Trimmed(s);
  double v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  return !t.empty() && ec == std::errc() && ptr == t.data() + t.size() && std::isfinite(v);
}

bool IsFileKind(FieldSpec::Kind k) {
  return k == FieldSpec::Kind::kBytes || k == FieldSpec::Kind::kNpy ||
         k == FieldSpec::Kind::kMask;
}

// Resolves each field's kind from its values (kAuto) and turns the values
// into what Sample::fields holds; errors name the manifest line.
Status ResolveManifestFields(const std::vector<FieldSpec>& specs,
                             const std::vector<std::vector<RawValue>>& raw,
                             const std::vector<size_t>& lines, const std::string& name,
                             const std::string& base_uri, const storage::Storage& storage,
                             Dataset& ds) {
  using K = FieldSpec::Kind;
  using T = RawValue::Type;
  for (size_t f = 0; f < specs.size(); ++f) {
    Field field{specs[f].name, specs[f].kind, false};
    if (field.kind == K::kAuto) {
      bool any = false, ints = true, numbers = true, other = false, strings = false;
      for (const auto& row : raw) {
        const RawValue& v = row[f];
        if (v.type == T::kMissing) continue;
        any = true;
        other |= v.type == T::kOther;
        // A JSON string is text even when it holds digits; a CSV cell
        // (Type::kString without JSON) is whatever it reads as.
        const bool numeric_source = v.type == T::kNumber || (v.type == T::kString && v.json.empty());
        strings |= v.type == T::kString && !v.json.empty();
        ints = ints && numeric_source && ParsesAsInt(v.text);
        numbers = numbers && numeric_source && ParsesAsNumber(v.text);
      }
      bool json_numbers = false;
      for (const auto& row : raw) json_numbers |= row[f].type == T::kNumber;
      field.kind = !any                    ? K::kText
                   : other                 ? K::kJson
                   : ints                  ? K::kInt
                   : numbers               ? K::kFloat
                   : strings && json_numbers ? K::kJson  // JSON strings and numbers mixed
                                           : K::kText;
    }
    field.file = IsFileKind(field.kind);
    for (size_t i = 0; i < raw.size(); ++i) {
      const RawValue& v = raw[i][f];
      auto& out = ds.samples[i].fields;
      if (out.size() < specs.size()) out.resize(specs.size());
      if (v.type == T::kMissing) continue;
      const std::string where =
          LineRef(name, lines[i]) + ": field '" + field.name + "' (" + FieldKindName(field.kind) + ")";
      switch (field.kind) {
        case K::kInt:
          if (v.type == T::kOther || (v.type == T::kString && !v.json.empty()) || !ParsesAsInt(v.text))
            return InvalidArgument(where + ": '" + v.text + "' is not an integer");
          out[f] = Trimmed(v.text);
          break;
        case K::kFloat:
          if (v.type == T::kOther || (v.type == T::kString && !v.json.empty()) ||
              !ParsesAsNumber(v.text))
            return InvalidArgument(where + ": '" + v.text + "' is not a number");
          out[f] = Trimmed(v.text);
          break;
        case K::kText:
          if (v.type == T::kOther) return InvalidArgument(where + ": " + v.text + " is not a string");
          out[f] = v.text;
          break;
        case K::kJson:
          out[f] = v.json.empty() ? v.text : v.json;
          break;
        default:  // a file
          if (v.type != T::kString) return InvalidArgument(where + ": expected a path, got " + v.text);
          if (v.text.empty()) break;  // no file: missing
          out[f] = IsAbsoluteUri(v.text) ? v.text : storage.Join(base_uri, v.text);
          break;
      }
    }
    ds.fields.push_back(std::move(field));
  }
  return Status::Ok();
}

}  // namespace

FieldSpec::Kind KindFromExtension(std::string_view field) {
  using K = FieldSpec::Kind;
  const auto dot = field.find_last_of('.');
  std::string ext(dot == std::string_view::npos ? field : field.substr(dot + 1));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "txt" || ext == "text") return K::kText;
  if (ext == "json") return K::kJson;
  if (ext == "npy") return K::kNpy;
  if (ext == "cls") return K::kInt;
  if (ext == "png") return K::kMask;
  return K::kBytes;
}

const char* FieldKindName(FieldSpec::Kind kind) {
  switch (kind) {
    case FieldSpec::Kind::kAuto: return "auto";
    case FieldSpec::Kind::kInt: return "int";
    case FieldSpec::Kind::kFloat: return "float";
    case FieldSpec::Kind::kText: return "text";
    case FieldSpec::Kind::kJson: return "json";
    case FieldSpec::Kind::kBytes: return "bytes";
    case FieldSpec::Kind::kNpy: return "npy";
    case FieldSpec::Kind::kMask: return "mask";
  }
  return "?";
}

bool HasImageExtension(std::string_view key) {
  static constexpr std::string_view kExt[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                               ".pgm", ".tif",  ".tiff", ".webp"};
  return std::any_of(std::begin(kExt), std::end(kExt),
                     [&](std::string_view e) { return EndsWithNoCase(key, e); });
}

namespace {

// Folder listing with fields: files grouped by their name up to the first
// dot (WebDataset's key), under each class folder.
Result<Dataset> ListImageFolderWithFields(const std::string& root_uri,
                                          const std::vector<storage::ObjectInfo>& listed,
                                          storage::Storage& storage,
                                          const std::vector<FieldSpec>& specs) {
  Dataset ds;
  for (const auto& spec : specs) {
    const auto kind = spec.kind == FieldSpec::Kind::kAuto ? KindFromExtension(spec.name) : spec.kind;
    ds.fields.push_back({spec.name, kind, true});
  }
  struct Group {
    std::string image;  // key of the image file ("" while none)
    std::vector<std::optional<std::string>> fields;
  };
  // class -> group key -> group; std::map keeps both sorted.
  std::map<std::string, std::map<std::string, Group>> by_class;
  for (const auto& obj : listed) {
    auto slash = obj.key.find('/');
    if (slash == std::string::npos || slash == 0) continue;  // not inside a class folder
    auto& groups = by_class[obj.key.substr(0, slash)];
    const auto base = obj.key.find_last_of('/') + 1;
    const auto dot = obj.key.find('.', base);
    if (dot == std::string::npos || dot == base) continue;  // no extension, or a dot file
    const std::string key = obj.key.substr(0, dot);
    const std::string_view rest = std::string_view(obj.key).substr(dot + 1);
    Group& g = groups[key];
    g.fields.resize(specs.size());
    bool is_field = false;
    for (size_t f = 0; f < specs.size(); ++f) {
      if (rest == specs[f].name) {
        g.fields[f] = storage.Join(root_uri, obj.key);
        is_field = true;
      }
    }
    if (!is_field && HasImageExtension(obj.key) && (g.image.empty() || obj.key < g.image)) {
      g.image = obj.key;
    }
  }
  int64_t label = 0;
  for (auto& [name, groups] : by_class) {
    ds.classes.push_back(name);
    for (auto& [key, g] : groups) {
      if (g.image.empty()) continue;  // fields without an image: not a sample
      ds.samples.push_back({storage.Join(root_uri, g.image), label, std::move(g.fields)});
    }
    ++label;
  }
  if (ds.samples.empty()) {
    return NotFound(root_uri + ": no images found (expected ImageFolder layout root/<class>/<image>)");
  }
  return ds;
}

Result<Dataset> ImageFolderFromListing(const std::string& root_uri,
                                       const std::vector<storage::ObjectInfo>& listed,
                                       storage::Storage& storage,
                                       const std::vector<FieldSpec>& fields) {
  if (!fields.empty()) return ListImageFolderWithFields(root_uri, listed, storage, fields);
  Dataset ds;
  std::map<std::string, std::vector<std::string>> by_class;
  for (const auto& obj : listed) {
    auto slash = obj.key.find('/');
    if (slash == std::string::npos || slash == 0) continue;  // not inside a class folder
    by_class[obj.key.substr(0, slash)];                    // a class even if it has no images
    if (HasImageExtension(obj.key)) by_class[obj.key.substr(0, slash)].push_back(obj.key);
  }
  int64_t label = 0;
  for (auto& [name, keys] : by_class) {
    ds.classes.push_back(name);
    for (auto& key : keys) ds.samples.push_back({storage.Join(root_uri, key), label, {}});
    ++label;
  }
  if (ds.samples.empty()) {
    return NotFound(root_uri + ": no images found (expected ImageFolder layout root/<class>/<image>)");
  }
  return ds;
}

}  // namespace

Result<Dataset> ListImageFolder(const std::string& root_uri, storage::Storage& storage,
                                const std::vector<FieldSpec>& fields) {
  auto listed = storage.List(root_uri);
  if (!listed.ok()) return listed.status();
  return ImageFolderFromListing(root_uri, *listed, storage, fields);
}

Result<Dataset> ParseCsvManifest(std::string_view text, const std::string& name,
                                 const std::string& base_uri, const storage::Storage& storage,
                                 const std::vector<FieldSpec>& fields) {
  Dataset ds;
  std::vector<int> field_cols(fields.size(), -1);
  std::vector<std::vector<RawValue>> raw;
  std::vector<size_t> lines;
  size_t pos = 0, line = 0;
  int path_col = -1, label_col = -1;
  size_t header_fields = 0;
  bool have_header = false;
  while (pos < text.size()) {
    ++line;
    size_t start = pos;
    auto rec = ReadCsvRecord(text, pos, LineRef(name, line));
    if (!rec.ok()) return rec.status();
    // Count the newlines a quoted field swallowed.
    line += static_cast<size_t>(std::count(text.begin() + start, text.begin() + pos, '\n')) -
            (pos > start && text[pos - 1] == '\n' ? 1 : 0);
    auto& f = *rec;
    bool blank = f.size() == 1 && std::all_of(f[0].begin(), f[0].end(), [](char c) {
                   return std::isspace(static_cast<unsigned char>(c));
                 });
    if (blank) continue;
    if (!have_header) {
      for (size_t c = 0; c < f.size(); ++c) {
        std::string h = f[c];
        h.erase(0, h.find_first_not_of(" \t\xEF\xBB\xBF"));  // spaces and a UTF-8 BOM
        h.erase(h.find_last_not_of(" \t") + 1);
        if (h == "path") path_col = static_cast<int>(c);
        if (h == "label") label_col = static_cast<int>(c);
      }
      if (path_col < 0 || label_col < 0) {
        return InvalidArgument(LineRef(name, line) + ": expected a header with columns 'path' and 'label'");
      }
      for (size_t k = 0; k < fields.size(); ++k) {
        for (size_t c = 0; c < f.size(); ++c) {
          if (Trimmed(f[c]) == fields[k].name) field_cols[k] = static_cast<int>(c);
        }
        if (field_cols[k] < 0) {
          std::string cols;
          for (const auto& h : f) cols += (cols.empty() ? "" : ", ") + Trimmed(h);
          return InvalidArgument(LineRef(name, line) + ": no column '" + fields[k].name +
                                 "' for field '" + fields[k].name + "' (columns: " + cols + ")");
        }
      }
      have_header = true;
      header_fields = f.size();
      continue;
    }
    const std::string where = LineRef(name, line);
    // As many fields as the header has columns: an unquoted comma in a path
    // would otherwise shift the fields and give a wrong path or label.
    if (f.size() != header_fields) {
      return InvalidArgument(where + ": expected " + std::to_string(header_fields) +
                             " fields as in the header, got " + std::to_string(f.size()) +
                             (f.size() > header_fields ? " (quote a path that contains a comma)"
                                                       : ""));
    }
    const std::string& path = f[path_col];
    if (path.empty()) return InvalidArgument(where + ": empty path");
    auto label = ParseLabel(f[label_col], where);
    if (!label.ok()) return label.status();
    ds.samples.push_back({IsAbsoluteUri(path) ? path : storage.Join(base_uri, path), *label, {}});
    if (!fields.empty()) {
      auto& row = raw.emplace_back(fields.size());
      for (size_t k = 0; k < fields.size(); ++k) {
        row[k].type = RawValue::Type::kString;
        row[k].text = f[field_cols[k]];
      }
      lines.push_back(line);
    }
  }
  if (!have_header) return InvalidArgument(name + ": empty manifest");
  if (ds.samples.empty()) return NotFound(name + ": manifest lists no samples");
  STOKER_RETURN_IF_ERROR(
      ResolveManifestFields(fields, raw, lines, name, base_uri, storage, ds));
  return ds;
}

Result<Dataset> ParseJsonlManifest(std::string_view text, const std::string& name,
                                   const std::string& base_uri, const storage::Storage& storage,
                                   const std::vector<FieldSpec>& fields) {
  Dataset ds;
  std::vector<std::vector<RawValue>> raw;
  std::vector<size_t> lines;
  std::vector<bool> seen(fields.size(), false);
  size_t line = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view s = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    const std::string where = LineRef(name, line);
    // A UTF-8 byte order mark (Windows editors write one) is not content.
    if (line == 1 && s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
    size_t i = 0;
    SkipSpace(s, i);
    if (i == s.size()) continue;  // blank line
    if (s[i] != '{') return InvalidArgument(where + ": expected a JSON object");
    ++i;
    std::optional<std::string> path;
    std::optional<int64_t> label;
    std::vector<RawValue> row(fields.size());
    while (true) {
      SkipSpace(s, i);
      if (i < s.size() && s[i] == '}') break;
      if (i >= s.size() || s[i] != '"') return InvalidArgument(where + ": expected a key");
      auto key = ParseJsonString(s, i, where);
      if (!key.ok()) return key.status();
      SkipSpace(s, i);
      if (i >= s.size() || s[i] != ':') return InvalidArgument(where + ": expected ':'");
      ++i;
      SkipSpace(s, i);
      if (*key == "path") {
        if (i >= s.size() || s[i] != '"') return InvalidArgument(where + ": \"path\" must be a string");
        auto v = ParseJsonString(s, i, where);
        if (!v.ok()) return v.status();
        path = std::move(*v);
      } else if (*key == "label") {
        size_t start = i;
        while (i < s.size() && s[i] != ',' && s[i] != '}') ++i;
        auto v = ParseLabel(s.substr(start, i - start), where);
        if (!v.ok()) return v.status();
        label = *v;
      } else {
        const size_t start = i;
        STOKER_RETURN_IF_ERROR(SkipJsonValue(s, i, where));
        for (size_t k = 0; k < fields.size(); ++k) {
          if (*key != fields[k].name) continue;
          seen[k] = true;
          RawValue& v = row[k];
          v.json = Trimmed(s.substr(start, i - start));
          if (v.json == "null") {
            v = RawValue{};
          } else if (s[start] == '"') {
            size_t j = start;
            auto str = ParseJsonString(s, j, where);
            if (!str.ok()) return str.status();
            v.type = RawValue::Type::kString;
            v.text = std::move(*str);
          } else {
            v.type = (s[start] == '-' || std::isdigit(static_cast<unsigned char>(s[start])))
                         ? RawValue::Type::kNumber
                         : RawValue::Type::kOther;
            v.text = v.json;
          }
        }
      }
      SkipSpace(s, i);
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == '}') break;
      return InvalidArgument(where + ": expected ',' or '}'");
    }
    ++i;  // the closing '}'
    SkipSpace(s, i);
    // One object per line: text after it is a malformed line (often two
    // objects on one line), not something to drop silently.
    if (i != s.size()) return InvalidArgument(where + ": unexpected text after the JSON object");
    if (!path || path->empty()) return InvalidArgument(where + ": missing \"path\"");
    if (!label) return InvalidArgument(where + ": missing \"label\"");
    ds.samples.push_back(
        {IsAbsoluteUri(*path) ? *path : storage.Join(base_uri, *path), *label, {}});
    if (!fields.empty()) {
      raw.push_back(std::move(row));
      lines.push_back(line);
    }
  }
  if (ds.samples.empty()) return NotFound(name + ": manifest lists no samples");
  for (size_t k = 0; k < fields.size(); ++k) {
    if (!seen[k]) {
      return InvalidArgument(name + ": no line has the key '" + fields[k].name + "' for field '" +
                             fields[k].name + "'");
    }
  }
  STOKER_RETURN_IF_ERROR(
      ResolveManifestFields(fields, raw, lines, name, base_uri, storage, ds));
  return ds;
}

ShardEntry Shards::raw_entry(uint64_t e) const {
  if (!tar) return index.entry(e);
  const TarIndex::Entry& t = tar->entries[e];
  ShardEntry out;
  out.offset = t.offset;
  out.source = e;
  out.label = t.label;
  out.shard = t.shard;
  out.length = t.length;
  out.image_length = t.image_length;
  out.image_offset = t.image_offset;
  out.image_format = t.image_format;
  return out;
}

std::optional<FieldRange> Shards::field_range(uint64_t i, size_t f) const {
  if (f == kKeyField) return std::nullopt;
  if (!tar) return index.field_range(entry_number(i), f);
  const FieldRange r = tar->ranges[entry_number(i) * tar->fields.size() + f];
  if (r.length == kFieldMissing) return std::nullopt;
  return r;
}

std::string_view Shards::key(uint64_t i) const {
  if (!tar) return {};
  const TarIndex::Entry& t = tar->entries[entry_number(i)];
  return std::string_view(tar->keys).substr(t.key_offset, t.key_length);
}

uint64_t Shards::index_bytes() const {
  if (!tar) return index.bytes().size();
  return tar->entries.capacity() * sizeof(TarIndex::Entry) +
         tar->ranges.capacity() * sizeof(FieldRange) + tar->keys.capacity();
}

Status Shards::CheckRecord(std::span<const uint8_t> record, uint64_t i) const {
  const ShardEntry e = entry(i);
  if (record.size() != e.length) {
    return Corrupt("the shard is shorter than its index says (read " + std::to_string(record.size()) +
                   " of " + std::to_string(e.length) + " bytes at offset " +
                   std::to_string(e.offset) + ")");
  }
  if (checksummed() && Crc32c(record) != e.crc) {
    return Corrupt("checksum mismatch: the record's bytes are not those the index was written for");
  }
  return Status::Ok();
}

std::string Dataset::SampleName(uint64_t i) const {
  if (!shards) return samples[i].uri;
  const ShardEntry e = shards->entry(i);
  if (shards->tar) {
    return shards->shard_uris[e.shard] + ", sample '" + std::string(shards->key(i)) + "'";
  }
  return shards->shard_uris[e.shard] + ", sample " + std::to_string(shards->entry_number(i)) +
         " (source " +
         std::to_string(e.source) + ")";
}

Status ApplyShardFilter(Shards& shards, const ShardFilter& where, const std::string& name) {
  const uint64_t n = shards.num_entries();
  ShardColumns c;
  for (auto* v : {&c.label, &c.source, &c.shard, &c.bytes, &c.width, &c.height, &c.image_format}) {
    v->resize(n);
  }
  for (uint64_t i = 0; i < n; ++i) {
    const ShardEntry e = shards.raw_entry(i);
    c.label[i] = e.label;
    c.source[i] = static_cast<int64_t>(e.source);
    c.shard[i] = e.shard;
    c.bytes[i] = e.length;
    c.width[i] = e.width;
    c.height[i] = e.height;
    c.image_format[i] = static_cast<int64_t>(e.image_format);
  }
  auto keep = where(c);
  if (!keep.ok()) return keep.status().WithContext(name + ": where");
  if (keep->size() != n) {
    return InvalidArgument(name + ": where gave " + std::to_string(keep->size()) + " flags for " +
                           std::to_string(n) + " samples");
  }
  shards.filtered = true;
  for (uint64_t i = 0; i < n; ++i) {
    if ((*keep)[i]) shards.selected.push_back(i);
  }
  shards.selected.shrink_to_fit();
  if (shards.selected.empty()) {
    return NotFound(name + ": where keeps none of its " + std::to_string(n) + " samples");
  }
  return Status::Ok();
}

Result<Dataset> OpenShards(const std::string& index_uri, storage::Storage& storage,
                           const std::vector<FieldSpec>& fields, const ShardFilter& where) {
  auto bytes = storage.Read(index_uri);
  if (!bytes.ok()) return bytes.status().WithContext("cannot read shard index");
  auto index = ParseShardIndex(std::string(bytes->begin(), bytes->end()), index_uri);
  if (!index.ok()) return index.status();
  auto shards = std::make_shared<Shards>();
  shards->index_uri = index_uri;
  shards->root = ParentUri(index_uri);
  shards->index = std::move(*index);
  for (uint32_t k = 0; k < shards->index.shards().size(); ++k) {
    shards->shard_uris.push_back(storage.Join(shards->root, ShardName(k)));
  }
  Dataset d;
  d.classes = shards->index.classes();
  const auto& have = shards->index.fields();
  for (const FieldSpec& spec : fields) {
    size_t f = 0;
    while (f < have.size() && have[f].name != spec.name) ++f;
    if (f == have.size()) {
      std::string names;
      for (const auto& h : have) names += (names.empty() ? "" : ", ") + h.name;
      return NotFound(index_uri + ": no field '" + spec.name + "' in this shard dataset (" +
                      (names.empty() ? std::string("it has none") : "it has " + names) + ")");
    }
    // The kind asked for wins (a JSON field read as bytes, say); auto is
    // the kind the converter recorded.
    d.fields.push_back({spec.name, spec.kind == FieldSpec::Kind::kAuto ? have[f].kind : spec.kind,
                        /*file=*/true});
    shards->field_map.push_back(f);
  }
  if (where) STOKER_RETURN_IF_ERROR(ApplyShardFilter(*shards, where, index_uri));
  d.shards = std::move(shards);
  return d;
}

Result<Dataset> OpenDataset(const std::string& uri, storage::Storage& storage,
                            const std::vector<FieldSpec>& fields, const ShardFilter& where,
                            const std::string& label_field) {
  const bool csv = EndsWithNoCase(uri, ".csv");
  const bool jsonl = EndsWithNoCase(uri, ".jsonl");
  if (EndsWithNoCase(uri, std::string("/") + kShardIndexName) || uri == kShardIndexName) {
    return OpenShards(uri, storage, fields, where);
  }
  if (IsWebDatasetUri(uri)) return OpenWebDataset(uri, storage, fields, where, label_field);
  const auto not_shards = [&] {
    return InvalidArgument(uri + " is not a shard dataset: where= filters a shard dataset's "
                           "index (stoker convert writes one)");
  };
  if (where && (csv || jsonl)) return not_shards();
  if (!csv && !jsonl) {
    // A folder or prefix with index.stoker at its top is a shard dataset
    // (its listing is the shards and the index; the index's own URI opens
    // it with no listing at all).
    auto listed = storage.List(uri);
    if (!listed.ok()) return listed.status();
    for (const auto& obj : *listed) {
      if (obj.key == kShardIndexName) {
        return OpenShards(storage.Join(uri, kShardIndexName), storage, fields, where);
      }
    }
    // A folder of tars and no images is WebDataset.
    bool tars = false, images = false;
    for (const auto& obj : *listed) {
      tars |= EndsWithNoCase(obj.key, ".tar");
      images |= HasImageExtension(obj.key);
    }
    if (tars && !images) {
      std::vector<std::string> uris;
      for (const auto& obj : *listed) {
        if (EndsWithNoCase(obj.key, ".tar")) uris.push_back(storage.Join(uri, obj.key));
      }
      return OpenTarShards(std::move(uris), uri, storage, fields, where, label_field);
    }
    if (where) return not_shards();
    return ImageFolderFromListing(uri, *listed, storage, fields);
  }
  auto bytes = storage.Read(uri);
  if (!bytes.ok()) return bytes.status().WithContext("cannot read manifest");
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  const std::string base = ParentUri(uri);
  return csv ? ParseCsvManifest(text, uri, base, storage, fields)
             : ParseJsonlManifest(text, uri, base, storage, fields);
}

}  // namespace stoker::dataset
