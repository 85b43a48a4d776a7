// Process-wide settings of Abseil that every nehost program makes at start.
#pragma once

#include "absl/synchronization/mutex.h"

namespace nehost {

// Debian 12 builds Abseil without NDEBUG, so every absl::Mutex (gRPC's own locks included)
// runs the debug deadlock detector, which keeps a graph of lock orders under one global lock:
// status_latency_bench measured it at about 5 to 10% of a unary call. nehost's lock order is
// checked by its thread-safety annotations and its tests instead. Call before any thread
// starts.
inline void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace nehost
