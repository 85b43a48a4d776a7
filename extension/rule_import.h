// ListImporter reads the block lists people already have, hosts files and domain lists (as
// Pi-hole and AdGuard users keep them), into a DomainList, line by line as the text arrives.
//
// Formats (nehost.filter.v1.ImportFormat):
//   hosts    "0.0.0.0 ads.example.com [more names]", '#' starts a comment. The local names
//            hosts files carry for the machine itself (localhost, broadcasthost, ip6-*) are
//            skipped, not imported.
//   domains  "ads.example.com", or "||example.com^" for the name and every name below it;
//            '#' and '!' start comments. Other adblock syntax is invalid.
//   auto     each line as what it looks like: an address first makes it a hosts line.
// A line that is invalid is counted and reported with its number and cause, and imports
// nothing; the rest of the file still does. Whether a file with invalid lines is imported is
// the caller's choice.
//
// Single-threaded; no call blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "extension/domain_rules.h"
#include "nehost/filter/v1/filter.pb.h"

namespace nehost::filter {

class ListImporter {
 public:
  static constexpr size_t kMaxReportedErrors = 100;
  // A longer line is invalid: no hosts or domain line comes near it.
  static constexpr size_t kMaxLine = 4096;

  ListImporter(v1::ImportFormat format, bool suffix);

  // The next part of the text; a line may continue into the next call.
  void Feed(absl::string_view text);
  // The last line, when the text does not end with a newline.
  void Finish();

  size_t names() const { return builder_.size(); }
  uint64_t lines() const { return line_number_; }
  uint64_t skipped_lines() const { return skipped_; }
  uint64_t invalid_lines() const { return invalid_; }
  // The first kMaxReportedErrors invalid lines.
  const std::vector<v1::ImportLineError>& errors() const { return errors_; }
  // Consumes the importer.
  std::shared_ptr<const DomainList> TakeList() { return builder_.Finish(); }

 private:
  void Line(absl::string_view line);
  // An error message for the line, or empty when it was imported or skipped.
  std::string HostsLine(const std::vector<absl::string_view>& words);
  std::string DomainLine(const std::vector<absl::string_view>& words);
  // Adds one name; an error message when it is not a domain name.
  std::string AddName(absl::string_view name, bool suffix);
  void Invalid(std::string message);

  const v1::ImportFormat format_;
  const bool suffix_;
  DomainList::Builder builder_;
  std::string partial_;
  bool partial_too_long_ = false;
  uint64_t line_number_ = 0;
  uint64_t skipped_ = 0;
  uint64_t invalid_ = 0;
  // Set by AddName when the name was already in the list.
  bool repeated_ = false;
  std::vector<v1::ImportLineError> errors_;
};

}  // namespace nehost::filter
