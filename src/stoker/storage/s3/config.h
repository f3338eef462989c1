// Where an S3 backend finds its endpoint, region and credentials: the AWS
// way, as the AWS CLI and boto3 resolve them.
//
//   endpoint:    StorageOptions.endpoint_url > AWS_ENDPOINT_URL_S3 >
//                AWS_ENDPOINT_URL > profile's `s3 = endpoint_url` >
//                profile's `endpoint_url` > AWS (https://s3.<region>.amazonaws.com)
//   region:      AWS_REGION > AWS_DEFAULT_REGION > profile's `region` > us-east-1
//   credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
//                > profile in the shared credentials file > profile in the
//                config file > none: anonymous, unsigned requests
//   profile:     AWS_PROFILE > AWS_DEFAULT_PROFILE > "default"
//   files:       AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
//                AWS_CONFIG_FILE or ~/.aws/config
//   addressing:  profile's `s3 = addressing_style` (auto, path, virtual);
//                auto is virtual-hosted for AWS, path-style for a custom endpoint
//   attempts:    AWS_MAX_ATTEMPTS > profile's `max_attempts` > not set
//                (IoOptions::max_attempts, when set, wins over both)
//   CA bundle:   AWS_CA_BUNDLE > profile's `ca_bundle` > the system store
//                (IoOptions::ca_bundle, when set, wins over both); a leading
//                ~/ is the home folder; a file that cannot be read is an error
//
// AWS_RETRY_MODE is not read: retries always use full-jitter backoff.
// Not read (yet): SSO, assume-role, credential_process, web identity, and the
// EC2/ECS instance metadata services.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "stoker/status.h"
#include "stoker/storage/s3/sigv4.h"

namespace stoker::storage::s3 {

enum class AddressingStyle { kAuto, kPath, kVirtual };

struct S3Config {
  std::string region = "us-east-1";
  std::string endpoint_url;  // empty: AWS itself
  AddressingStyle addressing = AddressingStyle::kAuto;
  Credentials credentials;   // anonymous() when none were found
  // Where the credentials came from, for messages: "environment",
  // "profile 'x' in /home/u/.aws/credentials", "none (anonymous)".
  std::string credentials_source = "none (anonymous)";
  // Attempts per request from AWS_MAX_ATTEMPTS or the profile; 0: not set.
  int max_attempts = 0;
  // PEM file of trusted CAs from AWS_CA_BUNDLE or the profile; empty: not set.
  std::string ca_bundle;
};

// Looks up an environment variable; nullopt when unset. Empty values count
// as unset, as they do for the AWS CLI.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment.
EnvLookup ProcessEnv();

// Resolves the configuration. `endpoint_override` (StorageOptions.endpoint_url)
// wins over everything when not empty. Fails, naming the file and line or
// variable (never a value that could be a secret), on a malformed file, an
// explicitly named profile that does not exist, or half a key pair.
Result<S3Config> ResolveS3Config(const std::string& endpoint_override, const EnvLookup& env);

// An AWS-style INI file: [section] headers, `key = value` lines, # and ;
// comments, and indented sub-keys below a key with no value (the
// `s3 =\n  addressing_style = path` form) stored as "s3.addressing_style".
using IniSections = std::map<std::string, std::map<std::string, std::string>>;
Result<IniSections> ParseIni(std::string_view text, const std::string& name);

}  // namespace stoker::storage::s3
