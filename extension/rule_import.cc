#include "extension/rule_import.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "extension/rule_store.h"

namespace nehost::filter {
namespace {

// Names hosts files carry for the machine itself; blocking them through DNS means nothing.
constexpr std::array<absl::string_view, 6> kLocalNames = {
    "localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0", "ip6-localhost",
};

bool IsAddress(absl::string_view word) {
  // "fe80::1%lo0": a scope names an interface after '%'.
  std::string host(word.substr(0, word.find('%')));
  in6_addr storage;
  return ::inet_pton(AF_INET, host.c_str(), &storage) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &storage) == 1;
}

bool IsLocalName(absl::string_view name) {
  return absl::StartsWith(name, "ip6-") ||
         std::find(kLocalNames.begin(), kLocalNames.end(), name) != kLocalNames.end();
}

absl::string_view WithoutComment(absl::string_view line, bool adblock_comments) {
  if (adblock_comments && absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "!")) {
    return {};
  }
  return line.substr(0, line.find('#'));
}

}  // namespace

ListImporter::ListImporter(v1::ImportFormat format, bool suffix)
    : format_(format), suffix_(suffix) {}

void ListImporter::Feed(absl::string_view text) {
  while (!text.empty()) {
    size_t newline = text.find('\n');
    absl::string_view piece = text.substr(0, newline);

    if (partial_.size() + piece.size() > kMaxLine) {
      partial_too_long_ = true;
      partial_.clear();
    } else if (!partial_too_long_) {
      partial_.append(piece.data(), piece.size());
    }
    if (newline == absl::string_view::npos) return;

    text.remove_prefix(newline + 1);
    Line(partial_);
    partial_.clear();
  }
}

void ListImporter::Finish() {
  if (!partial_.empty() || partial_too_long_) Line(partial_);
  partial_.clear();
}

void ListImporter::Invalid(std::string message) {
  ++invalid_;
  if (errors_.size() >= kMaxReportedErrors) return;
  v1::ImportLineError& error = errors_.emplace_back();
  error.set_line(line_number_);
  error.set_message(std::move(message));
}

void ListImporter::Line(absl::string_view line) {
  ++line_number_;
  if (partial_too_long_) {
    partial_too_long_ = false;
    Invalid(absl::StrCat("longer than ", kMaxLine, " characters"));
    return;
  }

  if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
  bool hosts_only = format_ == v1::IMPORT_FORMAT_HOSTS;
  std::vector<absl::string_view> words =
      absl::StrSplit(WithoutComment(line, !hosts_only), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.empty()) {
    ++skipped_;
    return;
  }

  bool hosts = format_ == v1::IMPORT_FORMAT_HOSTS ||
               (format_ == v1::IMPORT_FORMAT_AUTO && IsAddress(words[0]));
  repeated_ = false;
  std::string error = hosts ? HostsLine(words) : DomainLine(words);
  if (!error.empty()) {
    Invalid(std::move(error));
  } else if (repeated_) {
    ++skipped_;
  }
}

std::string ListImporter::HostsLine(const std::vector<absl::string_view>& words) {
  if (!IsAddress(words[0])) {
    return absl::StrCat("\"", absl::CHexEscape(words[0].substr(0, 80)),
                        "\" is not an IP address; a hosts line is ADDRESS NAME [NAME...]");
  }
  if (words.size() < 2) return "a hosts line needs a name after the address";

  // Checked before any is added, so that an invalid line imports none of its names.
  std::vector<std::string> names;
  for (size_t i = 1; i < words.size(); ++i) {
    absl::StatusOr<std::string> name = NormalizeDomain(words[i]);
    if (!name.ok()) return std::string(name.status().message());
    if (!IsLocalName(*name)) names.push_back(*std::move(name));
  }
  if (builder_.size() + names.size() > DomainList::kMaxNames) {
    return absl::StrCat("a list holds at most ", DomainList::kMaxNames, " names");
  }
  bool added = false;
  for (const std::string& name : names) added |= builder_.Add(name, suffix_);
  repeated_ = !added;
  return "";
}

std::string ListImporter::DomainLine(const std::vector<absl::string_view>& words) {
  if (words.size() != 1) {
    return absl::StrCat("a domain line holds one name; this one has ", words.size(), " words");
  }
  absl::string_view word = words[0];
  bool suffix = suffix_;
  if (absl::StartsWith(word, "||") && absl::EndsWith(word, "^") && word.size() > 3) {
    word = word.substr(2, word.size() - 3);
    suffix = true;
  } else if (word.find_first_of("|^$@/*") != absl::string_view::npos) {
    return absl::StrCat("\"", absl::CHexEscape(word.substr(0, 80)),
                        "\" is adblock syntax other than ||name^, which a DNS filter cannot apply");
  }
  return AddName(word, suffix);
}

std::string ListImporter::AddName(absl::string_view word, bool suffix) {
  absl::StatusOr<std::string> name = NormalizeDomain(word);
  if (!name.ok()) return std::string(name.status().message());
  if (builder_.size() >= DomainList::kMaxNames) {
    return absl::StrCat("a list holds at most ", DomainList::kMaxNames, " names");
  }
  repeated_ = !builder_.Add(*name, suffix);
  return "";
}

}  // namespace nehost::filter
