// RuleStore is nehost-filter's list of domain rules, kept in memory and on disk in
// STATE/rules.json (a nehost.filter.v1.RuleFile in JSON form, schema_version 1).
//
// A rule is identified by its domain and match; adding one with the same pair but another
// action replaces it. Every change is written to disk, atomically, before it takes effect in
// memory: a failed write leaves both the file and the list as they were. A file that cannot
// be read or parsed is an error at Open and is never replaced by an empty list.
//
// Two generations of nehost-filter share the file while one hands over to the next; the one
// that takes over calls Reload once its predecessor has drained, so that rules added through
// the predecessor in the meantime are in force.
//
// Thread safe. Add and Remove block on the disk while they hold the store's lock, so that the
// file always holds the last list answered; List and size wait behind a write in flight.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "nehost/filter/v1/filter.pb.h"

namespace nehost::filter {

using Rule = nehost::filter::v1::Rule;

inline constexpr uint32_t kRuleFileSchemaVersion = 1;
inline constexpr char kRuleFileName[] = "rules.json";

// The canonical form of a domain: lower case, without its trailing dot. INVALID_ARGUMENT,
// naming the domain and the cause, when it is not a DNS name of ASCII labels.
absl::StatusOr<std::string> NormalizeDomain(absl::string_view domain);

// The rule with its domain normalised and DENY / EXACT in place of unspecified values.
absl::StatusOr<Rule> NormalizeRule(const Rule& rule);

class RuleStore {
 public:
  // Loads STATE/rules.json; a missing file is an empty list. The folder must exist.
  static absl::StatusOr<std::unique_ptr<RuleStore>> Open(const std::string& state_dir);

  struct AddResult {
    // False when the same rule was already in force.
    bool added = false;
    // The rule as stored, normalised.
    Rule rule;
  };
  absl::StatusOr<AddResult> Add(const Rule& rule);

  // Removes the domain's rule with that match, or all of its rules for MATCH_UNSPECIFIED.
  // Returns how many were removed; none is not an error.
  absl::StatusOr<size_t> Remove(absl::string_view domain, Rule::Match match);

  // Replaces the list with the file's, as Open reads it. When the file cannot be read or
  // parsed, the list stays as it was and the error is logged and returned.
  //
  // TODO: during the overlap, a change through the new generation writes the file from its
  // own list and so undoes a change made through the old one in the same window; a lock on
  // the file around a read-modify-write in Add and Remove would keep both.
  absl::Status Reload();

  // In the order they were first added; a replaced rule keeps its place.
  std::vector<Rule> List() const;
  size_t size() const;

 private:
  RuleStore(std::string path, std::vector<Rule> rules);

  absl::Status Save(const std::vector<Rule>& rules) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::filter
