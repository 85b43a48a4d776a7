#include "extension/checkpoint.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/time_util.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/log.h"
#include "nehost/filter/v1/stats.pb.h"

namespace nehost::filter {
namespace {

constexpr char kBadSuffix[] = ".bad";

std::string PathIn(const std::string& state_dir) {
  return absl::StrCat(state_dir, "/", kCounterFileName);
}

// The same counts always give the same bytes, whatever order the maps hold them in.
std::string Deterministic(const HandoffState& state) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  state.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

absl::StatusOr<HandoffState> ReadCheckpoint(const std::string& path) {
  v1::CounterFile file;
  if (absl::Status read = ReadJsonProto(path, &file); !read.ok()) return read;
  if (file.schema_version() != kCounterFileSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("load counters ", path, ": schema_version ", file.schema_version(),
                     " is not one this nehost-filter reads (", kCounterFileSchemaVersion, ")"));
  }
  return file.state();
}

}  // namespace

HandoffState LoadCheckpoint(const std::string& state_dir, CounterSet* counters) {
  const std::string path = PathIn(state_dir);
  absl::StatusOr<HandoffState> loaded = ReadCheckpoint(path);
  if (absl::IsNotFound(loaded.status())) return HandoffState();

  if (!loaded.ok()) {
    const std::string aside = path + kBadSuffix;
    const bool moved = std::rename(path.c_str(), aside.c_str()) == 0;
    spdlog::error(
        "counter checkpoint not loaded path={} error=\"{}\"; counting starts from zero, "
        "the file is {}",
        path, loaded.status().message(),
        moved ? absl::StrCat("moved to ", aside)
              : absl::StrCat("left in place: ", ErrnoText(errno)));
    counters->Add("checkpoint/load_failures");
    return HandoffState();
  }

  counters->Add(*loaded);
  spdlog::info("counter checkpoint loaded path={} counters={} histograms={}", path,
               loaded->counters_size(), loaded->histograms_size());
  return *std::move(loaded);
}

CounterCheckpoint::CounterCheckpoint(const std::string& state_dir, CounterSet* counters,
                                     absl::Duration interval)
    : path_(PathIn(state_dir)), counters_(counters), thread_([this, interval] { Run(interval); }) {}

CounterCheckpoint::~CounterCheckpoint() { Stop(); }

void CounterCheckpoint::Run(absl::Duration interval) {
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    // A failure is logged by WriteNow; the next round tries again.
    WriteNow().IgnoreError();
  }
}

absl::Status CounterCheckpoint::WriteNow() {
  v1::CounterFile file;
  file.set_schema_version(kCounterFileSchemaVersion);
  counters_->CopyTo(file.mutable_state());
  std::string contents = Deterministic(file.state());

  absl::MutexLock lock(&mu_);
  if (last_written_.has_value() && contents == last_contents_) return absl::OkStatus();
  const absl::Time now = absl::Now();
  *file.mutable_saved_at() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));

  absl::Status written = WriteJsonProto(path_, file);
  if (!written.ok()) {
    spdlog::warn(
        "counter checkpoint not written path={} error=\"{}\"; trying again in the next "
        "round",
        path_, written.message());
    return written;
  }
  last_contents_ = std::move(contents);
  last_written_ = now;
  return absl::OkStatus();
}

void CounterCheckpoint::Stop(LastWrite last) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  if (last == LastWrite::kWrite) WriteNow().IgnoreError();
}

std::optional<absl::Time> CounterCheckpoint::last_written() const {
  absl::MutexLock lock(&mu_);
  return last_written_;
}

}  // namespace nehost::filter
