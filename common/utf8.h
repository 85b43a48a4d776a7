// UTF-8 validation for names that come from outside (service names, rule domains, package
// paths): protobuf refuses to carry a string field that is not UTF-8, and a message that
// quotes such a name could not be printed whole, so nehost refuses them where they enter.
// Stateless; safe from any thread.
#pragma once

#include "absl/strings/string_view.h"

namespace nehost {

// Whether text is well-formed UTF-8: shortest forms only, no surrogates, nothing above
// U+10FFFF.
bool IsValidUtf8(absl::string_view text);

}  // namespace nehost
