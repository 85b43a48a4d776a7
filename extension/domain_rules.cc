#include "extension/domain_rules.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/unique_fd.h"

namespace nehost::filter {
namespace {

constexpr char kSuffixMark[] = "*.";
constexpr size_t kSuffixMarkLength = 2;
constexpr size_t kMaxLabel = 63;
constexpr size_t kInitialSlots = 1024;

constexpr uint32_t kLengthBits = 8;
constexpr uint32_t kSuffixBit = 1u << kLengthBits;
constexpr uint32_t kTagShift = kLengthBits + 1;

uint32_t TagOf(size_t hash) { return static_cast<uint32_t>(hash >> (64 - 23)) << kTagShift; }

bool IsNameCharacter(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_';
}

std::string RuleNameOf(const v1::Rule& rule) {
  return absl::StrCat("rule:", rule.action() == v1::Rule::ALLOW ? "allow" : "deny", ":",
                      rule.match() == v1::Rule::SUFFIX ? "suffix" : "exact", ":", rule.domain());
}

dns::BlockedAnswer AnswerOf(v1::Rule::Response response) {
  return response == v1::Rule::SINKHOLE ? dns::BlockedAnswer::kSinkhole
                                        : dns::BlockedAnswer::kNxDomain;
}

}  // namespace

size_t HashName(absl::string_view name) {
  return absl::Hash<absl::string_view>{}(absl::string_view(name.data(), name.size()));
}

bool IsNormalizedName(absl::string_view name) {
  if (name.empty() || name.size() > dns::kMaxNameText) return false;
  size_t label_start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      if (!IsNameCharacter(name[i])) return false;
      continue;
    }

    size_t length = i - label_start;
    if (length == 0 || length > kMaxLabel) return false;
    if (name[label_start] == '-' || name[i - 1] == '-') return false;
    label_start = i + 1;
  }
  return true;
}

DomainList::Builder::Builder() : list_(new DomainList()) { list_->slots_.resize(kInitialSlots); }

bool DomainList::Builder::Add(absl::string_view name, bool suffix) {
  size_t start = list_->contents_.size();
  if (suffix) list_->contents_.append(kSuffixMark);
  size_t offset = list_->contents_.size();
  list_->contents_.append(name.data(), name.size());
  list_->contents_.push_back('\n');

  if (list_->Insert(offset, name.size(), suffix)) return true;
  list_->contents_.resize(start);
  return false;
}

std::shared_ptr<const DomainList> DomainList::Builder::Finish() {
  list_->contents_.shrink_to_fit();
  return std::move(list_);
}

absl::StatusOr<std::shared_ptr<const DomainList>> DomainList::Load(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat info;
  if (!fd || ::fstat(fd.get(), &info) != 0) return ErrnoStatus(errno, "open list", path);

  // One read into a string of the file's size: a million names are about 30 MB, and growing
  // a string to that size would copy it several times over.
  std::string contents(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::read(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read list", path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  contents.resize(done);
  return FromContents(std::move(contents), path);
}

absl::StatusOr<std::shared_ptr<const DomainList>> DomainList::FromContents(
    std::string contents, absl::string_view source) {
  std::shared_ptr<DomainList> list(new DomainList());
  list->contents_ = std::move(contents);

  // Sized for every line at once, so that the table never grows and rehashes while loading.
  size_t lines =
      static_cast<size_t>(std::count(list->contents_.begin(), list->contents_.end(), '\n') + 1);
  size_t slots = kInitialSlots;
  while (lines * 10 > slots * 7) slots *= 2;
  list->slots_.resize(slots);

  const std::string& text = list->contents_;
  size_t line_number = 0;
  for (size_t start = 0; start < text.size();) {
    ++line_number;
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    absl::string_view line(&text[start], end - start);

    bool suffix = absl::StartsWith(line, kSuffixMark);
    if (suffix) line.remove_prefix(kSuffixMarkLength);
    if (!IsNormalizedName(line) || list->count_ >= kMaxNames) {
      return absl::DataLossError(absl::StrCat(
          "read list ", source, ": line ", line_number, " \"",
          absl::CHexEscape(absl::string_view(line.data(), std::min<size_t>(line.size(), 80))),
          "\" is not a normalised name"));
    }
    list->Insert(line.data() - text.data(), line.size(), suffix);
    start = end + 1;
  }
  return std::shared_ptr<const DomainList>(std::move(list));
}

size_t DomainList::Find(absl::string_view name, size_t hash) const {
  size_t mask = slots_.size() - 1;
  uint32_t tag = TagOf(hash);
  for (size_t index = hash & mask;; index = (index + 1) & mask) {
    const Slot& slot = slots_[index];
    if (slot.offset == kEmpty) return index;
    if ((slot.meta & ~kSuffixBit) == (tag | static_cast<uint32_t>(name.size())) &&
        std::memcmp(&contents_[slot.offset], name.data(), name.size()) == 0) {
      return index;
    }
  }
}

bool DomainList::Matches(absl::string_view name, size_t hash, bool ancestor) const {
  if (count_ == 0) return false;
  const Slot& slot = slots_[Find(name, hash)];
  if (slot.offset == kEmpty) return false;
  return !ancestor || (slot.meta & kSuffixBit) != 0;
}

void DomainList::Grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.size() * 2, Slot{});
  size_t mask = slots_.size() - 1;
  for (const Slot& slot : old) {
    if (slot.offset == kEmpty) continue;
    size_t length = slot.meta & ((1u << kLengthBits) - 1);
    size_t index = HashName(absl::string_view(&contents_[slot.offset], length)) & mask;
    while (slots_[index].offset != kEmpty) index = (index + 1) & mask;
    slots_[index] = slot;
  }
}

bool DomainList::Insert(size_t offset, size_t length, bool suffix) {
  // At most 7/10 full: linear probing stays short, and a slot is only 8 bytes.
  if ((count_ + 1) * 10 > slots_.size() * 7) Grow();

  absl::string_view name(&contents_[offset], length);
  size_t hash = HashName(name);
  Slot& slot = slots_[Find(name, hash)];
  if (slot.offset != kEmpty) {
    if (!suffix || (slot.meta & kSuffixBit) != 0) return false;
    slot.meta |= kSuffixBit;  // a suffix entry covers the exact one before it
    return true;
  }

  slot.offset = static_cast<uint32_t>(offset);
  slot.meta = TagOf(hash) | (suffix ? kSuffixBit : 0) | static_cast<uint32_t>(length);
  ++count_;
  return true;
}

size_t DomainList::MemoryBytes() const {
  return contents_.capacity() + slots_.capacity() * sizeof(Slot);
}

std::shared_ptr<const DomainRules> DomainRules::Compile(const std::vector<v1::Rule>& rules,
                                                        std::vector<List> lists) {
  auto compiled = std::shared_ptr<DomainRules>(new DomainRules());
  for (const v1::Rule& rule : rules) {
    Entry entry{rule.action() == v1::Rule::ALLOW, AnswerOf(rule.response()),
                static_cast<uint32_t>(compiled->names_.size())};
    compiled->names_.push_back(RuleNameOf(rule));
    auto& table = rule.match() == v1::Rule::SUFFIX ? compiled->suffix_ : compiled->exact_;
    table[rule.domain()] = entry;
  }

  for (List& list : lists) {
    Entry entry{list.action == v1::Rule::ALLOW, AnswerOf(list.response),
                static_cast<uint32_t>(compiled->names_.size())};
    compiled->names_.push_back(absl::StrCat("list:", list.name));
    compiled->lists_.push_back({std::move(list.names), entry});
  }
  return compiled;
}

bool DomainRules::Take(const Entry& entry, Verdict* verdict) {
  if (entry.allow) {
    *verdict = Verdict{Verdict::Kind::kAllow, entry.answer, entry.rule};
    return true;
  }
  if (verdict->kind == Verdict::Kind::kNone) {
    *verdict = Verdict{Verdict::Kind::kDeny, entry.answer, entry.rule};
  }
  return false;
}

// Walks the name from itself up to its top-level label: an allow anywhere ends the walk, and
// the first deny seen is the most specific one.
Verdict DomainRules::Check(absl::string_view name) const {
  Verdict verdict;
  if (name.empty()) return verdict;

  for (size_t start = 0;;) {
    absl::string_view suffix = name.substr(start);
    bool ancestor = start != 0;
    if (!ancestor) {
      auto exact = exact_.find(absl::string_view(suffix.data(), suffix.size()));
      if (exact != exact_.end() && Take(exact->second, &verdict)) return verdict;
    }
    auto below = suffix_.find(absl::string_view(suffix.data(), suffix.size()));
    if (below != suffix_.end() && Take(below->second, &verdict)) return verdict;

    if (!lists_.empty()) {
      size_t hash = HashName(suffix);
      for (const CompiledList& list : lists_) {
        if (list.names->Matches(suffix, hash, ancestor) && Take(list.entry, &verdict)) {
          return verdict;
        }
      }
    }

    size_t dot = name.find('.', start);
    if (dot == absl::string_view::npos) return verdict;
    start = dot + 1;
  }
}

}  // namespace nehost::filter
