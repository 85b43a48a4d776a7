#include "supervisor/registry_writer.h"

#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "supervisor/registry.h"
#include "tests/support/process.h"

namespace nehost::supervisor {
namespace {

using nehost::testing::TempDir;

v1::RegistryFile FileWithGeneration(uint64_t generation) {
  v1::RegistryFile file;
  file.set_schema_version(kRegistrySchemaVersion);
  Registration* registration = file.add_registrations();
  registration->set_name("org.nehost.filter");
  registration->set_generation(generation);
  return file;
}

// A disk that holds every write until the test opens the gate, and remembers what it got.
class GatedDisk {
 public:
  RegistryWriter::WriteFunction Writer() {
    return [this](const v1::RegistryFile& file) {
      absl::MutexLock lock(&mu_);
      ++started_;
      mu_.Await(absl::Condition(&open_));
      written_.push_back(file.registrations(0).generation());
      return fail_ ? absl::ResourceExhaustedError("write registry: disk full") : absl::OkStatus();
    };
  }
  void WaitForWriteToStart(int count) {
    absl::MutexLock lock(&mu_);
    auto started = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return started_ >= count; };
    mu_.Await(absl::Condition(&started));
  }
  void Open(bool fail = false) {
    absl::MutexLock lock(&mu_);
    fail_ = fail;
    open_ = true;
  }
  std::vector<uint64_t> written() {
    absl::MutexLock lock(&mu_);
    return written_;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> written_ ABSL_GUARDED_BY(mu_);
};

TEST(RegistryWriter, SubmitDoesNotWaitForTheDisk) {
  GatedDisk disk;
  RegistryWriter writer(disk.Writer());
  EXPECT_EQ(writer.Submit(FileWithGeneration(1)), 1u);
  disk.WaitForWriteToStart(1);
  // The first write is stuck on the disk; submitting more returns at once all the same.
  EXPECT_EQ(writer.Submit(FileWithGeneration(2)), 2u);
  EXPECT_EQ(writer.Submit(FileWithGeneration(3)), 3u);
  disk.Open();
  EXPECT_TRUE(writer.Flush().ok());
}

TEST(RegistryWriter, SnapshotsThatPileUpAreCoalescedIntoTheNewest) {
  GatedDisk disk;
  RegistryWriter writer(disk.Writer());
  writer.Submit(FileWithGeneration(1));
  disk.WaitForWriteToStart(1);
  writer.Submit(FileWithGeneration(2));
  writer.Submit(FileWithGeneration(3));
  uint64_t newest = writer.Submit(FileWithGeneration(4));
  disk.Open();

  EXPECT_TRUE(writer.WaitWritten(newest).ok());
  EXPECT_EQ(disk.written(), (std::vector<uint64_t>{1, 4}));
}

TEST(RegistryWriter, WaitWrittenReportsAFailedWriteAndTheNextSnapshotTriesAgain) {
  std::vector<bool> outcomes = {false, true};
  size_t calls = 0;
  RegistryWriter writer([&](const v1::RegistryFile&) {
    bool ok = outcomes[calls++];
    return ok ? absl::OkStatus() : absl::ResourceExhaustedError("write registry: disk full");
  });

  absl::Status first = writer.WaitWritten(writer.Submit(FileWithGeneration(1)));
  EXPECT_TRUE(absl::IsResourceExhausted(first)) << first;
  EXPECT_TRUE(writer.WaitWritten(writer.Submit(FileWithGeneration(2))).ok());
}

TEST(RegistryWriter, DestructorWritesThePendingSnapshot) {
  GatedDisk disk;
  {
    RegistryWriter writer(disk.Writer());
    writer.Submit(FileWithGeneration(1));
    disk.WaitForWriteToStart(1);
    writer.Submit(FileWithGeneration(2));
    disk.Open();
  }
  EXPECT_EQ(disk.written(), (std::vector<uint64_t>{1, 2}));
}

TEST(RegistryWriter, WritesAFileThatTheRegistryLoads) {
  TempDir dir;
  std::string path = dir / "registry.json";
  RegistryWriter writer(path);
  ASSERT_TRUE(writer.WaitWritten(writer.Submit(FileWithGeneration(9))).ok());

  Registry registry(path);
  ASSERT_TRUE(registry.Load().ok());
  ASSERT_NE(registry.Find("org.nehost.filter"), nullptr);
  EXPECT_EQ(registry.Find("org.nehost.filter")->generation(), 9u);
}

}  // namespace
}  // namespace nehost::supervisor
