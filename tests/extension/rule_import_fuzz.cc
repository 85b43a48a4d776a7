// libFuzzer target for block-list imports, text that comes from the internet: the first byte
// picks the format and the suffix option and cuts the rest into chunks, which the importer
// reads as a client would send them. Whatever it accepts must read back from the list's file
// form as the same number of names, since that is how the list loads at every start.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "extension/domain_rules.h"
#include "extension/rule_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nehost::filter::DomainList;
  using nehost::filter::ListImporter;
  if (size == 0) return 0;

  auto format = static_cast<nehost::filter::v1::ImportFormat>(data[0] % 3);
  bool suffix = (data[0] & 0x04) != 0;
  size_t chunk = 1 + (data[0] >> 3);
  absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  ListImporter importer(format, suffix);
  for (size_t at = 0; at < text.size(); at += chunk) importer.Feed(text.substr(at, chunk));
  importer.Finish();
  size_t names = importer.names();
  std::shared_ptr<const DomainList> list = importer.TakeList();

  auto read_back = DomainList::FromContents(list->contents(), "fuzz");
  if (!read_back.ok() || (*read_back)->size() != names) std::abort();
  return 0;
}
