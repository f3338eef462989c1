#include "stoker/storage/s3/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

namespace stoker::storage::s3 {
namespace {

namespace fs = std::filesystem;

// A fake environment plus a private HOME with ~/.aws files.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() /
            ("stoker_s3_config_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(home_);
    fs::create_directories(home_ / ".aws");
    env_["HOME"] = home_.string();
  }
  void TearDown() override { fs::remove_all(home_); }

  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(home_ / rel) << text;
  }
  EnvLookup Env() {
    return [this](const std::string& k) -> std::optional<std::string> {
      auto it = env_.find(k);
      if (it == env_.end() || it->second.empty()) return std::nullopt;
      return it->second;
    };
  }
  Result<S3Config> Resolve(const std::string& endpoint = "") {
    return ResolveS3Config(endpoint, Env());
  }

  fs::path home_;
  std::map<std::string, std::string> env_;
};

TEST_F(ConfigTest, DefaultsToAnonymousUsEast1OnAws) {
  auto c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->region, "us-east-1");
  EXPECT_EQ(c->endpoint_url, "");
  EXPECT_TRUE(c->credentials.anonymous());
  EXPECT_EQ(c->credentials_source, "none (anonymous)");
}

TEST_F(ConfigTest, EnvironmentCredentialsAndRegion) {
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  env_["AWS_SESSION_TOKEN"] = "envtoken";
  env_["AWS_DEFAULT_REGION"] = "eu-west-3";
  Write(".aws/credentials", "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = f\n");
  auto c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->credentials.access_key_id, "AKIDENV");
  EXPECT_EQ(c->credentials.secret_access_key, "envsecret");
  EXPECT_EQ(c->credentials.session_token, "envtoken");
  EXPECT_EQ(c->credentials_source, "environment");
  EXPECT_EQ(c->region, "eu-west-3");
  env_["AWS_REGION"] = "ap-south-1";  // wins over AWS_DEFAULT_REGION
  EXPECT_EQ(Resolve()->region, "ap-south-1");
}

TEST_F(ConfigTest, HalfAKeyPairIsAnErrorWithoutTheValue) {
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  auto c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("AWS_SECRET_ACCESS_KEY"), std::string::npos);
  EXPECT_EQ(c.status().message().find("AKIDENV"), std::string::npos);
}

TEST_F(ConfigTest, ProfileFromSharedFiles) {
  Write(".aws/credentials",
        "# comment\n[default]\naws_access_key_id=AKIDDEFAULT\naws_secret_access_key=d\n\n"
        "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = w/secret+x\n"
        "aws_session_token = wtok\n");
  Write(".aws/config",
        "[default]\nregion = us-west-2\n\n[profile work]\nregion = eu-central-1\n"
        "endpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = virtual\n");
  auto c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->credentials.access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(c->region, "us-west-2");
  EXPECT_EQ(c->addressing, AddressingStyle::kAuto);

  env_["AWS_PROFILE"] = "work";
  c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->credentials.access_key_id, "AKIDWORK");
  EXPECT_EQ(c->credentials.secret_access_key, "w/secret+x");
  EXPECT_EQ(c->credentials.session_token, "wtok");
  EXPECT_EQ(c->region, "eu-central-1");
  EXPECT_EQ(c->endpoint_url, "http://127.0.0.1:9000");
  EXPECT_EQ(c->addressing, AddressingStyle::kVirtual);
  EXPECT_EQ(c->credentials_source, "profile 'work' in " + (home_ / ".aws/credentials").string());
}

TEST_F(ConfigTest, CredentialsMayLiveInTheConfigFile) {
  Write(".aws/config", "[profile cfg]\naws_access_key_id = AKIDCFG\naws_secret_access_key = c\n");
  env_["AWS_PROFILE"] = "cfg";
  auto c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->credentials.access_key_id, "AKIDCFG");
}

TEST_F(ConfigTest, FileLocationsFromEnvironment) {
  fs::create_directories(home_ / "elsewhere");
  Write("elsewhere/creds", "[p]\naws_access_key_id = AKIDX\naws_secret_access_key = x\n");
  Write("elsewhere/conf", "[profile p]\nregion = sa-east-1\n");
  env_["AWS_SHARED_CREDENTIALS_FILE"] = (home_ / "elsewhere/creds").string();
  env_["AWS_CONFIG_FILE"] = (home_ / "elsewhere/conf").string();
  env_["AWS_PROFILE"] = "p";
  auto c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->credentials.access_key_id, "AKIDX");
  EXPECT_EQ(c->region, "sa-east-1");
}

TEST_F(ConfigTest, EndpointPrecedence) {
  Write(".aws/config",
        "[default]\nendpoint_url = http://profile:1\nservices = local\n\n"
        "[services local]\ns3 =\n  endpoint_url = http://service:2\n");
  EXPECT_EQ(Resolve()->endpoint_url, "http://service:2");
  env_["AWS_ENDPOINT_URL"] = "http://generic:3";
  EXPECT_EQ(Resolve()->endpoint_url, "http://generic:3");
  env_["AWS_ENDPOINT_URL_S3"] = "http://s3only:4";
  EXPECT_EQ(Resolve()->endpoint_url, "http://s3only:4");
  EXPECT_EQ(Resolve("http://option:5")->endpoint_url, "http://option:5");
}

TEST_F(ConfigTest, MissingNamedProfileIsAnError) {
  env_["AWS_PROFILE"] = "nope";
  auto c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'nope'"), std::string::npos);
}

TEST_F(ConfigTest, MalformedFileNamesTheLineNotTheContent) {
  Write(".aws/credentials", "[default]\nthis line has a secret in it\n");
  auto c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("credentials:2"), std::string::npos);
  EXPECT_EQ(c.status().message().find("secret in it"), std::string::npos);
}

TEST(Ini, ParsesSectionsCommentsAndNestedKeys) {
  auto ini = ParseIni(
      "\xEF\xBB\xBF; lead comment\r\n[a]\r\nk1 = v1\r\nK2: v2\n  # indented comment\n"
      "s3 =\n  addressing_style = path\n  endpoint_url = http://x\nafter = y\n[ b ]\n",
      "t");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  auto& a = (*ini)["a"];
  EXPECT_EQ(a["k1"], "v1");
  EXPECT_EQ(a["k2"], "v2");
  EXPECT_EQ(a["s3.addressing_style"], "path");
  EXPECT_EQ(a["s3.endpoint_url"], "http://x");
  EXPECT_EQ(a["after"], "y");
  EXPECT_TRUE(ini->count("b"));
  EXPECT_FALSE(ParseIni("k = v\n", "t").ok());
  EXPECT_FALSE(ParseIni("[unterminated\n", "t").ok());
  EXPECT_TRUE(ParseIni("", "t").ok());
}

TEST_F(ConfigTest, MaxAttemptsFromEnvironmentThenProfile) {
  auto c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_attempts, 0);  // not set
  Write(".aws/config", "[default]\nmax_attempts = 4\n");
  c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->max_attempts, 4);
  // Whole strings, not literals, assigned: GCC 12 warns falsely (-Wrestrict)
  // on re-assigning a literal to a map's string.
  env_["AWS_MAX_ATTEMPTS"] = std::string("7");
  c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_attempts, 7);
  env_["AWS_MAX_ATTEMPTS"] = std::string("three");
  c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("AWS_MAX_ATTEMPTS must be a positive integer, got 'three'"),
            std::string::npos)
      << c.status().message();
  env_["AWS_MAX_ATTEMPTS"] = std::string("0");
  EXPECT_FALSE(Resolve().ok());
}

TEST_F(ConfigTest, CaBundleFromEnvironmentThenProfile) {
  auto c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ca_bundle, "");  // not set: the system store
  Write("profile-ca.pem", "-----BEGIN CERTIFICATE-----\n");
  Write("env-ca.pem", "-----BEGIN CERTIFICATE-----\n");
  Write(".aws/config", "[default]\nca_bundle = ~/profile-ca.pem\n");
  c = Resolve();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_bundle, (home_ / "profile-ca.pem").string());
  env_["AWS_CA_BUNDLE"] = (home_ / "env-ca.pem").string();
  c = Resolve();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ca_bundle, (home_ / "env-ca.pem").string());
  // A path that cannot be read fails at once, naming where it came from.
  env_["AWS_CA_BUNDLE"] = (home_ / "missing.pem").string();
  c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("AWS_CA_BUNDLE names '" + (home_ / "missing.pem").string() +
                                      "', which cannot be read"),
            std::string::npos)
      << c.status().message();
  env_.erase("AWS_CA_BUNDLE");
  Write(".aws/config", "[default]\nca_bundle = /nonexistent/ca.pem\n");
  c = Resolve();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("ca_bundle names '/nonexistent/ca.pem'"), std::string::npos)
      << c.status().message();
}

}  // namespace
}  // namespace stoker::storage::s3
