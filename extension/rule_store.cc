#include "extension/rule_store.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
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

// Schema 1 had the same rules and no lists: reading it as schema 2 is its migration.
constexpr uint32_t kFirstSchemaVersion = 1;
constexpr size_t kMaxListName = 64;

struct LoadedState {
  std::vector<Rule> rules;
  std::vector<RuleStore::StoredList> lists;
  uint32_t schema_version = kRuleFileSchemaVersion;
};

// The lists a file names, each read from its own file unless known already holds it: lists
// are written under a fresh file name each time, so the same name means the same names.
absl::StatusOr<std::vector<RuleStore::StoredList>> LoadLists(
    const v1::RuleFile& file, const std::string& state_dir, const std::string& path,
    const absl::flat_hash_map<std::string, std::shared_ptr<const DomainList>>& known) {
  std::vector<RuleStore::StoredList> lists;
  for (const RuleList& meta : file.lists()) {
    if (absl::Status name = CheckListName(meta.name()); !name.ok()) {
      return absl::DataLossError(
          absl::StrCat("load rules ", path, ": ", name.message(), kFileKept));
    }
    auto found = known.find(meta.file());
    if (found != known.end()) {
      lists.push_back({meta, found->second});
      continue;
    }

    std::string list_path = absl::StrCat(state_dir, "/", meta.file());
    absl::StatusOr<std::shared_ptr<const DomainList>> names = DomainList::Load(list_path);
    if (!names.ok()) {
      return absl::DataLossError(absl::StrCat("load rules ", path, ": list ", meta.name(), ": ",
                                              names.status().message(), kFileKept));
    }
    if ((*names)->size() != meta.count()) {
      return absl::DataLossError(
          absl::StrCat("load rules ", path, ": list ", meta.name(), " in ", list_path, " holds ",
                       (*names)->size(), " names; the rule file says ", meta.count(), kFileKept));
    }
    lists.push_back({meta, *std::move(names)});
  }
  return lists;
}

absl::StatusOr<LoadedState> LoadState(
    const std::string& state_dir, const std::string& path,
    const absl::flat_hash_map<std::string, std::shared_ptr<const DomainList>>& known = {}) {
  v1::RuleFile file;
  absl::Status read = ReadJsonProto(path, &file);
  if (absl::IsNotFound(read)) return LoadedState{};
  if (!read.ok()) {
    return absl::Status(read.code(), absl::StrCat("load rules: ", read.message(), kFileKept));
  }

  uint32_t version = file.schema_version();
  if (version != kRuleFileSchemaVersion && version != kFirstSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "load rules ", path, ": schema_version ", version, " is not one this nehost-filter reads (",
        kFirstSchemaVersion, " or ", kRuleFileSchemaVersion, ")", kFileKept));
  }
  if (version == kFirstSchemaVersion && file.lists_size() != 0) {
    return absl::DataLossError(
        absl::StrCat("load rules ", path, ": schema_version 1 has no lists", kFileKept));
  }

  absl::StatusOr<std::vector<Rule>> rules = RulesOf(file, path);
  if (!rules.ok()) return rules.status();
  absl::StatusOr<std::vector<RuleStore::StoredList>> lists =
      LoadLists(file, state_dir, path, known);
  if (!lists.ok()) return lists.status();
  return LoadedState{*std::move(rules), *std::move(lists), version};
}

// "lists/NAME.0123abcd.list": a fresh file for every import, so that the file the rule file
// names is never overwritten in place.
std::string NewListFile(absl::string_view name) {
  uint32_t nonce = 0;
  if (::getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
    nonce = absl::Uniform<uint32_t>(absl::BitGen());
  return absl::StrCat(kListFolder, "/", name, ".", absl::Hex(nonce, absl::kZeroPad8), ".list");
}

void RemoveListFile(const std::string& state_dir, const std::string& file) {
  std::string path = absl::StrCat(state_dir, "/", file);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove old list file path={} error=\"{}\"; it stays unused", path,
                 ErrnoText(errno));
  }
}

std::string ResponseName(Rule::Response response) {
  return absl::AsciiStrToLower(Rule::Response_Name(response));
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
                         "is an IP address or range (CIDR), not a domain name; domain rules name "
                         "domains, flow rules match addresses (nehostctl flows add --cidr)");
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

  if (!Rule::Response_IsValid(rule.response())) {
    return absl::InvalidArgumentError(absl::StrCat("rule for ", *domain, ": unknown response ",
                                                   static_cast<int>(rule.response())));
  }

  Rule normalized;
  normalized.set_domain(*std::move(domain));
  normalized.set_action(rule.action() == Rule::ACTION_UNSPECIFIED ? Rule::DENY : rule.action());
  normalized.set_match(rule.match() == Rule::MATCH_UNSPECIFIED ? Rule::EXACT : rule.match());
  if (normalized.action() == Rule::DENY) {
    normalized.set_response(rule.response() == Rule::RESPONSE_UNSPECIFIED ? Rule::NXDOMAIN
                                                                          : rule.response());
  }
  return normalized;
}

absl::Status CheckListName(absl::string_view name) {
  bool valid =
      !name.empty() && name.size() <= kMaxListName && name.front() != '.' &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-';
      });
  if (valid) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid list name \"", absl::CHexEscape(name), "\": use 1 to ", kMaxListName,
                   " characters of a-z, 0-9, '.', '_' and '-', not starting with '.'"));
}

absl::StatusOr<std::unique_ptr<RuleStore>> RuleStore::Open(const std::string& state_dir) {
  if (absl::Status folder = CheckFolder(state_dir); !folder.ok()) return folder;

  std::string path = absl::StrCat(state_dir, "/", kRuleFileName);
  absl::StatusOr<LoadedState> state = LoadState(state_dir, path);
  if (!state.ok()) return state.status();

  size_t names = 0;
  for (const StoredList& list : state->lists) names += list.names->size();
  spdlog::info("rules loaded path={} rules={} lists={} names={}", path, state->rules.size(),
               state->lists.size(), names);
  std::unique_ptr<RuleStore> store(
      new RuleStore(state_dir, std::move(state->rules), std::move(state->lists)));

  if (state->schema_version != kRuleFileSchemaVersion) {
    absl::MutexLock lock(&store->mu_);
    absl::Status saved = store->Save(store->rules_, store->lists_);
    if (!saved.ok()) return saved;
    spdlog::info("rules migrated path={} from_schema={} to_schema={}", path, state->schema_version,
                 kRuleFileSchemaVersion);
  }
  return store;
}

RuleStore::RuleStore(std::string state_dir, std::vector<Rule> rules, std::vector<StoredList> lists)
    : state_dir_(std::move(state_dir)),
      path_(absl::StrCat(state_dir_, "/", kRuleFileName)),
      rules_(std::move(rules)),
      lists_(std::move(lists)) {
  absl::MutexLock lock(&mu_);
  Publish();
}

absl::StatusOr<RuleStore::AddResult> RuleStore::Add(const Rule& requested) {
  absl::StatusOr<Rule> rule = NormalizeRule(requested);
  if (!rule.ok()) return rule.status();

  absl::MutexLock lock(&mu_);
  auto existing = FindRule(rules_, rule->domain(), rule->match());
  if (existing != rules_.end() && existing->action() == rule->action() &&
      existing->response() == rule->response()) {
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

  if (absl::Status saved = Save(updated, lists_); !saved.ok()) return saved;
  spdlog::info("rule {} domain={} action={} match={} response={}",
               existing != rules_.end() ? "replaced" : "added", rule->domain(),
               ActionName(rule->action()), MatchName(rule->match()),
               ResponseName(rule->response()));
  rules_ = std::move(updated);
  Publish();
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

  if (absl::Status saved = Save(updated, lists_); !saved.ok()) return saved;
  spdlog::info("rules removed domain={} match={} count={}", *name, MatchName(match), removed);
  rules_ = std::move(updated);
  Publish();
  return removed;
}

absl::StatusOr<RuleStore::ImportResult> RuleStore::ImportList(
    const RuleList& requested, std::shared_ptr<const DomainList> names) {
  if (absl::Status name = CheckListName(requested.name()); !name.ok()) return name;
  if (names->size() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("import list ", requested.name(), ": no valid names to import"));
  }
  Rule as_rule;  // the list's action and response, normalised as a rule's are
  as_rule.set_domain("list.invalid");
  as_rule.set_action(requested.action());
  as_rule.set_response(requested.response());
  absl::StatusOr<Rule> normalized = NormalizeRule(as_rule);
  if (!normalized.ok()) return normalized.status();

  RuleList list;
  list.set_name(requested.name());
  list.set_action(normalized->action());
  list.set_response(normalized->response());
  list.set_count(names->size());
  list.set_file(NewListFile(list.name()));

  absl::MutexLock lock(&mu_);
  std::string folder = absl::StrCat(state_dir_, "/", kListFolder);
  if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
  absl::Status written =
      WriteFileAtomically(absl::StrCat(state_dir_, "/", list.file()), names->contents(), 0644);
  if (!written.ok()) {
    return absl::Status(written.code(),
                        absl::StrCat("import list ", list.name(), ": ", written.message()));
  }

  std::vector<StoredList> updated = lists_;
  auto existing = std::find_if(updated.begin(), updated.end(), [&](const StoredList& stored) {
    return stored.meta.name() == list.name();
  });
  std::string replaced_file = existing != updated.end() ? existing->meta.file() : "";
  if (existing != updated.end()) {
    *existing = {list, names};
  } else {
    updated.push_back({list, names});
  }

  if (absl::Status saved = Save(rules_, updated); !saved.ok()) {
    RemoveListFile(state_dir_, list.file());
    return saved;
  }
  if (!replaced_file.empty()) RemoveListFile(state_dir_, replaced_file);
  spdlog::info("list {} name={} names={} action={} response={} file={}",
               replaced_file.empty() ? "imported" : "replaced", list.name(), list.count(),
               ActionName(list.action()), ResponseName(list.response()), list.file());
  lists_ = std::move(updated);
  Publish();
  return ImportResult{!replaced_file.empty(), list};
}

absl::StatusOr<bool> RuleStore::RemoveList(absl::string_view name) {
  if (absl::Status valid = CheckListName(name); !valid.ok()) return valid;

  absl::MutexLock lock(&mu_);
  std::vector<StoredList> updated = lists_;
  auto existing = std::find_if(updated.begin(), updated.end(), [&](const StoredList& stored) {
    return stored.meta.name() == name;
  });
  if (existing == updated.end()) return false;
  std::string file = existing->meta.file();
  updated.erase(existing);

  if (absl::Status saved = Save(rules_, updated); !saved.ok()) return saved;
  RemoveListFile(state_dir_, file);
  spdlog::info("list removed name={}", std::string(name));
  lists_ = std::move(updated);
  Publish();
  return true;
}

absl::Status RuleStore::Reload() {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const DomainList>> known;
  for (const StoredList& list : lists_) known[list.meta.file()] = list.names;

  absl::StatusOr<LoadedState> state = LoadState(state_dir_, path_, known);
  if (!state.ok()) {
    spdlog::error(
        "reload rules failed path={} error=\"{}\"; keeping the {} rules and {} lists "
        "in memory",
        path_, std::string(state.status().message()), rules_.size(), lists_.size());
    return state.status();
  }

  spdlog::info("rules reloaded path={} rules={} lists={} rules_before={} lists_before={}", path_,
               state->rules.size(), state->lists.size(), rules_.size(), lists_.size());
  rules_ = std::move(state->rules);
  lists_ = std::move(state->lists);
  Publish();
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

std::vector<RuleList> RuleStore::Lists() const {
  absl::MutexLock lock(&mu_);
  std::vector<RuleList> lists;
  for (const StoredList& list : lists_) lists.push_back(list.meta);
  return lists;
}

uint64_t RuleStore::rules_version() const { return version_.load(std::memory_order_acquire); }

std::shared_ptr<const DomainRules> RuleStore::rules() const { return compiled_.load(); }

void RuleStore::Publish() {
  std::vector<DomainRules::List> lists;
  for (const StoredList& list : lists_) {
    lists.push_back({list.meta.name(), list.meta.action(), list.meta.response(), list.names});
  }
  compiled_.store(DomainRules::Compile(rules_, std::move(lists)));
  version_.fetch_add(1, std::memory_order_release);
}

absl::Status RuleStore::Save(const std::vector<Rule>& rules,
                             const std::vector<StoredList>& lists) const {
  v1::RuleFile file;
  file.set_schema_version(kRuleFileSchemaVersion);
  for (const Rule& rule : rules) *file.add_rules() = rule;
  for (const StoredList& list : lists) *file.add_lists() = list.meta;

  absl::Status written = WriteJsonProto(path_, file);
  if (written.ok()) return written;

  spdlog::error("save rules failed path={} error=\"{}\"; the rule list stays as it was", path_,
                std::string(written.message()));
  return absl::Status(written.code(), absl::StrCat("save rules: ", written.message()));
}

}  // namespace nehost::filter
