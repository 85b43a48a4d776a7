// sd_notify(3) for nehost-filter: READY=1, STATUS=, STOPPING=1 to whoever supervises it
// (nehostd or systemd), when NOTIFY_SOCKET names one. Thread safe; does not block.
#pragma once

#include <string>

namespace nehost::filter {

// A failure is logged, not returned: the supervisor misses this one state, and there is
// nothing better to do about it than to say so.
void Notify(const std::string& state);

}  // namespace nehost::filter
