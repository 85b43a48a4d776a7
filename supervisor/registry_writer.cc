#include "supervisor/registry_writer.h"

#include <utility>

#include "common/files.h"
#include "common/log.h"

namespace nehost::supervisor {

RegistryWriter::RegistryWriter(const std::string& path)
    : RegistryWriter([path](const v1::RegistryFile& file) { return WriteJsonProto(path, file); }) {}

RegistryWriter::RegistryWriter(WriteFunction write) : write_(std::move(write)) {
  thread_ = std::thread([this] { Run(); });
}

RegistryWriter::~RegistryWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

uint64_t RegistryWriter::Submit(v1::RegistryFile snapshot) {
  absl::MutexLock lock(&mu_);
  pending_ = std::move(snapshot);
  return ++submitted_;
}

absl::Status RegistryWriter::WaitWritten(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  auto written = [this, sequence]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= sequence; };
  mu_.Await(absl::Condition(&written));
  return last_result_;
}

absl::Status RegistryWriter::Flush() {
  uint64_t newest;
  {
    absl::MutexLock lock(&mu_);
    newest = submitted_;
  }
  return WaitWritten(newest);
}

void RegistryWriter::Run() {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return submitted_ > written_ || stopping_;
    };
    mu_.Await(absl::Condition(&work));
    // Stopping with nothing pending ends the thread; with a snapshot pending, it is written
    // first, so that the last state nehostd reached is the one on disk.
    if (submitted_ == written_) return;

    uint64_t sequence = submitted_;
    v1::RegistryFile snapshot = std::move(pending_);
    mu_.Unlock();
    absl::Status result = write_(snapshot);
    mu_.Lock();

    written_ = sequence;
    last_result_ = result;
    if (result.ok()) {
      last_error_logged_.clear();
    } else if (last_error_logged_ != result.message()) {
      // Said once per distinct cause: a full disk would otherwise flood the log.
      last_error_logged_ = std::string(result.message());
      spdlog::error("registry write failed, keeping the state in memory: {}", result.message());
    }
  }
}

}  // namespace nehost::supervisor
