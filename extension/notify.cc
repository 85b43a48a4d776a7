#include "extension/notify.h"

#include <systemd/sd-daemon.h>

#include "common/files.h"
#include "common/log.h"

namespace nehost::filter {

void Notify(const std::string& state) {
  int sent = sd_notify(0, state.c_str());
  if (sent < 0) {
    spdlog::warn("notify failed error=\"{}\"; the supervisor will not see this state",
                 ErrnoText(-sent));
  }
}

}  // namespace nehost::filter
