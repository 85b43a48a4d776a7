#include "supervisor/service_config.h"

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost::supervisor {
namespace {

using nehost::testing::TempDir;
using nehost::testing::WriteFileOrDie;

TEST(ParseServiceDefinition, ReadsTextFormat) {
  absl::StatusOr<ServiceDefinition> definition = ParseServiceDefinition(
      "name: \"org.example.dns\"\n"
      "executable: \"bin/dns\"\n"
      "restart { initial_backoff_ms: 50 }\n"
      "listeners { name: \"dns-udp\" udp: \"127.0.0.1:0\" }\n",
      "dns.textproto", "/etc/nehost/services.d");
  ASSERT_TRUE(definition.ok()) << definition.status();
  EXPECT_EQ(definition->executable(), "/etc/nehost/services.d/bin/dns");
  EXPECT_EQ(definition->restart().initial_backoff_ms(), 50u);
  EXPECT_EQ(definition->listeners(0).udp(), "127.0.0.1:0");
}

TEST(ParseServiceDefinition, NamesFileAndLineOfASyntaxError) {
  absl::StatusOr<ServiceDefinition> definition = ParseServiceDefinition(
      "name: \"org.example.dns\"\nexecutable: \"/bin/true\"\nrestart { bogus: 1 }\n",
      "/etc/nehost/services.d/dns.textproto", "/etc");
  ASSERT_FALSE(definition.ok());
  EXPECT_NE(definition.status().message().find("/etc/nehost/services.d/dns.textproto: line 3"),
            std::string::npos)
      << definition.status();
}

TEST(ParseServiceDefinition, RejectsBadNamesAndListeners) {
  EXPECT_FALSE(ParseServiceDefinition("name: \"filter\" executable: \"/x\"", "f", "/").ok());
  EXPECT_FALSE(ParseServiceDefinition("name: \"Org.X\" executable: \"/x\"", "f", "/").ok());
  EXPECT_FALSE(ParseServiceDefinition("name: \"org.x\"", "f", "/").ok());
  EXPECT_FALSE(
      ParseServiceDefinition(
          "name: \"org.x\" executable: \"/x\" listeners { name: \"grpc\" udp: \":1\" }", "f", "/")
          .ok());
}

TEST(LoadServiceDefinitions, EmptyConfigurationHostsTheEmbeddedDefault) {
  TempDir dir;
  LoadedDefinitions loaded = LoadServiceDefinitions(dir / "etc", "/opt/nehost/bin");
  EXPECT_TRUE(loaded.embedded_default);
  ASSERT_EQ(loaded.definitions.size(), 1u);
  EXPECT_EQ(loaded.definitions[0].name(), "org.nehost.filter");
  EXPECT_EQ(loaded.definitions[0].executable(), "/opt/nehost/bin/nehost-filter");
}

TEST(LoadServiceDefinitions, EmbeddedDefaultServesDnsOnTheUnprivilegedPortWhenItCan) {
  TempDir dir;
  LoadedDefinitions loaded = LoadServiceDefinitions(dir / "etc", "/opt/nehost/bin");
  ASSERT_EQ(loaded.definitions.size(), 1u);
  const auto& listeners = loaded.definitions[0].listeners();
  ASSERT_EQ(listeners.size(), 2);
  EXPECT_EQ(listeners[0].name(), "dns-udp");
  EXPECT_EQ(listeners[0].udp(), "127.0.0.1:5353");
  EXPECT_EQ(listeners[1].name(), "dns-tcp");
  EXPECT_EQ(listeners[1].tcp(), "127.0.0.1:5353");
  EXPECT_TRUE(listeners[0].optional());
  EXPECT_TRUE(listeners[1].optional());
}

TEST(LoadServiceDefinitions, OneBrokenFileDoesNotStopTheOthers) {
  TempDir dir;
  WriteFileOrDie(dir / "etc/services.d/a.textproto",
                 "name: \"org.example.a\" executable: \"/bin/true\"");
  WriteFileOrDie(dir / "etc/services.d/b.textproto", "name: \"org.example.b\"\nexecutable: [");
  WriteFileOrDie(dir / "etc/services.d/c.textproto",
                 "name: \"org.example.a\" executable: \"/bin/true\"");
  WriteFileOrDie(dir / "etc/services.d/README", "not a definition");

  LoadedDefinitions loaded = LoadServiceDefinitions(dir / "etc", "/opt");
  EXPECT_FALSE(loaded.embedded_default);
  ASSERT_EQ(loaded.definitions.size(), 1u);
  EXPECT_EQ(loaded.definitions[0].name(), "org.example.a");
  ASSERT_EQ(loaded.errors.size(), 2u);
  EXPECT_NE(loaded.errors[0].message().find("b.textproto: line 2"), std::string::npos)
      << loaded.errors[0];
  EXPECT_NE(loaded.errors[1].message().find("defined by an earlier file"), std::string::npos);
}

}  // namespace
}  // namespace nehost::supervisor
