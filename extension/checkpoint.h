// CounterCheckpoint keeps a CounterSet on disk, so that the counts survive a crash: it writes
// the set to STATE/counters.json (a nehost.filter.v1.CounterFile in JSON form, schema_version
// 1) every interval and once more when stopped, atomically, and the next process starts from
// the file with LoadCheckpoint. A kill -9 loses at most what was counted since the last write.
//
// A checkpoint that does not load (torn by a disk fault, edited by hand, from a newer
// version) is reported in the log and in the counter "checkpoint/load_failures", moved aside
// to counters.json.bad for the operator, and counting starts from zero. Nothing else depends
// on the file: the rules are elsewhere and stay in force.
//
// The checkpoint owns a thread that wakes every interval; the CounterSet must outlive it.
// Thread safe. WriteNow and Stop block on the disk.
#pragma once

#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "extension/counters.h"

namespace nehost::filter {

inline constexpr char kCounterFileName[] = "counters.json";
inline constexpr uint32_t kCounterFileSchemaVersion = 1;
inline constexpr absl::Duration kCheckpointInterval = absl::Seconds(2);

// Adds the checkpoint in state_dir to counters and returns what it added, which a generation
// replaces with its predecessor's exact counts when one hands over (CounterSet::Replace). A
// missing file adds nothing; one that does not load is handled as the header says.
HandoffState LoadCheckpoint(const std::string& state_dir, CounterSet* counters);

class CounterCheckpoint {
 public:
  CounterCheckpoint(const std::string& state_dir, CounterSet* counters,
                    absl::Duration interval = kCheckpointInterval);
  // Stops, writing once more.
  ~CounterCheckpoint();

  CounterCheckpoint(const CounterCheckpoint&) = delete;
  CounterCheckpoint& operator=(const CounterCheckpoint&) = delete;

  // Writes the counts now, unless they are what the file already holds.
  absl::Status WriteNow();
  enum class LastWrite { kWrite, kSkip };
  // Ends the thread, after one last write unless skipped: a generation that drains hands its
  // counts to its successor instead, and so keeps a disk write off the upgrade's path.
  // Idempotent.
  void Stop(LastWrite last = LastWrite::kWrite);

  // When the file was last written by this process.
  std::optional<absl::Time> last_written() const;

 private:
  void Run(absl::Duration interval);

  const std::string path_;
  CounterSet* const counters_;
  absl::Notification stop_;

  mutable absl::Mutex mu_;
  std::string last_contents_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> last_written_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;  // last, so that it starts once the members above exist
};

}  // namespace nehost::filter
