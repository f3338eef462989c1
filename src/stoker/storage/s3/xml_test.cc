#include "stoker/storage/s3/xml.h"

#include <gtest/gtest.h>

#include <random>

namespace stoker::storage::s3 {
namespace {

constexpr char kPage[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>train/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>train/cat/a%20b%2Bc.jpg</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>118000</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>train/dog/x+y.jpg</Key><Size>0</Size></Contents>
  <Contents><Key>train/dog/%E2%9C%93.png</Key><Size>7</Size></Contents>
</ListBucketResult>)";

TEST(Xml, ParsesAListPage) {
  auto page = ParseListObjectsV2(kPage);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->objects.size(), 3u);
  EXPECT_EQ(page->objects[0].key, "train/cat/a b+c.jpg");
  EXPECT_EQ(page->objects[0].size, 118000);
  EXPECT_EQ(page->objects[1].key, "train/dog/x y.jpg");  // '+' is a space in url encoding
  EXPECT_EQ(page->objects[1].size, 0);
  EXPECT_EQ(page->objects[2].key, "train/dog/\xE2\x9C\x93.png");
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

TEST(Xml, KeysAreLiteralWithoutUrlEncodingAndEntitiesDecode) {
  auto page = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>false</IsTruncated>"
      "<Contents><Key>a%20&amp;&lt;b&gt;&#233;&#x41;<![CDATA[<raw>&amp;]]></Key><Size>1</Size></Contents>"
      "<Contents><Key/><Size>2</Size></Contents>"
      "</ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "a%20&<b>\xC3\xA9" "A<raw>&amp;");
  EXPECT_EQ(page->objects[1].key, "");
  EXPECT_FALSE(page->truncated);
}

TEST(Xml, EmptyListing) {
  auto page = ParseListObjectsV2(
      "<ListBucketResult xmlns='x'><Name>b</Name><KeyCount>0</KeyCount>"
      "<IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->objects.empty());
}

TEST(Xml, ParsesErrors) {
  auto e = ParseS3Error(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
      "<Message>The specified key does not exist.</Message><Key>a/b.jpg</Key>"
      "<RequestId>4442587FB7D0A2F9</RequestId></Error>");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "NoSuchKey");
  EXPECT_EQ(e->message, "The specified key does not exist.");
  EXPECT_EQ(e->request_id, "4442587FB7D0A2F9");
  e = ParseS3Error("<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-1</Region></Error>");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->region, "eu-west-1");
  EXPECT_FALSE(ParseS3Error("<html><body>Bad Gateway</body></html>").has_value());
  EXPECT_FALSE(ParseS3Error("Bad Gateway").has_value());
  EXPECT_FALSE(ParseS3Error("").has_value());
}

TEST(Xml, RejectsMalformedAndHostileInput) {
  const char* bad[] = {
      "",
      "<ListBucketResult>",
      "<ListBucketResult></ListBucket>",
      "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",  // no Key
      "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>k</Key><Size>1e3</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999</Size></Contents>"
      "</ListBucketResult>",
      "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",  // no token
      "<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
      "<ListBucketResult>&bogus;</ListBucketResult>",
      "<ListBucketResult>&#0;</ListBucketResult>",
      "<ListBucketResult>&#xD800;</ListBucketResult>",
      "<ListBucketResult>&#x110000;</ListBucketResult>",
      "<ListBucketResult>&amp</ListBucketResult>",
      "<!DOCTYPE lolz [<!ENTITY lol \"lol\">]><ListBucketResult>&lol;</ListBucketResult>",
      "<ListBucketResult a='1></ListBucketResult>",
      "<ListBucketResult a=1></ListBucketResult>",
      "<ListBucketResult></ListBucketResult><ListBucketResult></ListBucketResult>",
      "text<ListBucketResult></ListBucketResult>",
      "<ListBucketResult><![CDATA[x</ListBucketResult>",
      "<ListBucketResult><!-- x</ListBucketResult>",
      "<?xml version='1.0'",
      "<Other></Other>",
      "<ListBucketResult><Contents><Key>%zz</Key></Contents><EncodingType>url</EncodingType>"
      "</ListBucketResult>",
      "<",
      "</>",
      "<a/ >",
  };
  for (const char* x : bad) {
    EXPECT_FALSE(ParseListObjectsV2(x).ok()) << x;
  }
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "<a>";
  EXPECT_FALSE(ParseListObjectsV2(deep).ok());
  EXPECT_FALSE(ParseS3Error(deep).has_value());
}

// Every prefix and many random mutations of a valid page: an error or a
// result, never a crash or an out-of-bounds read (run under ASan to see).
TEST(Xml, SurvivesTruncationAndMutation) {
  const std::string page = kPage;
  for (size_t n = 0; n < page.size(); ++n) {
    (void)ParseListObjectsV2(page.substr(0, n));
    (void)ParseS3Error(page.substr(0, n));
  }
  std::mt19937 rng(7);
  const std::string alphabet = "<>/&;#x=\"'![]-?aZ0 \n";
  for (int iter = 0; iter < 5000; ++iter) {
    std::string m = page;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % m.size();
      switch (rng() % 3) {
        case 0: m[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: m.erase(at, 1 + rng() % 16); break;
        case 2: m.insert(at, 1, static_cast<char>(rng() % 256)); break;
      }
      if (m.empty()) m.push_back('<');
    }
    (void)ParseListObjectsV2(m);
    (void)ParseS3Error(m);
  }
}

// Found by xml_fuzz: "<a:/>" is a prefix without a name; it was reported
// as an element with an empty name.
TEST(Xml, FuzzFindingPrefixWithoutNameIsRefused) {
  int calls = 0;
  Status st = ParseXml("<a:/><E\xa2\xaa\xaa\xaa\xaa\xaa\xaaXe/\x9el\xff\xff\x10.",
                       [&](const XmlPath&, std::string&) {
                         ++calls;
                         return Status::Ok();
                       });
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_EQ(calls, 0);
  for (const char* bad : {"<a:/>", "<a:></a:>", "<ListBucketResult><x:/></ListBucketResult>"}) {
    EXPECT_EQ(ParseXml(bad, [](const XmlPath&, std::string&) { return Status::Ok(); }).code(),
              StatusCode::kCorrupt)
        << bad;
  }
  // A prefixed name is still read by its local part.
  auto page = ParseListObjectsV2("<s3:ListBucketResult><s3:IsTruncated>false</s3:IsTruncated>"
                                 "</s3:ListBucketResult>");
  EXPECT_TRUE(page.ok()) << page.status().ToString();
}

}  // namespace
}  // namespace stoker::storage::s3
