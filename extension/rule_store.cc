#include "extension/rule_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "spdlog/spdlog.h"

namespace nehost::filter {
namespace {

constexpr size_t kMaxDomainLength = 253;
constexpr size_t kMaxLabelLength = 63;

// Appended to every load error: the operator decides what happens to a file nobody can read.
constexpr char kFileKept[] =
    "; the file is left untouched: repair it, or move it aside to start with no rules";

absl::Status InvalidDomain(absl::string_view domain, absl::string_view cause) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid domain \"", absl::CHexEscape(domain), "\": ", cause));
}

bool IsLabelCharacter(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_';
}

// What is wrong with one lower-case label, if anything.
std::optional<std::string> LabelProblem(absl::string_view label) {
  if (label.empty()) return "is empty";
  if (label.size() > kMaxLabelLength) {
    return absl::StrCat("is ", label.size(), " characters; at most ", kMaxLabelLength);
  }

  auto bad = std::find_if_not(label.begin(), label.end(), IsLabelCharacter);
  if (bad != label.end()) {
    return absl::StrCat("holds '", absl::CHexEscape(absl::string_view(bad, 1)),
                        "'; only a-z, 0-9, '-' and '_' are allowed");
  }

  if (label.front() == '-') return "starts with '-'";
  if (label.back() == '-') return "ends with '-'";
  return std::nullopt;
}

// Whether a name is an IP address or range rather than a domain: an IPv6 address holds ':',
// and no top-level domain is all digits, so "192.168.1.1" and "10.0.0.0/8" are addresses. Such
// a rule would pass the label checks, or nearly, and never match a query.
bool LooksLikeAddress(absl::string_view name) {
  if (absl::StrContains(name, ':')) return true;
  absl::string_view last = name.substr(name.rfind('.') + 1);
  last = last.substr(0, last.find('/'));
  return !last.empty() &&
         std::all_of(last.begin(), last.end(), [](char c) { return absl::ascii_isdigit(c); });
}

std::string ActionName(Rule::Action action) {
  return absl::AsciiStrToLower(Rule::Action_Name(action));
}

std::string MatchName(Rule::Match match) {
  if (match == Rule::MATCH_UNSPECIFIED) return "any";
  return absl::AsciiStrToLower(Rule::Match_Name(match));
}

std::vector<Rule>::const_iterator FindRule(const std::vector<Rule>& rules, absl::string_view domain,
                                           Rule::Match match) {
  return std::find_if(rules.begin(), rules.end(), [&](const Rule& rule) {
    return rule.domain() == domain && rule.match() == match;
  });
}

absl::Status CheckFolder(const std::string& folder) {
  struct stat info;
  if (::stat(folder.c_str(), &info) != 0) return ErrnoStatus(errno, "open state folder", folder);
  if (!S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("open state folder ", folder, ": not a folder"));
  }
  return absl::OkStatus();
}

// The rules of a file, each checked as a request would be: the file is input from outside.
absl::StatusOr<std::vector<Rule>> RulesOf(const v1::RuleFile& file, const std::string& path) {
  std::vector<Rule> rules;
  for (int i = 0; i < file.rules_size(); ++i) {
    absl::StatusOr<Rule> rule = NormalizeRule(file.rules(i));
    if (!rule.ok()) {
      return absl::DataLossError(absl::StrCat("load rules ", path, ": rule ", i + 1, ": ",
                                              rule.status().message(), kFileKept));
    }

    if (FindRule(rules, rule->domain(), rule->match()) != rules.end()) {
      return absl::DataLossError(absl::StrCat("load rules ", path, ": rule ", i + 1,
                                              " repeats domain ", rule->domain(), " match ",
                                              MatchName(rule->match()), kFileKept));
    }
    rules.push_back(*std::move(rule));
  }
  return rules;
}

absl::StatusOr<std::vector<Rule>> LoadRules(const std::string& path) {
  v1::RuleFile file;
  absl::Status read = ReadJsonProto(path, &file);
  if (absl::IsNotFound(read)) return std::vector<Rule>{};
  if (!read.ok()) {
    return absl::Status(read.code(), absl::StrCat("load rules: ", read.message(), kFileKept));
  }

  if (file.schema_version() != kRuleFileSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "load rules ", path, ": schema_version ", file.schema_version(),
        " is not one this nehost-filter reads (", kRuleFileSchemaVersion, ")", kFileKept));
  }
  return RulesOf(file, path);
}

}  // namespace

absl::StatusOr<std::string> NormalizeDomain(absl::string_view domain) {
  if (std::any_of(domain.begin(), domain.end(), [](char c) { return !absl::ascii_isascii(c); })) {
    return InvalidDomain(domain, "holds non-ASCII characters; use its xn-- (punycode) form");
  }

  std::string name = absl::AsciiStrToLower(domain);
  if (absl::EndsWith(name, ".")) name.pop_back();
  if (name.empty()) return InvalidDomain(domain, "is empty");
  if (name.size() > kMaxDomainLength) {
    return InvalidDomain(
        domain, absl::StrCat("is ", name.size(), " characters; at most ", kMaxDomainLength));
  }

  if (LooksLikeAddress(name)) {
    return InvalidDomain(domain,
                         "is an IP address or range (CIDR), not a domain name; rules name domains");
  }

  int index = 0;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    ++index;
    std::optional<std::string> problem = LabelProblem(label);
    if (problem.has_value())
      return InvalidDomain(domain, absl::StrCat("label ", index, " ", *problem));
  }
  return name;
}

absl::StatusOr<Rule> NormalizeRule(const Rule& rule) {
  absl::StatusOr<std::string> domain = NormalizeDomain(rule.domain());
  if (!domain.ok()) return domain.status();

  if (!Rule::Action_IsValid(rule.action())) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule for ", *domain, ": unknown action ", static_cast<int>(rule.action())));
  }
  if (!Rule::Match_IsValid(rule.match())) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule for ", *domain, ": unknown match ", static_cast<int>(rule.match())));
  }

  Rule normalized;
  normalized.set_domain(*std::move(domain));
  normalized.set_action(rule.action() == Rule::ACTION_UNSPECIFIED ? Rule::DENY : rule.action());
  normalized.set_match(rule.match() == Rule::MATCH_UNSPECIFIED ? Rule::EXACT : rule.match());
  return normalized;
}

absl::StatusOr<std::unique_ptr<RuleStore>> RuleStore::Open(const std::string& state_dir) {
  if (absl::Status folder = CheckFolder(state_dir); !folder.ok()) return folder;

  std::string path = absl::StrCat(state_dir, "/", kRuleFileName);
  absl::StatusOr<std::vector<Rule>> rules = LoadRules(path);
  if (!rules.ok()) return rules.status();

  spdlog::info("rules loaded path={} count={}", path, rules->size());
  return std::unique_ptr<RuleStore>(new RuleStore(std::move(path), *std::move(rules)));
}

RuleStore::RuleStore(std::string path, std::vector<Rule> rules)
    : path_(std::move(path)), rules_(std::move(rules)) {}

absl::StatusOr<RuleStore::AddResult> RuleStore::Add(const Rule& requested) {
  absl::StatusOr<Rule> rule = NormalizeRule(requested);
  if (!rule.ok()) return rule.status();

  absl::MutexLock lock(&mu_);
  auto existing = FindRule(rules_, rule->domain(), rule->match());
  if (existing != rules_.end() && existing->action() == rule->action()) {
    spdlog::debug("rule already in force domain={} action={} match={}", rule->domain(),
                  ActionName(rule->action()), MatchName(rule->match()));
    return AddResult{false, *rule};
  }

  std::vector<Rule> updated = rules_;
  if (existing != rules_.end()) {
    updated[existing - rules_.begin()] = *rule;
  } else {
    updated.push_back(*rule);
  }

  if (absl::Status saved = Save(updated); !saved.ok()) return saved;
  spdlog::info("rule {} domain={} action={} match={}",
               existing != rules_.end() ? "replaced" : "added", rule->domain(),
               ActionName(rule->action()), MatchName(rule->match()));
  rules_ = std::move(updated);
  return AddResult{true, *rule};
}

absl::StatusOr<size_t> RuleStore::Remove(absl::string_view domain, Rule::Match match) {
  absl::StatusOr<std::string> name = NormalizeDomain(domain);
  if (!name.ok()) return name.status();
  if (!Rule::Match_IsValid(match)) {
    return absl::InvalidArgumentError(
        absl::StrCat("remove rules of ", *name, ": unknown match ", static_cast<int>(match)));
  }

  absl::MutexLock lock(&mu_);
  std::vector<Rule> updated = rules_;
  std::erase_if(updated, [&](const Rule& rule) {
    return rule.domain() == *name && (match == Rule::MATCH_UNSPECIFIED || rule.match() == match);
  });
  size_t removed = rules_.size() - updated.size();
  if (removed == 0) return removed;

  if (absl::Status saved = Save(updated); !saved.ok()) return saved;
  spdlog::info("rules removed domain={} match={} count={}", *name, MatchName(match), removed);
  rules_ = std::move(updated);
  return removed;
}

absl::Status RuleStore::Reload() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::vector<Rule>> rules = LoadRules(path_);
  if (!rules.ok()) {
    spdlog::error("reload rules failed path={} error=\"{}\"; keeping the {} rules in memory", path_,
                  std::string(rules.status().message()), rules_.size());
    return rules.status();
  }

  spdlog::info("rules reloaded path={} count={} before={}", path_, rules->size(), rules_.size());
  rules_ = *std::move(rules);
  return absl::OkStatus();
}

std::vector<Rule> RuleStore::List() const {
  absl::MutexLock lock(&mu_);
  return rules_;
}

size_t RuleStore::size() const {
  absl::MutexLock lock(&mu_);
  return rules_.size();
}

absl::Status RuleStore::Save(const std::vector<Rule>& rules) const {
  v1::RuleFile file;
  file.set_schema_version(kRuleFileSchemaVersion);
  for (const Rule& rule : rules) *file.add_rules() = rule;

  absl::Status written = WriteJsonProto(path_, file);
  if (written.ok()) return written;

  spdlog::error("save rules failed path={} error=\"{}\"; the rule list stays as it was", path_,
                std::string(written.message()));
  return absl::Status(written.code(), absl::StrCat("save rules: ", written.message()));
}

}  // namespace nehost::filter
