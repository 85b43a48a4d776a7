// RuleStore is nehost-filter's domain rules and imported lists, kept in memory and on disk in
// STATE/rules.json (a nehost.filter.v1.RuleFile in JSON form, schema_version 2). Each list's
// names are a file of their own under STATE/lists/, one normalised name a line, which the rule
// file names: a million names load in a fraction of a second that way, where JSON would not.
// A schema 1 file (rules, no lists) is migrated to schema 2 when the store opens.
//
// A rule is identified by its domain and match; adding one with the same pair but another
// action or response replaces it. A list is identified by its name; importing one under a name
// in use replaces it. Every change is written to disk, atomically, before it takes effect in
// memory: a failed write leaves both the files and the rules as they were. A list's file is
// written under a fresh name before the rule file names it, so a crash at any point leaves
// the old rules or the new ones. A file that cannot be read or parsed is an error at Open and
// is never replaced by an empty list.
//
// Every change also compiles the rules in force into a DomainRules that the DNS data plane
// reads through RuleSource, without waiting on the store's lock or the disk.
//
// Two generations of nehost-filter share the file while one hands over to the next; the one
// that takes over calls Reload once its predecessor has drained, so that rules added through
// the predecessor in the meantime are in force.
//
// Thread safe. Changes block on the disk while they hold the store's lock, so that the file
// always holds the last rules answered; List and size wait behind a write in flight.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "extension/domain_rules.h"
#include "nehost/filter/v1/filter.pb.h"

namespace nehost::filter {

using Rule = nehost::filter::v1::Rule;
using RuleList = nehost::filter::v1::RuleList;

inline constexpr uint32_t kRuleFileSchemaVersion = 2;
inline constexpr char kRuleFileName[] = "rules.json";
inline constexpr char kListFolder[] = "lists";

// The canonical form of a domain: lower case, without its trailing dot. INVALID_ARGUMENT,
// naming the domain and the cause, when it is not a DNS name of ASCII labels.
absl::StatusOr<std::string> NormalizeDomain(absl::string_view domain);

// The rule with its domain normalised and DENY / EXACT / NXDOMAIN in place of unspecified
// values; an allow rule has no response.
absl::StatusOr<Rule> NormalizeRule(const Rule& rule);

// INVALID_ARGUMENT unless name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not
// starting with '.'.
absl::Status CheckListName(absl::string_view name);

class RuleStore final : public RuleSource {
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

  struct ImportResult {
    // False when it added a new list.
    bool replaced = false;
    // The list as stored: normalised, with its count and file.
    RuleList list;
  };
  // Puts names in force as the list described by list (name, action, response), replacing a
  // list of the same name. FAILED_PRECONDITION for a list with no names.
  absl::StatusOr<ImportResult> ImportList(const RuleList& list,
                                          std::shared_ptr<const DomainList> names);
  // Whether there was a list of that name.
  absl::StatusOr<bool> RemoveList(absl::string_view name);

  // Replaces the list with the file's, as Open reads it. When the file cannot be read or
  // parsed, the list stays as it was and the error is logged and returned.
  //
  // TODO: during the overlap, a change through the new generation writes the file from its
  // own list and so undoes a change made through the old one in the same window; a lock on
  // the file around a read-modify-write in Add and Remove would keep both.
  absl::Status Reload();

  // In the order they were first added; a replaced rule keeps its place.
  std::vector<Rule> List() const;
  // Rules, not counting lists.
  size_t size() const;
  // Likewise for lists.
  std::vector<RuleList> Lists() const;

  // RuleSource: what the data plane reads.
  uint64_t rules_version() const override;
  std::shared_ptr<const DomainRules> rules() const override;

  struct StoredList {
    RuleList meta;
    std::shared_ptr<const DomainList> names;
  };

 private:
  RuleStore(std::string state_dir, std::vector<Rule> rules, std::vector<StoredList> lists);

  absl::Status Save(const std::vector<Rule>& rules, const std::vector<StoredList>& lists) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Compiles the rules in force for the data plane.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string state_dir_;
  const std::string path_;
  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
  std::vector<StoredList> lists_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> version_{0};
  std::atomic<std::shared_ptr<const DomainRules>> compiled_;
};

}  // namespace nehost::filter
