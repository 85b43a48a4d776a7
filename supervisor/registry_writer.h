// RegistryWriter puts snapshots of the registry on disk from a thread of its own, so that
// nehostd never holds its lock across an fsync. On this project's machine an atomic write
// (temporary file, fsync, rename, fsync of the folder) took about 10 ms, up to 25 ms; every lookup
// that waited behind one under the lock paid for it, and an upgrade writes the registry several
// times.
//
// The Supervisor hands in a snapshot under its lock (Submit never touches the disk) and,
// where an order of steps depends on the disk, waits for it afterwards without the lock
// (WaitWritten): an upgrade does not drain the old generation before the switch to the new
// one is on disk, and Stop does not answer before "disabled" is. Snapshots that pile up while
// a write is under way are coalesced: only the newest is written, and it carries every change
// before it.
//
// Thread safe. The destructor writes the newest snapshot before it returns.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::supervisor {

class RegistryWriter {
 public:
  // Writes a snapshot where it belongs; blocks on the disk.
  using WriteFunction = std::function<absl::Status(const v1::RegistryFile&)>;

  // Writes to path with WriteJsonProto.
  explicit RegistryWriter(const std::string& path);
  explicit RegistryWriter(WriteFunction write);
  ~RegistryWriter();

  RegistryWriter(const RegistryWriter&) = delete;
  RegistryWriter& operator=(const RegistryWriter&) = delete;

  // Queues the snapshot and returns its sequence number, from 1. Never blocks on the disk.
  uint64_t Submit(v1::RegistryFile snapshot);

  // Blocks until the snapshot `sequence`, or a newer one, has been written or has failed to
  // be, and returns the outcome of that write. A failed write is logged once per cause; the
  // next snapshot tries again.
  absl::Status WaitWritten(uint64_t sequence);

  // WaitWritten for the newest snapshot submitted so far.
  absl::Status Flush();

 private:
  void Run();

  const WriteFunction write_;

  absl::Mutex mu_;
  v1::RegistryFile pending_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  // The newest sequence whose write has ended, and how.
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_result_ ABSL_GUARDED_BY(mu_);
  std::string last_error_logged_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;
};

}  // namespace nehost::supervisor
