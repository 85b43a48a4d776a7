#include "supervisor/registry.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/files.h"
#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost::supervisor {
namespace {

using nehost::testing::TempDir;

Registration& AddFilter(Registry& registry) {
  Registration& registration = registry.FindOrAdd("org.nehost.filter");
  registration.set_generation(7);
  registration.set_pid(4242);
  registration.set_start_time_ticks(123456);
  registration.set_executable("/opt/nehost/versions/1.0/bin/nehost-filter");
  registration.set_state(nehost::supervisor::v1::READY);
  registration.set_enabled(true);
  auto* exit = registration.add_recent_exits();
  exit->set_reason(nehost::supervisor::v1::CRASHED);
  exit->set_signal(9);
  return registration;
}

TEST(Registry, RoundTripsEveryField) {
  TempDir dir;
  Registry written(dir / "registry.json");
  Registration& original = AddFilter(written);
  ASSERT_TRUE(written.Save().ok());

  Registry read(dir / "registry.json");
  ASSERT_TRUE(read.Load().ok());
  const Registration* loaded = read.Find("org.nehost.filter");
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(loaded->SerializeAsString(), original.SerializeAsString());
}

TEST(Registry, TornWriteLeavesTheLastGoodCopy) {
  TempDir dir;
  std::string path = dir / "registry.json";
  Registry registry(path);
  AddFilter(registry);
  ASSERT_TRUE(registry.Save().ok());

  // A writer that died mid-write leaves half a temporary file beside the registry; the
  // registry itself was never touched, because only a complete file is renamed into place.
  std::string good = *ReadFile(path);
  nehost::testing::WriteFileOrDie(path + ".tmp.99999", good.substr(0, good.size() / 2));

  Registry reloaded(path);
  ASSERT_TRUE(reloaded.Load().ok());
  ASSERT_NE(reloaded.Find("org.nehost.filter"), nullptr);
  EXPECT_EQ(reloaded.Find("org.nehost.filter")->generation(), 7u);
}

TEST(Registry, TruncatedFileIsDataLossAndChangesNothing) {
  TempDir dir;
  std::string path = dir / "registry.json";
  Registry good(path);
  AddFilter(good);
  ASSERT_TRUE(good.Save().ok());
  std::string contents = *ReadFile(path);
  nehost::testing::WriteFileOrDie(path, contents.substr(0, contents.size() / 2));

  absl::Status loaded = good.Load();
  EXPECT_TRUE(absl::IsDataLoss(loaded)) << loaded;
  EXPECT_NE(loaded.message().find(path), std::string::npos);
  // The in-memory registry is the one from before the failed load.
  ASSERT_NE(good.Find("org.nehost.filter"), nullptr);
}

TEST(Registry, MissingFileIsNotFound) {
  TempDir dir;
  Registry registry(dir / "registry.json");
  EXPECT_TRUE(absl::IsNotFound(registry.Load()));
}

TEST(Registry, RefusesANewerSchema) {
  TempDir dir;
  std::string path = dir / "registry.json";
  nehost::testing::WriteFileOrDie(path, R"({"schema_version": 99, "registrations": []})");
  Registry registry(path);
  absl::Status loaded = registry.Load();
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded)) << loaded;
}

}  // namespace
}  // namespace nehost::supervisor
