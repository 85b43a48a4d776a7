// The domain rules in the form the DNS data plane reads them: DomainList, a compact set of
// the names of one imported list, and DomainRules, every rule and list compiled into one
// immutable object that answers "is this name allowed, denied, or neither".
//
// A DomainList holds its names in one string, exactly as its file on disk holds them (one
// name a line, "*.name" for the name and every name below it), and an open-addressing table
// of 8 bytes a slot over that string: a million names of 30 characters take about 50 MB and
// load in about a quarter of a second of one core. Allow overrides deny: a name that any
// allow rule or list matches is allowed, whatever denies it; otherwise the most specific deny
// decides.
//
// Both are immutable once built and shared through shared_ptr<const>: any number of threads
// may read them at once with no lock. Builders are single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "extension/dns_packet.h"
#include "nehost/filter/v1/filter.pb.h"

namespace nehost::filter {

// The hash every table here uses, computed once for each suffix of an asked name.
size_t HashName(absl::string_view name);

// Whether name is in the canonical form NormalizeDomain produces, checked without allocating:
// what a list file must hold.
bool IsNormalizedName(absl::string_view name);

class DomainList {
 public:
  // The largest list: its string must stay below 4 GB for the table's 32-bit offsets, and
  // 10 million names of at most 254 bytes a line do.
  static constexpr size_t kMaxNames = 10'000'000;

  class Builder {
   public:
    Builder();
    // name must be normalised. False when the list already matches it: the same name again,
    // or an exact name already covered by the same name as a suffix entry.
    bool Add(absl::string_view name, bool suffix);
    size_t size() const { return list_->count_; }
    // Consumes the builder.
    std::shared_ptr<const DomainList> Finish();

   private:
    std::shared_ptr<DomainList> list_;
  };

  // Reads a list file; NOT_FOUND or another error naming the path when it cannot be read, and
  // DATA_LOSS as FromContents.
  static absl::StatusOr<std::shared_ptr<const DomainList>> Load(const std::string& path);

  // Reads a list from its file form; DATA_LOSS naming the source and the line when a line is
  // not a normalised name.
  static absl::StatusOr<std::shared_ptr<const DomainList>> FromContents(std::string contents,
                                                                        absl::string_view source);

  // Whether the list holds name (normalised), with hash = HashName(name). For a proper
  // ancestor of the asked name only suffix entries match.
  bool Matches(absl::string_view name, size_t hash, bool ancestor) const;

  size_t size() const { return count_; }
  // The file form.
  const std::string& contents() const { return contents_; }
  // What the list takes in memory, its string and table.
  size_t MemoryBytes() const;

 private:
  struct Slot {
    uint32_t offset = kEmpty;
    // The hash's top 23 bits, whether it is a suffix entry, and the name's length.
    uint32_t meta = 0;
  };
  static constexpr uint32_t kEmpty = 0xffffffff;

  DomainList() = default;
  // The slot that holds name, or the empty slot where it would go.
  size_t Find(absl::string_view name, size_t hash) const;
  void Grow();
  // Indexes the line at offset; false when it repeats one already there.
  bool Insert(size_t offset, size_t length, bool suffix);

  std::string contents_;
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

struct Verdict {
  enum class Kind : uint8_t { kNone, kAllow, kDeny };
  Kind kind = Kind::kNone;
  dns::BlockedAnswer answer = dns::BlockedAnswer::kNxDomain;
  // Which rule or list decided: an index for DomainRules::RuleName.
  uint32_t rule = 0;
};

class DomainRules {
 public:
  struct List {
    std::string name;
    v1::Rule::Action action = v1::Rule::DENY;
    v1::Rule::Response response = v1::Rule::NXDOMAIN;
    std::shared_ptr<const DomainList> names;
  };

  // rules must be normalised (NormalizeRule).
  static std::shared_ptr<const DomainRules> Compile(const std::vector<v1::Rule>& rules,
                                                    std::vector<List> lists);

  // name: lower case, without the trailing dot, as dns::Question holds it.
  Verdict Check(absl::string_view name) const;

  // "rule:deny:suffix:example.com" or "list:NAME": what per-rule counters are named after.
  const std::string& RuleName(uint32_t rule) const { return names_[rule]; }
  size_t rule_count() const { return names_.size(); }

 private:
  struct Entry {
    bool allow = false;
    dns::BlockedAnswer answer = dns::BlockedAnswer::kNxDomain;
    uint32_t rule = 0;
  };
  struct CompiledList {
    std::shared_ptr<const DomainList> names;
    Entry entry;
  };

  // Records what matched; true when the search can stop (an allow).
  static bool Take(const Entry& entry, Verdict* verdict);

  absl::flat_hash_map<std::string, Entry> exact_;
  absl::flat_hash_map<std::string, Entry> suffix_;
  std::vector<CompiledList> lists_;
  std::vector<std::string> names_;
};

// Where the data plane reads the rules in force. Thread safe; neither call blocks.
class RuleSource {
 public:
  virtual ~RuleSource() = default;
  // Changes whenever rules() would return another object.
  virtual uint64_t rules_version() const = 0;
  virtual std::shared_ptr<const DomainRules> rules() const = 0;
};

}  // namespace nehost::filter
