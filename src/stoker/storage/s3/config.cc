#include "stoker/storage/s3/config.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "stoker/storage/http/url.h"

namespace stoker::storage::s3 {
namespace {

using http::ToLower;
using http::Trim;

// Reads `path`; nullopt if it does not exist, an error if it cannot be read.
Result<std::optional<std::string>> ReadOptionalFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<std::string>();
    return IOError(path + ": cannot read: " + std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::optional<std::string>(ss.str());
}

std::optional<std::string> Lookup(const IniSections& ini, const std::string& section,
                                  const std::string& key) {
  auto s = ini.find(section);
  if (s == ini.end()) return std::nullopt;
  auto k = s->second.find(key);
  if (k == s->second.end() || k->second.empty()) return std::nullopt;
  return k->second;
}

struct Profile {
  const IniSections* ini = nullptr;
  std::string section;  // empty: not present
  std::optional<std::string> Get(const std::string& key) const {
    if (!ini || section.empty()) return std::nullopt;
    return Lookup(*ini, section, key);
  }
};

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
}

Result<IniSections> ParseIni(std::string_view text, const std::string& name) {
  IniSections out;
  std::string section, parent;  // parent: a key with no value, owning indented sub-keys
  bool in_section = false;
  size_t line_no = 0, pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    if (line_no == 1 && raw.substr(0, 3) == "\xEF\xBB\xBF") raw.remove_prefix(3);
    const bool indented = !raw.empty() && (raw.front() == ' ' || raw.front() == '\t');
    std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') {
      if (end == text.size()) break;
      continue;
    }
    const std::string where = name + ":" + std::to_string(line_no);
    if (line.front() == '[') {
      if (line.back() != ']') return InvalidArgument(where + ": unterminated section header");
      section = std::string(Trim(line.substr(1, line.size() - 2)));
      out[section];
      in_section = true;
      parent.clear();
    } else {
      const auto eq = line.find_first_of("=:");
      if (!in_section) return InvalidArgument(where + ": a setting before any [section]");
      if (eq == std::string_view::npos) {
        return InvalidArgument(where + ": expected 'key = value'");
      }
      std::string key = ToLower(Trim(line.substr(0, eq)));
      std::string value(Trim(line.substr(eq + 1)));
      if (key.empty()) return InvalidArgument(where + ": empty key");
      if (indented && !parent.empty()) {
        out[section][parent + "." + key] = std::move(value);
      } else {
        parent = value.empty() ? key : std::string();
        out[section][key] = std::move(value);
      }
    }
    if (end == text.size()) break;
  }
  return out;
}

Result<S3Config> ResolveS3Config(const std::string& endpoint_override, const EnvLookup& env) {
  S3Config cfg;
  const auto home = env("HOME");
  const std::string aws_dir = (home ? *home : std::string(".")) + "/.aws/";
  const std::string creds_path = env("AWS_SHARED_CREDENTIALS_FILE").value_or(aws_dir + "credentials");
  const std::string config_path = env("AWS_CONFIG_FILE").value_or(aws_dir + "config");

  std::optional<std::string> named_profile = env("AWS_PROFILE");
  if (!named_profile) named_profile = env("AWS_DEFAULT_PROFILE");
  const std::string profile_name = named_profile.value_or("default");

  IniSections creds_ini, config_ini;
  STOKER_ASSIGN_OR_RETURN(auto creds_text, ReadOptionalFile(creds_path));
  if (creds_text) {
    STOKER_ASSIGN_OR_RETURN(creds_ini, ParseIni(*creds_text, creds_path));
  }
  STOKER_ASSIGN_OR_RETURN(auto config_text, ReadOptionalFile(config_path));
  if (config_text) {
    STOKER_ASSIGN_OR_RETURN(config_ini, ParseIni(*config_text, config_path));
  }
  Profile from_creds{&creds_ini, creds_ini.count(profile_name) ? profile_name : ""};
  Profile from_config{&config_ini, ""};
  if (config_ini.count("profile " + profile_name)) {
    from_config.section = "profile " + profile_name;
  } else if (profile_name == "default" && config_ini.count("default")) {
    from_config.section = "default";
  }
  if (named_profile && from_creds.section.empty() && from_config.section.empty()) {
    return InvalidArgument("AWS profile '" + profile_name + "' not found in " + creds_path +
                           " or " + config_path);
  }

  // Region.
  if (auto r = env("AWS_REGION")) {
    cfg.region = *r;
  } else if (auto r2 = env("AWS_DEFAULT_REGION")) {
    cfg.region = *r2;
  } else if (auto r3 = from_config.Get("region")) {
    cfg.region = *r3;
  }

  // Endpoint.
  std::optional<std::string> services_endpoint;
  if (auto services = from_config.Get("services")) {
    services_endpoint = Lookup(config_ini, "services " + *services, "s3.endpoint_url");
  }
  if (!endpoint_override.empty()) {
    cfg.endpoint_url = endpoint_override;
  } else if (auto e = env("AWS_ENDPOINT_URL_S3")) {
    cfg.endpoint_url = *e;
  } else if (auto e2 = env("AWS_ENDPOINT_URL")) {
    cfg.endpoint_url = *e2;
  } else if (services_endpoint) {
    cfg.endpoint_url = *services_endpoint;
  } else if (auto e3 = from_config.Get("endpoint_url")) {
    cfg.endpoint_url = *e3;
  }

  // Addressing style.
  if (auto style = from_config.Get("s3.addressing_style")) {
    const std::string s = ToLower(*style);
    if (s == "path") {
      cfg.addressing = AddressingStyle::kPath;
    } else if (s == "virtual") {
      cfg.addressing = AddressingStyle::kVirtual;
    } else if (s != "auto") {
      return InvalidArgument(config_path + ": profile '" + profile_name +
                             "': s3 addressing_style must be auto, path or virtual, got '" + *style +
                             "'");
    }
  }

  // Attempts: the AWS SDKs' AWS_MAX_ATTEMPTS / max_attempts.
  {
    std::optional<std::string> v = env("AWS_MAX_ATTEMPTS");
    std::string where = "AWS_MAX_ATTEMPTS";
    if (!v) {
      v = from_config.Get("max_attempts");
      where = config_path + ": profile '" + profile_name + "': max_attempts";
    }
    if (v) {
      int n = 0;
      bool valid = !v->empty() && v->size() <= 6;
      for (char c : *v) {
        if (c < '0' || c > '9') valid = false;
        if (valid) n = n * 10 + (c - '0');
      }
      if (!valid || n < 1) {
        return InvalidArgument(where + " must be a positive integer, got '" + *v + "'");
      }
      cfg.max_attempts = n;
    }
  }

  // CA bundle: botocore's AWS_CA_BUNDLE / ca_bundle. Checked here so a
  // wrong path fails when the Loader is made, naming where it came from.
  {
    std::optional<std::string> v = env("AWS_CA_BUNDLE");
    std::string where = "AWS_CA_BUNDLE";
    if (!v) {
      v = from_config.Get("ca_bundle");
      where = config_path + ": profile '" + profile_name + "': ca_bundle";
    }
    if (v) {
      std::string path = *v;
      if (path.rfind("~/", 0) == 0) {
        if (auto home = env("HOME")) path = *home + path.substr(1);
      }
      if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
        std::fclose(f);
      } else {
        return InvalidArgument(where + " names '" + path + "', which cannot be read: " +
                               std::strerror(errno));
      }
      cfg.ca_bundle = std::move(path);
    }
  }

  // Credentials.
  auto id = env("AWS_ACCESS_KEY_ID");
  auto secret = env("AWS_SECRET_ACCESS_KEY");
  if (id || secret) {
    if (!id || !secret) {
      return InvalidArgument(std::string(id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
                             " is set but " +
                             (id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID") +
                             " is not: set both, or neither");
    }
    cfg.credentials = {*id, *secret, env("AWS_SESSION_TOKEN").value_or("")};
    cfg.credentials_source = "environment";
    return cfg;
  }
  for (const auto& [p, path] : {std::pair{&from_creds, &creds_path}, {&from_config, &config_path}}) {
    auto pid = p->Get("aws_access_key_id");
    auto psecret = p->Get("aws_secret_access_key");
    if (!pid && !psecret) continue;
    if (!pid || !psecret) {
      return InvalidArgument(*path + ": profile '" + profile_name + "' has " +
                             (pid ? "aws_access_key_id" : "aws_secret_access_key") + " but no " +
                             (pid ? "aws_secret_access_key" : "aws_access_key_id"));
    }
    cfg.credentials = {*pid, *psecret, p->Get("aws_session_token").value_or("")};
    cfg.credentials_source = "profile '" + profile_name + "' in " + *path;
    return cfg;
  }
  return cfg;  // anonymous
}

}  // namespace stoker::storage::s3
