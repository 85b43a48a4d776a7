#include "extension/flow_rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/log.h"
#include "extension/rule_store.h"

namespace nehost::filter {
namespace {

constexpr size_t kMaxRuleName = 64;
constexpr uint32_t kMaxPort = 65535;
constexpr uint32_t kNoRule = std::numeric_limits<uint32_t>::max();

constexpr char kFileKept[] =
    "; the file is left untouched: repair it, or move it aside to start with no flow rules";

Address FromBytes(const uint8_t* bytes) {
  Address address = 0;
  for (int i = 0; i < 16; ++i) address = (address << 8) | bytes[i];
  return address;
}

Address MappedV4(const in_addr& v4) {
  uint8_t bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  std::memcpy(bytes + 12, &v4.s_addr, 4);
  return FromBytes(bytes);
}

struct ParsedAddress {
  Address address = 0;
  bool v4 = false;
};

// nullopt when the text is neither an IPv4 nor an IPv6 address. inet_pton needs a terminated
// string, and an address is at most 45 characters, so longer text is refused without a copy.
std::optional<ParsedAddress> ParseAddress(absl::string_view text) {
  char terminated[INET6_ADDRSTRLEN + 1];
  if (text.size() >= sizeof terminated) return std::nullopt;
  std::memcpy(terminated, text.data(), text.size());
  terminated[text.size()] = '\0';

  in_addr v4{};
  if (::inet_pton(AF_INET, terminated, &v4) == 1) return ParsedAddress{MappedV4(v4), true};
  in6_addr v6{};
  if (::inet_pton(AF_INET6, terminated, &v6) == 1) return ParsedAddress{FromBytes(v6.s6_addr)};
  return std::nullopt;
}

absl::Status BadRule(const FlowRule& rule, absl::string_view cause) {
  return absl::InvalidArgumentError(
      absl::StrCat("flow rule \"", absl::CHexEscape(rule.name()), "\": ", cause));
}

// A CIDR as a range of mapped addresses, and its prefix length among 128 bits.
struct Cidr {
  FlowRules::Range range;
  int length = 128;
};

Address HostMask(int length) { return length == 128 ? 0 : (~Address{0} >> length); }

// In ::ffff:0:0/96, where the IPv4 addresses are kept.
bool IsMappedV4(Address address) { return (address >> 32) == 0xffff; }

// "10.0.0.0/8", "2001:db8::/32", or one address.
absl::StatusOr<Cidr> ParseCidr(absl::string_view text) {
  const size_t slash = text.find('/');
  std::optional<ParsedAddress> parsed = ParseAddress(text.substr(0, slash));
  if (!parsed.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("cidr \"", absl::CHexEscape(text),
                                                   "\" is not an IPv4 or IPv6 address or CIDR"));
  }

  const int width = parsed->v4 ? 32 : 128;
  int length = width;
  if (slash != absl::string_view::npos) {
    absl::string_view digits = text.substr(slash + 1);
    const bool numeric = !digits.empty() && digits.size() <= 3 &&
                         std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
    if (!numeric || !absl::SimpleAtoi(digits, &length) || length > width) {
      return absl::InvalidArgumentError(absl::StrCat("cidr \"", absl::CHexEscape(text),
                                                     "\": the prefix length must be 0 to ", width));
    }
  }

  const int length128 = length + (128 - width);
  const Address host_mask = HostMask(length128);
  if ((parsed->address & host_mask) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cidr \"", absl::CHexEscape(text), "\" has host bits set past /", length));
  }
  return Cidr{{parsed->address, parsed->address | host_mask}, length128};
}

bool IsNameCharacter(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-';
}

absl::Status CheckName(const FlowRule& rule) {
  const std::string& name = rule.name();
  if (name.empty() || name.size() > kMaxRuleName ||
      !std::all_of(name.begin(), name.end(), IsNameCharacter)) {
    return BadRule(rule, "the name must be 1 to 64 of a-z, 0-9, '.', '_' and '-'");
  }
  return absl::OkStatus();
}

absl::Status CheckPorts(FlowRule& rule) {
  if (rule.port_min() > kMaxPort || rule.port_max() > kMaxPort) {
    return BadRule(rule, absl::StrCat("ports go up to ", kMaxPort));
  }
  if (rule.port_max() == 0) rule.set_port_max(rule.port_min());
  if (rule.port_max() < rule.port_min()) {
    return BadRule(rule, absl::StrCat("port range ", rule.port_min(), "-", rule.port_max(),
                                      " ends before it starts"));
  }
  return absl::OkStatus();
}

absl::Status CheckEnums(const FlowRule& rule) {
  if (!FlowRule::Action_IsValid(rule.action()) || !Flow::Protocol_IsValid(rule.protocol()) ||
      !Flow::Direction_IsValid(rule.direction()) ||
      !FlowRule::DomainMatch_IsValid(rule.domain_match())) {
    return BadRule(rule, "an action, protocol, direction or domain match is out of range");
  }
  return absl::OkStatus();
}

absl::Status NormalizeDomainOf(FlowRule& rule) {
  if (rule.domain().empty()) {
    rule.clear_domain_match();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> domain = NormalizeDomain(rule.domain());
  if (!domain.ok()) return BadRule(rule, domain.status().message());
  rule.set_domain(*domain);
  if (rule.domain_match() == FlowRule::DOMAIN_MATCH_UNSPECIFIED) {
    rule.set_domain_match(FlowRule::EXACT);
  }
  return absl::OkStatus();
}

absl::Status CheckCidrs(const FlowRule& rule) {
  if (rule.cidrs_size() > kMaxCidrsPerRule) {
    return BadRule(rule, absl::StrCat(rule.cidrs_size(), " cidrs; at most ", kMaxCidrsPerRule));
  }
  for (const std::string& cidr : rule.cidrs()) {
    if (absl::StatusOr<Cidr> parsed = ParseCidr(cidr); !parsed.ok()) {
      return BadRule(rule, parsed.status().message());
    }
  }
  return absl::OkStatus();
}

absl::Status CheckExecutable(const FlowRule& rule) {
  const std::string& executable = rule.executable();
  if (executable.empty()) return absl::OkStatus();
  if (executable.front() != '/') {
    return BadRule(rule, absl::StrCat("executable \"", absl::CHexEscape(executable),
                                      "\" is not an absolute path"));
  }
  if (executable.find('\0') != std::string::npos) {
    return BadRule(rule, "executable holds a NUL character");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<FlowRule>> RulesOf(const v1::FlowRuleFile& file,
                                              const std::string& path) {
  std::vector<FlowRule> rules;
  std::set<std::string> names;
  for (int i = 0; i < file.rules_size(); ++i) {
    absl::StatusOr<FlowRule> rule = NormalizeFlowRule(file.rules(i));
    if (!rule.ok()) {
      return absl::DataLossError(absl::StrCat("load flow rules ", path, ": rule ", i + 1, ": ",
                                              rule.status().message(), kFileKept));
    }
    if (!names.insert(rule->name()).second) {
      return absl::DataLossError(absl::StrCat("load flow rules ", path, ": rule ", i + 1,
                                              " repeats the name ", rule->name(), kFileKept));
    }
    rules.push_back(*std::move(rule));
  }
  return rules;
}

struct LoadedFile {
  std::vector<FlowRule> rules;
  FlowRule::Action default_action = FlowRule::ALLOW;
};

absl::StatusOr<LoadedFile> LoadFile(const std::string& path) {
  v1::FlowRuleFile file;
  absl::Status read = ReadJsonProto(path, &file);
  if (absl::IsNotFound(read)) return LoadedFile{};
  if (!read.ok()) {
    return absl::Status(read.code(), absl::StrCat("load flow rules: ", read.message(), kFileKept));
  }

  if (file.schema_version() != kFlowRuleFileSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "load flow rules ", path, ": schema_version ", file.schema_version(),
        " is not one this nehost-filter reads (", kFlowRuleFileSchemaVersion, ")", kFileKept));
  }
  if (!FlowRule::Action_IsValid(file.default_action())) {
    return absl::DataLossError(absl::StrCat("load flow rules ", path, ": default_action ",
                                            file.default_action(), " is unknown", kFileKept));
  }

  absl::StatusOr<std::vector<FlowRule>> rules = RulesOf(file, path);
  if (!rules.ok()) return rules.status();
  const FlowRule::Action action = file.default_action() == FlowRule::ACTION_UNSPECIFIED
                                      ? FlowRule::ALLOW
                                      : file.default_action();
  return LoadedFile{*std::move(rules), action};
}

std::string ActionName(FlowRule::Action action) {
  return absl::AsciiStrToLower(FlowRule::Action_Name(action));
}

bool IsCanonicalHostname(absl::string_view name) {
  return !absl::EndsWith(name, ".") &&
         std::none_of(name.begin(), name.end(), [](char c) { return absl::ascii_isupper(c); });
}

}  // namespace

absl::Status ParseFlow(const Flow& flow, ParsedFlow* parsed) {
  if (flow.remote_port() > kMaxPort || flow.local_port() > kMaxPort) {
    const bool remote = flow.remote_port() > kMaxPort;
    return absl::InvalidArgumentError(
        absl::StrCat("flow ", flow.id(), ": ", remote ? "remote_port " : "local_port ",
                     remote ? flow.remote_port() : flow.local_port(), " is past ", kMaxPort));
  }
  if (!Flow::Protocol_IsValid(flow.protocol()) || !Flow::Direction_IsValid(flow.direction())) {
    return absl::InvalidArgumentError(
        absl::StrCat("flow ", flow.id(), ": protocol ", flow.protocol(), " or direction ",
                     flow.direction(), " is not one this nehost-filter knows"));
  }

  parsed->has_address = !flow.remote_address().empty();
  if (parsed->has_address) {
    std::optional<ParsedAddress> address = ParseAddress(flow.remote_address());
    if (!address.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("flow ", flow.id(), ": remote_address \"",
                                                     absl::CHexEscape(flow.remote_address()),
                                                     "\" is not an IPv4 or IPv6 address"));
    }
    parsed->address = address->address;
  }

  parsed->protocol = flow.protocol();
  parsed->direction = flow.direction();
  parsed->remote_port = flow.remote_port();
  parsed->executable = flow.executable();
  parsed->hostname = flow.hostname();
  if (!IsCanonicalHostname(parsed->hostname)) {
    parsed->hostname_storage = absl::AsciiStrToLower(flow.hostname());
    if (absl::EndsWith(parsed->hostname_storage, ".")) parsed->hostname_storage.pop_back();
    parsed->hostname = parsed->hostname_storage;
  }
  return absl::OkStatus();
}

absl::StatusOr<FlowRule> NormalizeFlowRule(const FlowRule& requested) {
  FlowRule rule = requested;
  if (absl::Status name = CheckName(rule); !name.ok()) return name;
  if (absl::Status enums = CheckEnums(rule); !enums.ok()) return enums;
  if (rule.action() == FlowRule::ACTION_UNSPECIFIED) rule.set_action(FlowRule::DENY);
  if (absl::Status ports = CheckPorts(rule); !ports.ok()) return ports;
  if (absl::Status domain = NormalizeDomainOf(rule); !domain.ok()) return domain;
  if (absl::Status cidrs = CheckCidrs(rule); !cidrs.ok()) return cidrs;
  if (absl::Status executable = CheckExecutable(rule); !executable.ok()) return executable;
  return rule;
}

// A rule in the form Evaluate reads fastest: no protobuf accessors, the CIDRs parsed.
struct FlowRules::Compiled {
  FlowRule rule;
  FlowRule::Action action = FlowRule::DENY;
  Flow::Protocol protocol = Flow::PROTOCOL_UNSPECIFIED;
  Flow::Direction direction = Flow::DIRECTION_UNSPECIFIED;
  // 0 and 0 for any port.
  uint32_t port_min = 0;
  uint32_t port_max = 0;
  std::vector<Cidr> cidrs;
  std::string domain;
  bool domain_suffix = false;
  std::string executable;
  bool executable_folder = false;
  Counter* hits = nullptr;

  bool Matches(const ParsedFlow& flow) const;
};

namespace {

struct AddressHash {
  size_t operator()(Address address) const {
    return absl::HashOf(static_cast<uint64_t>(address >> 64), static_cast<uint64_t>(address));
  }
};

bool DomainMatches(absl::string_view domain, bool suffix, absl::string_view hostname) {
  if (hostname.size() == domain.size()) return hostname == domain;
  return suffix && hostname.size() > domain.size() && absl::EndsWith(hostname, domain) &&
         hostname[hostname.size() - domain.size() - 1] == '.';
}

bool ExecutableMatches(absl::string_view wanted, bool folder, absl::string_view executable) {
  return folder ? absl::StartsWith(executable, wanted) : executable == wanted;
}

// Calls visit with each name the hostname is below, itself first: "a.example.com",
// "example.com", "com".
template <typename Visit>
void ForEachSuffix(absl::string_view hostname, Visit visit) {
  while (!hostname.empty()) {
    visit(hostname);
    const size_t dot = hostname.find('.');
    if (dot == absl::string_view::npos) return;
    hostname.remove_prefix(dot + 1);
  }
}

// Calls visit with each folder the executable is in, with its trailing '/': "/", "/usr/",
// "/usr/bin/".
template <typename Visit>
void ForEachFolder(absl::string_view executable, Visit visit) {
  for (size_t slash = executable.find('/'); slash != absl::string_view::npos;
       slash = executable.find('/', slash + 1)) {
    visit(executable.substr(0, slash + 1));
  }
}

}  // namespace

bool FlowRules::Compiled::Matches(const ParsedFlow& flow) const {
  if (protocol != Flow::PROTOCOL_UNSPECIFIED && protocol != flow.protocol) return false;
  if (direction != Flow::DIRECTION_UNSPECIFIED && direction != flow.direction) return false;
  if (port_max != 0 && (flow.remote_port < port_min || flow.remote_port > port_max)) return false;
  if (!cidrs.empty()) {
    if (!flow.has_address) return false;
    // An IPv6 CIDR covers IPv6 addresses only: "::/0" spans the mapped block too, but means
    // every IPv6 address, not every address. A CIDR inside the block (every IPv4 CIDR, or
    // one written as "::ffff:10.0.0.0/104") covers IPv4 ones.
    const bool v4 = IsMappedV4(flow.address);
    const bool inside = std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& cidr) {
      return flow.address >= cidr.range.first && flow.address <= cidr.range.last &&
             IsMappedV4(cidr.range.first) == v4;
    });
    if (!inside) return false;
  }
  if (!domain.empty() && !DomainMatches(domain, domain_suffix, flow.hostname)) return false;
  return executable.empty() || ExecutableMatches(executable, executable_folder, flow.executable);
}

// Rules by their most selective criterion. Each list holds rule positions in increasing order,
// so the first that matches in a list is the best that list can offer.
struct FlowRules::Index {
  using Positions = std::vector<uint32_t>;

  absl::flat_hash_map<std::string, Positions> exact_domains;
  absl::flat_hash_map<std::string, Positions> domain_suffixes;
  // By prefix length among 128 bits, then network address.
  std::vector<std::pair<int, absl::flat_hash_map<Address, Positions, AddressHash>>> networks;
  absl::flat_hash_map<std::string, Positions> executables;
  absl::flat_hash_map<std::string, Positions> executable_folders;
  absl::flat_hash_map<uint32_t, Positions> ports;
  // Rules with none of the criteria above: checked for every flow.
  Positions rest;

  void File(const Compiled& rule, uint32_t position);
  auto& NetworksOfLength(int length);
};

auto& FlowRules::Index::NetworksOfLength(int length) {
  auto found = std::find_if(networks.begin(), networks.end(),
                            [&](const auto& entry) { return entry.first == length; });
  if (found != networks.end()) return found->second;
  networks.emplace_back(length, absl::flat_hash_map<Address, Positions, AddressHash>());
  return networks.back().second;
}

void FlowRules::Index::File(const Compiled& rule, uint32_t position) {
  if (!rule.domain.empty()) {
    (rule.domain_suffix ? domain_suffixes : exact_domains)[rule.domain].push_back(position);
  } else if (!rule.cidrs.empty()) {
    for (const Cidr& cidr : rule.cidrs) {
      Positions& positions = NetworksOfLength(cidr.length)[cidr.range.first];
      // A rule with two CIDRs in the same network is filed there once.
      if (positions.empty() || positions.back() != position) positions.push_back(position);
    }
  } else if (!rule.executable.empty()) {
    (rule.executable_folder ? executable_folders : executables)[rule.executable].push_back(
        position);
  } else if (rule.port_max != 0 && rule.port_min == rule.port_max) {
    ports[rule.port_min].push_back(position);
  } else {
    rest.push_back(position);
  }
}

FlowRules::FlowRules() = default;
FlowRules::~FlowRules() = default;

size_t FlowRules::size() const { return rules_.size(); }

std::shared_ptr<const FlowRules> FlowRules::Compile(const std::vector<FlowRule>& rules,
                                                    FlowRule::Action default_action,
                                                    CounterSet* hits, Matching matching) {
  std::shared_ptr<FlowRules> compiled(new FlowRules());
  compiled->default_action_ = default_action;
  for (FlowRule::Action pass : {FlowRule::ALLOW, FlowRule::DENY}) {
    for (const FlowRule& rule : rules) {
      if (rule.action() != pass) continue;
      Compiled entry{.rule = rule,
                     .action = rule.action(),
                     .protocol = rule.protocol(),
                     .direction = rule.direction(),
                     .port_min = rule.port_min(),
                     .port_max = rule.port_max(),
                     .cidrs = {},
                     .domain = rule.domain(),
                     .domain_suffix = rule.domain_match() == FlowRule::SUFFIX,
                     .executable = rule.executable(),
                     .executable_folder = absl::EndsWith(rule.executable(), "/"),
                     .hits = hits->counter(absl::StrCat(kFlowRuleHitsPrefix, rule.name()))};
      for (const std::string& cidr : rule.cidrs()) entry.cidrs.push_back(*ParseCidr(cidr));
      compiled->rules_.push_back(std::move(entry));
    }
  }
  if (matching == Matching::kIndexed) compiled->BuildIndex();
  return compiled;
}

void FlowRules::BuildIndex() {
  index_ = std::make_unique<Index>();
  for (uint32_t position = 0; position < rules_.size(); ++position) {
    index_->File(rules_[position], position);
  }
}

uint32_t FlowRules::FirstMatchScan(const ParsedFlow& flow) const {
  for (uint32_t position = 0; position < rules_.size(); ++position) {
    if (rules_[position].Matches(flow)) return position;
  }
  return kNoRule;
}

uint32_t FlowRules::FirstMatchIndexed(const ParsedFlow& flow) const {
  uint32_t best = kNoRule;
  auto consider = [&](const Index::Positions& positions) {
    for (uint32_t position : positions) {
      if (position >= best) return;
      if (rules_[position].Matches(flow)) {
        best = position;
        return;
      }
    }
  };
  auto consider_found = [&](const auto& table, const auto& key) {
    auto found = table.find(key);
    if (found != table.end()) consider(found->second);
  };

  const Index& index = *index_;
  if (!flow.hostname.empty()) {
    if (!index.exact_domains.empty()) consider_found(index.exact_domains, flow.hostname);
    if (!index.domain_suffixes.empty()) {
      ForEachSuffix(flow.hostname,
                    [&](absl::string_view name) { consider_found(index.domain_suffixes, name); });
    }
  }
  if (flow.has_address) {
    for (const auto& [length, networks] : index.networks) {
      consider_found(networks, flow.address & ~HostMask(length));
    }
  }
  if (!flow.executable.empty()) {
    if (!index.executables.empty()) consider_found(index.executables, flow.executable);
    if (!index.executable_folders.empty()) {
      ForEachFolder(flow.executable, [&](absl::string_view folder) {
        consider_found(index.executable_folders, folder);
      });
    }
  }
  if (!index.ports.empty()) consider_found(index.ports, flow.remote_port);
  consider(index.rest);
  return best;
}

FlowDecision FlowRules::Evaluate(const ParsedFlow& flow) const {
  const uint32_t position = index_ != nullptr ? FirstMatchIndexed(flow) : FirstMatchScan(flow);
  if (position == kNoRule) return FlowDecision{default_action_, nullptr};

  const Compiled& rule = rules_[position];
  rule.hits->Add();
  return FlowDecision{rule.action, &rule.rule};
}

absl::StatusOr<std::unique_ptr<FlowRuleStore>> FlowRuleStore::Open(const std::string& state_dir,
                                                                   CounterSet* hits) {
  std::string path = absl::StrCat(state_dir, "/", kFlowRuleFileName);
  absl::StatusOr<LoadedFile> loaded = LoadFile(path);
  if (!loaded.ok()) return loaded.status();

  spdlog::info("flow rules loaded path={} count={} default={}", path, loaded->rules.size(),
               ActionName(loaded->default_action));
  return std::unique_ptr<FlowRuleStore>(
      new FlowRuleStore(std::move(path), std::move(loaded->rules), loaded->default_action, hits));
}

FlowRuleStore::FlowRuleStore(std::string path, std::vector<FlowRule> rules,
                             FlowRule::Action default_action, CounterSet* hits)
    : path_(std::move(path)),
      hits_(hits),
      rules_(std::move(rules)),
      default_action_(default_action) {
  absl::MutexLock lock(&mu_);
  Publish();
}

void FlowRuleStore::Publish() {
  current_.store(FlowRules::Compile(rules_, default_action_, hits_));
}

absl::StatusOr<FlowRuleStore::AddResult> FlowRuleStore::Add(const FlowRule& requested) {
  absl::StatusOr<FlowRule> rule = NormalizeFlowRule(requested);
  if (!rule.ok()) return rule.status();

  absl::MutexLock lock(&mu_);
  auto existing = std::find_if(rules_.begin(), rules_.end(),
                               [&](const FlowRule& kept) { return kept.name() == rule->name(); });
  if (existing != rules_.end() && existing->SerializeAsString() == rule->SerializeAsString()) {
    return AddResult{false, *rule};
  }

  std::vector<FlowRule> updated = rules_;
  if (existing != rules_.end()) {
    updated[existing - rules_.begin()] = *rule;
  } else {
    updated.push_back(*rule);
  }
  if (absl::Status saved = Save(updated, default_action_); !saved.ok()) return saved;
  spdlog::info("flow rule {} name={} action={}", existing != rules_.end() ? "replaced" : "added",
               rule->name(), ActionName(rule->action()));
  rules_ = std::move(updated);
  Publish();
  return AddResult{true, *rule};
}

absl::StatusOr<bool> FlowRuleStore::Remove(const std::string& name) {
  absl::MutexLock lock(&mu_);
  std::vector<FlowRule> updated = rules_;
  std::erase_if(updated, [&](const FlowRule& rule) { return rule.name() == name; });
  if (updated.size() == rules_.size()) return false;

  if (absl::Status saved = Save(updated, default_action_); !saved.ok()) return saved;
  spdlog::info("flow rule removed name={}", name);
  rules_ = std::move(updated);
  Publish();
  return true;
}

absl::Status FlowRuleStore::SetDefault(FlowRule::Action action) {
  if (action != FlowRule::ALLOW && action != FlowRule::DENY) {
    return absl::InvalidArgumentError("set default flow action: it must be allow or deny");
  }
  absl::MutexLock lock(&mu_);
  if (action == default_action_) return absl::OkStatus();

  if (absl::Status saved = Save(rules_, action); !saved.ok()) return saved;
  spdlog::info("default flow action set action={}", ActionName(action));
  default_action_ = action;
  Publish();
  return absl::OkStatus();
}

absl::Status FlowRuleStore::Reload() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<LoadedFile> loaded = LoadFile(path_);
  if (!loaded.ok()) {
    spdlog::error("reload flow rules failed path={} error=\"{}\"; keeping the {} rules in memory",
                  path_, loaded.status().message(), rules_.size());
    return loaded.status();
  }

  spdlog::info("flow rules reloaded path={} count={} before={} default={}", path_,
               loaded->rules.size(), rules_.size(), ActionName(loaded->default_action));
  rules_ = std::move(loaded->rules);
  default_action_ = loaded->default_action;
  Publish();
  return absl::OkStatus();
}

std::vector<FlowRule> FlowRuleStore::List() const {
  absl::MutexLock lock(&mu_);
  return rules_;
}

FlowRule::Action FlowRuleStore::default_action() const {
  absl::MutexLock lock(&mu_);
  return default_action_;
}

size_t FlowRuleStore::size() const {
  absl::MutexLock lock(&mu_);
  return rules_.size();
}

absl::Status FlowRuleStore::Save(const std::vector<FlowRule>& rules,
                                 FlowRule::Action default_action) const {
  v1::FlowRuleFile file;
  file.set_schema_version(kFlowRuleFileSchemaVersion);
  file.set_default_action(default_action);
  for (const FlowRule& rule : rules) *file.add_rules() = rule;

  absl::Status written = WriteJsonProto(path_, file);
  if (written.ok()) return written;
  spdlog::error("save flow rules failed path={} error=\"{}\"; the rules stay as they were", path_,
                written.message());
  return absl::Status(written.code(), absl::StrCat("save flow rules: ", written.message()));
}

}  // namespace nehost::filter
